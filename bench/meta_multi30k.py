"""Benchmark of issue 6: meta-train on Multi30k en->de and en->fr, hold out en->cs, adapt with
K in {500, 2000, 29000} from scratch / transfer / meta inits; the table goes into the section
"Meta-learning vs transfer vs scratch (issue 6)" of bench/RESULTS.md.

    python bench/meta_multi30k.py --preset cpu --matched-transfer   # ~75 min on 2 CPU cores, 4 seeds
    python bench/meta_multi30k.py --preset gpu   # the issue's size (4000 train steps x 8192 tokens)
    python bench/meta_multi30k.py --smoke        # minutes-long check of the whole path; writes a copy
                                                 # of RESULTS.md under --work, never the real one

The transfer init is the multilingual model trained on en->de+fr (the pipeline's train stage); the
meta init starts from it (meta.init=train) and is meta-trained on the same two pairs. Every init then
gets the same adaptation budget; the weights kept are those that score best on the cs dev split (val;
`adapt.select_metric`: dev loss or greedy dev BLEU), checked every `adapt.select_every` steps, and the last
step's weights are scored too, so the tables show both protocols from one run. Test_2016_flickr (cs) is only scored: nothing is selected or
tuned on it. The train stage selects on the de/fr dev splits.

Meta-learning trains on more de/fr tokens than the transfer init. `--matched-transfer` adds the
baseline that closes that gap: the train stage continued for as many padded tokens as meta-learning
added, adapted with the same budget and seeds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.config import parse_params  # noqa: E402
from bench.machine import cpu_description  # noqa: E402
from bench.multi30k import build_clean  # noqa: E402
from bench.results_file import replace_section  # noqa: E402

SECTION = "## Meta-learning vs transfer vs scratch (issue 6): `bench/meta_multi30k.py`"
GOAL_KS = (500, 2000)
GOAL_MARGIN = 1.0  # BLEU: the goal is meta >= transfer + 1 at K = 500 and 2000

GPU = {
    "seed": 1,
    "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["cs"]},
    "collect": {"sources": [{"type": "aligned", "name": "multi30k", "path": "multi30k"}]},
    "tokenizer": {"vocab_size": 8000, "sample_sentences": 200000},
    "model": {"arch": "transformer", "transformer": {"d_model": 256, "ffn_dim": 1024, "heads": 4,
                                                     "encoder_layers": 3, "decoder_layers": 3}},
    "train": {"max_tokens": 8192, "max_steps": 4000, "lr": 0.0007, "warmup_steps": 400,
              "checkpoint_every": 1000, "validate_every": 1000, "dev_bleu_sentences": 100},
    "meta": {"algorithm": "reptile", "init": "train", "meta_steps": 400, "tasks_per_step": 4,
             "inner_steps": 3, "inner_lr": 0.0003, "inner_optimizer": "adam", "outer_lr": 0.5,
             "support_tokens": 2048, "query_tokens": 2048, "checkpoint_every": 100},
    "adapt": {"k": [500, 2000, 29000], "steps": 1000, "lr": 0.0003, "max_tokens": 4096, "seeds": [1, 2],
              "eval_sentences": 0, "select_every": 100},
    "evaluate": {"beam_size": 4},
}
# Sized for a 2-core CPU (about 1 h 15 min with --matched-transfer on 2026-11-29).
# One torch thread: with the cores oversubscribed, 2 threads spent 3-5x the CPU time per step waiting on each other (measured:
# a 2048-token step of this model took 0.6 cpu-s / 1.4 s wall on 1 thread, 3.3 cpu-s / 9 s on 2).
# The adapt lr is the train lr: at a few hundred steps, the 3e-4 barely moves any init (chosen
# a priori, not on test). A first run with 100 adapt steps and 1 seed left every init below 2 BLEU on
# en->cs (RESULTS.md keeps its figures), too close to the floor to compare inits: hence 200 x 2 seeds.
CPU = {
    **GPU,
    "tokenizer": {"vocab_size": 4000, "sample_sentences": 120000},
    "model": {"arch": "transformer", "transformer": {"d_model": 128, "ffn_dim": 512, "heads": 4,
                                                     "encoder_layers": 2, "decoder_layers": 2}},
    "train": {"max_tokens": 2048, "max_steps": 1000, "lr": 0.001, "warmup_steps": 200,
              "checkpoint_every": 250, "validate_every": 500, "dev_bleu_sentences": 100,
              "device": "cpu", "threads": 1},
    # The inner loop is the adaptation's own optimizer and lr (Adam, 1e-3), so the init is meta-learned
    # for the fine-tuning it will get. 200 meta-steps x 5 inner steps was chosen among six settings of
    # the same de/fr token budget on the cs dev split (bench/meta_select.py, RESULTS.md); the run before
    # used 100 x 10.
    "meta": {**GPU["meta"], "meta_steps": 200, "tasks_per_step": 2, "inner_steps": 5, "inner_lr": 0.001,
             "support_tokens": 1024, "query_tokens": 1024, "checkpoint_every": 40},
    # Selection on greedy dev BLEU (300 cs val sentences): dev loss kept earlier steps in the first run.
    "adapt": {"k": [500, 2000, 29000], "steps": 200, "lr": 0.001, "max_tokens": 1024, "seeds": [1, 2, 3, 4],
              "eval_sentences": 0, "select_every": 20, "select_metric": "dev_bleu", "select_sentences": 300},
    "evaluate": {"beam_size": 1},
}
SMOKE = {
    **GPU,
    "tokenizer": {"vocab_size": 1000, "sample_sentences": 20000},
    "model": {"arch": "transformer", "transformer": {"d_model": 32, "ffn_dim": 64, "heads": 2,
                                                     "encoder_layers": 1, "decoder_layers": 1}},
    "train": {"max_tokens": 1024, "max_steps": 20, "warmup_steps": 5, "checkpoint_every": 10,
              "validate_every": 10, "dev_bleu_sentences": 5, "device": "cpu", "threads": 1},
    "meta": {**GPU["meta"], "meta_steps": 4, "tasks_per_step": 2, "inner_steps": 1,
             "support_tokens": 512, "query_tokens": 512, "checkpoint_every": 2},
    "adapt": {"k": [50, 200], "steps": 5, "max_tokens": 1024, "seeds": [1, 2], "eval_sentences": 20,
              "select_every": 2},
    "evaluate": {"beam_size": 1},
}
PRESETS = {"gpu": GPU, "cpu": CPU, "smoke": SMOKE}
DEV_BLEU_SENTENCES = 300  # per pair, greedy: shows the transfer model is a real en->de/fr model


def meta_padded_tokens(mc) -> int:
    """The most padded de/fr tokens meta-learning trains on beyond the transfer init: the inner steps'
    support batches, plus the query batches whose gradient (F)OMAML applies (Reptile only evaluates them)."""
    per_task = mc.inner_steps * mc.support_tokens + (0 if mc.algorithm == "reptile" else mc.query_tokens)
    return mc.meta_steps * mc.tasks_per_step * per_task


def matched_train_steps(params) -> int:
    """Train-stage steps that see as many padded tokens as transfer plus meta-learning together."""
    return params.train.max_steps + -(-meta_padded_tokens(params.meta) // params.train.max_tokens)


# Two-sided 95 % quantiles of Student's t by degrees of freedom (no scipy in the environment).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042}


def paired(meta: list[float], base: list[float]) -> str:
    """meta - base per seed (both fine-tuned on the same K draw with the same seed): mean, 95 % t
    interval and how many seeds meta won. The seeds' draws are shared, so the pairing removes the
    part of the spread that comes from the draw, which the ± of the tables keeps."""
    import statistics

    d = [m - b for m, b in zip(meta, base)]
    mean = statistics.fmean(d)
    if len(d) < 2:
        return f"{mean:+.2f} (one seed)"
    half = T975.get(len(d) - 1, 1.96) * statistics.stdev(d) / len(d) ** 0.5
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}], {sum(x > 0 for x in d)}/{len(d)}"


def _cell(entry: dict, metric: str) -> str:
    values = entry[metric]
    if len(values) >= 2:
        return f"{entry[metric + '_mean']:.2f} ± {entry[metric + '_std']:.2f}"
    return f"{entry[metric + '_mean']:.2f}"


def verdict(cs_rows: dict, mean: str = "bleu_mean", baseline: str = "transfer") -> tuple[bool | None, list[str]]:
    """Whether meta >= `baseline` + GOAL_MARGIN BLEU (means over seeds) at every K of GOAL_KS.

    `mean` picks the scores: `bleu_mean` (the weights the adapt stage keeps) or `bleu_last_mean`
    (the last step's weights, when the stage selected on dev)."""
    notes, met = [], True
    for k in GOAL_KS:
        row = cs_rows.get(str(k))
        if row is None:
            return None, [f"K={k} was not run, so the goal cannot be judged"]
        delta = row["meta"][mean] - row[baseline][mean]
        ok = delta >= GOAL_MARGIN
        met &= ok
        # A third decimal where two would round a miss up to the margin (+0.996 shown as +1.00 < +1).
        shown = f"{delta:+.3f}" if not ok and round(delta, 2) >= GOAL_MARGIN else f"{delta:+.2f}"
        notes.append(f"K={k}: meta - {baseline} = {shown} BLEU ({'≥' if ok else '<'} +{GOAL_MARGIN:g})")
    return met, notes


def render(preset: str, args_line: str, params, results: dict, train_metrics: dict, meta_metrics: dict,
           dev_bleu: dict, dev_n: int, timings: dict, n_params: int, matched: dict | None = None) -> str:
    """The section's Markdown. `matched` (optional): the adapt results of the budget-matched transfer
    init ({"results": adapt results with a transfer row per K, "steps": its train steps})."""
    cs = results["languages"]["cs"]
    k_rows = sorted(cs["k"].items(), key=lambda kv: int(kv[0]))
    seeds = list(params.adapt.seeds)
    m, t, a, mc = params.model.transformer, params.train, params.adapt, params.meta
    meta_tokens = meta_padded_tokens(mc)
    reused = results.get("runs_reused", 0) + ((matched or {}).get("results") or {}).get("runs_reused", 0)
    met, notes = verdict(cs["k"])
    selecting = bool(a.select_every)
    out = [
        f"- Machine: {cpu_description()}, shared with other jobs, no GPU, "
        f"torch {__import__('torch').__version__}, Python {platform.python_version()}",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} (UTC); device `{results['budget']['device']}`; "
        "wall time " + ", ".join(f"{k} {v} s" for k, v in timings.items())
        + (f" ({reused} fine-tuning runs reused from an earlier run with the same inputs)" if reused else ""),
        f"- Command: `{args_line}`" + (" (SMOKE: tiny config, numbers meaningless)" if preset == "smoke" else ""),
        f"- Model: Transformer d={m.d_model}, ffn {m.ffn_dim}, {m.heads} heads, {m.encoder_layers}+"
        f"{m.decoder_layers} layers, SentencePiece {params.tokenizer.vocab_size} (en/de/fr/cs), "
        f"{n_params:,} parameters.",
        f"- Transfer (train stage, en->de+fr): {t.max_steps} steps x {t.max_tokens} padded tokens, lr {t.lr}, "
        f"warmup {t.warmup_steps}; {train_metrics.get('tokens_seen', 0):,} target tokens seen. Dev BLEU "
        f"(val, greedy, first {dev_n} sentences): "
        + ", ".join(f"en->{lang} {v:.2f}" for lang, v in sorted(dev_bleu["transfer"].items())) + ".",
        f"- Meta (from transfer, en->de+fr only): {mc.algorithm}, {mc.meta_steps} meta-steps x "
        f"{mc.tasks_per_step} tasks x {mc.inner_steps} inner {mc.inner_optimizer} steps (lr {mc.inner_lr}) "
        f"on {mc.support_tokens}-token support batches, outer lr {mc.outer_lr}; query loss "
        f"{meta_metrics['query_loss_first']:.3f} -> {meta_metrics['query_loss_last']:.3f}. Dev BLEU: "
        + ", ".join(f"en->{lang} {v:.2f}" for lang, v in sorted(dev_bleu["meta"].items()))
        + f". It has seen up to ~{meta_tokens:,} padded tokens of de/fr more than transfer.",
        f"- Adaptation (every init, every K): {a.steps} AdamW steps x {a.max_tokens} padded tokens, lr {a.lr}; "
        + (f"kept: the weights with the best en->cs dev (val, "
           f"{f'first {a.select_sentences}' if a.select_sentences else 'all'} sentences) "
           f"{'loss' if a.select_metric == 'dev_loss' else 'greedy BLEU'}, checked at step 0, every "
           f"{a.select_every} steps and at the last step (the last step's scores are in the second "
           "table); " if selecting else "no early stopping; ")
        + f"seeds {seeds}" + ("" if len(seeds) >= 2 else " (one seed: no spread)")
        + "; scratch = random init of the same model.",
        f"- Test: test_2016_flickr en->cs, {cs['test_sentences']} sentences, beam {params.evaluate.beam_size}. "
        f"BLEU `{results['signatures']['cs']['bleu']}`; chrF++ `{results['signatures']['cs']['chrfpp']}`.",
        "",
        "| K | scratch BLEU | transfer BLEU | meta BLEU | meta - transfer | scratch chrF++ | transfer chrF++ | meta chrF++ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in k_rows:
        out.append(f"| {row['k_used']} | {_cell(row['scratch'], 'bleu')} | {_cell(row['transfer'], 'bleu')} | "
                   f"{_cell(row['meta'], 'bleu')} | {row['meta_minus_transfer_bleu']:+.2f} | "
                   f"{_cell(row['scratch'], 'chrfpp')} | {_cell(row['transfer'], 'chrfpp')} | "
                   f"{_cell(row['meta'], 'chrfpp')} |")
    if selecting:
        picked_by = "dev loss" if a.select_metric == "dev_loss" else "dev BLEU"
        out += ["", "The same fine-tuning runs scored at their last step (a fixed budget, no selection), and the "
                f"step each seed's {picked_by} picked, with the {picked_by} of the weights kept (mean over seeds):", "",
                "| K | scratch BLEU | transfer BLEU | meta BLEU | meta - transfer | steps kept (scratch / transfer / meta) "
                f"| {picked_by} kept (scratch / transfer / meta) |",
                "|---|---|---|---|---|---|---|"]
        dev_key = f"{a.select_metric}_kept_mean"
        for _, row in k_rows:
            last = {i: {"bleu": row[i]["bleu_last"], "bleu_mean": row[i]["bleu_last_mean"],
                        "bleu_std": row[i]["bleu_last_std"]} for i in ("scratch", "transfer", "meta")}
            delta = last["meta"]["bleu_mean"] - last["transfer"]["bleu_mean"]
            kept = " / ".join(",".join(map(str, row[i]["selected_step"])) for i in ("scratch", "transfer", "meta"))
            dev = " / ".join(f"{row[i][dev_key]:.2f}" if dev_key in row[i] else "-"
                             for i in ("scratch", "transfer", "meta"))
            out.append(f"| {row['k_used']} | {_cell(last['scratch'], 'bleu')} | {_cell(last['transfer'], 'bleu')} | "
                       f"{_cell(last['meta'], 'bleu')} | {delta:+.2f} | {kept} | {dev} |")
    if len(seeds) >= 2:
        out += ["", f"Cells are mean ± standard deviation over seeds {seeds}."]
    status = "cannot be judged" if met is None else ("**met**" if met else "**not met**")
    out += ["", f"Verdict on the goal (meta >= transfer + {GOAL_MARGIN:g} BLEU at K = "
            f"{' and '.join(map(str, GOAL_KS))}): {status}. " + "; ".join(notes) + "."]
    if selecting:
        last_met, last_notes = verdict(cs["k"], "bleu_last_mean")
        last_status = "cannot be judged" if last_met is None else ("met" if last_met else "not met")
        out += ["", f"At the last step instead of the dev-selected one: {last_status}. "
                + "; ".join(last_notes) + "."]
    if matched is not None:
        m_rows = matched["results"]["languages"]["cs"]["k"]
        out += ["", f"Budget-matched transfer: the train stage continued to {matched['steps']} steps "
                f"({matched['steps'] * t.max_tokens:,} padded tokens, as many as transfer plus meta-learning), then "
                "the same adaptation and seeds. Meta-learning must beat this, not only the shorter transfer, "
                "to show it is more than extra training"
                + (f"; de/fr dev BLEU {', '.join(f'en->{k} {v:.2f}' for k, v in sorted(dev_bleu['matched'].items()))}"
                   if "matched" in dev_bleu else "") + ":", "",
                "| K | transfer BLEU | matched transfer BLEU | meta BLEU | meta - matched | meta - matched, last step |",
                "|---|---|---|---|---|---|"]
        for key, row in k_rows:
            mt = m_rows[key]["transfer"]
            last = (f"{row['meta']['bleu_last_mean'] - mt['bleu_last_mean']:+.2f}"
                    if "bleu_last_mean" in mt and "bleu_last_mean" in row["meta"] else "-")
            out.append(f"| {row['k_used']} | {_cell(row['transfer'], 'bleu')} | {_cell(mt, 'bleu')} | "
                       f"{_cell(row['meta'], 'bleu')} | {row['meta']['bleu_mean'] - mt['bleu_mean']:+.2f} | {last} |")
        m_met, m_notes = verdict({k: {"meta": cs["k"][k]["meta"], "matched": m_rows[k]["transfer"]}
                                  for k in cs["k"] if k in m_rows}, baseline="matched")
        m_status = "cannot be judged" if m_met is None else ("met" if m_met else "not met")
        out += ["", f"The goal against the budget-matched transfer: {m_status}. " + "; ".join(m_notes) + "."]
    gains = [f"K={row['k_used']} {row['transfer']['bleu_mean'] - row['scratch']['bleu_mean']:+.2f}"
             for _, row in k_rows]
    if len(seeds) >= 2:
        out += ["", "Per seed, meta minus each baseline fine-tuned on the same K draw with the same seed: mean "
                "[95 % t interval over seeds], seeds where meta scored higher:", "",
                "| K | meta - transfer | " + ("meta - matched transfer |" if matched is not None else ""),
                "|---|---|" + ("---|" if matched is not None else "")]
        for key, row in k_rows:
            cells = [paired(row["meta"]["bleu"], row["transfer"]["bleu"])]
            if matched is not None:
                cells.append(paired(row["meta"]["bleu"], matched["results"]["languages"]["cs"]["k"][key]["transfer"]["bleu"]))
            out.append(f"| {row['k_used']} | " + " | ".join(cells) + " |")
    out += ["", "Transfer - scratch BLEU (what multilingual pre-training buys at this budget): "
            + ", ".join(gains) + "."]
    if preset == "cpu":
        out += ["", "This is the `cpu` preset: a smaller model and budget than the issue's (`--preset gpu`: "
                "d=256 3+3, 4000 x 8192-token train steps, 400 meta-steps, 1000 adapt steps, 2 seeds, beam 4), "
                "chosen so the run fits about an hour of a 2-core CPU. The GPU preset is not measured: no GPU "
                "was available to this session."]
    return "\n".join(out) + "\n"


def with_overrides(preset: dict, overrides: list[str]) -> dict:
    """A copy of `preset` with each "section.key=value" applied (the value read as YAML)."""
    import copy

    import yaml

    out = copy.deepcopy(preset)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. meta.meta_steps=200")
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise SystemExit(f"--set {item!r}: {name} is not a section")
        node[leaf] = yaml.safe_load(value)
    return out


def _reuse(timings: dict, earlier: dict, phase: str) -> None:
    """Report the wall time of the earlier run that did `phase` (this run only reloaded its output)."""
    was = earlier.get(phase, earlier.get(f"{phase} (earlier run)"))
    if was is not None:
        del timings[phase]
        timings[f"{phase} (earlier run)"] = was


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "babelflow_meta_bench"))
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    ap.add_argument("--smoke", action="store_true", help="same as --preset smoke")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one preset value, e.g. meta.meta_steps=200 (YAML value; repeatable)")
    ap.add_argument("--matched-transfer", action="store_true",
                    help="also adapt from the train stage continued for as many padded tokens as meta-learning "
                         "added (the budget-matched transfer baseline)")
    ap.add_argument("--results", default=None,
                    help="markdown file whose issue-6 section is replaced (default bench/RESULTS.md; "
                         "for --smoke a copy under --work)")
    args = ap.parse_args()
    preset = "smoke" if args.smoke else args.preset

    import torch

    from babelflow.io import write_json, write_text
    from babelflow.adapt import adapt_experiment
    from babelflow.meta.train import meta_train
    from babelflow.models import load_model
    from babelflow.tokenizer import reuse_or_train_tokenizer
    from babelflow.validation import dev_bleu as greedy_dev_bleu
    from babelflow.train import train_model
    from babelflow.data import read_parallel

    params = parse_params(with_overrides(PRESETS[preset], args.set))
    corpus, work = Path(args.corpus), Path(args.work) / preset
    clean, tok_dir = work / "clean", work / "tokenizer"
    build_clean(corpus, clean, ["de", "fr", "cs"], 2000 if preset == "smoke" else None)
    timings: dict = {}
    # Train and meta resume from their final checkpoints when rerun with the same params (e.g. another
    # adapt setting); their wall time is then the one recorded by the run that did the work.
    earlier = {}
    if (work / "results.json").is_file():
        earlier = json.loads((work / "results.json").read_text(encoding="utf-8")).get("timings_s", {})
    t = time.monotonic()
    texts = {"en": clean / "en-de" / "train.src"}
    texts.update({lang: clean / f"en-{lang}" / "train.tgt" for lang in ("de", "fr", "cs")})
    tokenizer, tokenizer_done = reuse_or_train_tokenizer(texts, tok_dir, params.tokenizer, ["de", "fr", "cs"],
                                                         params.seed)
    timings["tokenizer"] = round(time.monotonic() - t)
    if tokenizer_done:
        _reuse(timings, earlier, "tokenizer")
    t = time.monotonic()
    train_metrics = train_model(params, clean, tokenizer, work / "train", work / "ckpt_train", work / "plots")
    timings["train"] = round(time.monotonic() - t)
    if not train_metrics.get("tokens_per_s"):  # nothing trained: resumed at the end
        _reuse(timings, earlier, "train")
    t = time.monotonic()
    meta_metrics = meta_train(params, clean, tokenizer, work / "train", work / "meta", work / "ckpt_meta", print)
    timings["meta"] = round(time.monotonic() - t)
    if meta_metrics.get("resumed_from") == params.meta.meta_steps:
        _reuse(timings, earlier, "meta")

    inits = [("transfer", work / "train"), ("meta", work / "meta")]
    matched_steps = matched_train_steps(params)
    if args.matched_transfer:
        # Continues the transfer run (same fingerprint: inverse-sqrt does not depend on max_steps) from
        # a copy of its checkpoints, so the transfer init itself stays as it was.
        import shutil

        long_params = parse_params(with_overrides(PRESETS[preset], args.set + [f"train.max_steps={matched_steps}"]))
        if not (work / "ckpt_train_matched").exists():
            shutil.copytree(work / "ckpt_train", work / "ckpt_train_matched")
        t = time.monotonic()
        matched_metrics = train_model(long_params, clean, tokenizer, work / "train_matched",
                                      work / "ckpt_train_matched", work / "plots_matched")
        timings["train_matched"] = round(time.monotonic() - t)
        if not matched_metrics.get("tokens_per_s"):
            _reuse(timings, earlier, "train_matched")
        inits.append(("matched", work / "train_matched"))

    # Per-pair dev BLEU of the inits on the meta-training pairs (dev only, never cs test).
    t = time.monotonic()
    dev_n = 20 if preset == "smoke" else DEV_BLEU_SENTENCES
    dev_bleu: dict = {}
    for init, folder in inits:
        model = load_model(folder, "cpu" if params.train.device == "cpu" else
                           ("cuda" if torch.cuda.is_available() else "cpu"))
        dev_bleu[init] = {}
        for lang in params.languages.targets:
            pairs = read_parallel(clean / f"en-{lang}" / "dev.src", clean / f"en-{lang}" / "dev.tgt")
            dev_bleu[init][lang] = round(greedy_dev_bleu(model, tokenizer, {lang: pairs}, dev_n) or 0.0, 2)
        print(f"dev BLEU {init}: {dev_bleu[init]}", flush=True)
        del model
    timings["dev_bleu"] = round(time.monotonic() - t)

    t = time.monotonic()
    # Fine-tuning runs whose inputs are unchanged (same init weights, settings, seed, host) are reused,
    # so trying another meta setting redoes only the meta init's runs.
    runs = work / "adapt_runs"
    results = adapt_experiment(params, clean, tokenizer, work / "train", work / "meta", print, run_cache=runs)
    timings["adapt"] = round(time.monotonic() - t)
    matched = None
    if args.matched_transfer:
        t = time.monotonic()
        only_transfer = parse_params(with_overrides(PRESETS[preset], args.set + ["adapt.inits=[transfer]"]))
        matched = {"steps": matched_steps, "results": adapt_experiment(
            only_transfer, clean, tokenizer, work / "train_matched", work / "meta", print, run_cache=runs)}
        timings["adapt_matched"] = round(time.monotonic() - t)
    n_params = int(train_metrics.get("parameters") or 0)
    write_json(work / "results.json", {"adapt": results, "train": train_metrics, "meta": meta_metrics,
                                       "dev_bleu": dev_bleu, "timings_s": timings, "matched": matched})

    args_line = "nice -n 10 .venv/bin/python bench/meta_multi30k.py " + (
        "--smoke" if preset == "smoke" else f"--preset {preset}") + "".join(f" --set {shlex.quote(o)}" for o in args.set) + (
        " --matched-transfer" if args.matched_transfer else "")
    body = render(preset, args_line, params, results, train_metrics, meta_metrics, dev_bleu, dev_n, timings,
                  n_params, matched)
    target = Path(args.results) if args.results else (
        work / "RESULTS.smoke.md" if preset == "smoke" else ROOT / "bench" / "RESULTS.md")
    source = ROOT / "bench" / "RESULTS.md" if preset == "smoke" and not args.results else target
    write_text(target, replace_section(source.read_text(encoding="utf-8"), SECTION, body))
    print(body)
    print(f"wrote the issue-6 section of {target}")


if __name__ == "__main__":
    main()
