"""The adapt experiment: how well does each init learn a held-out pair from K examples?

For every held-out language, K and seed, the same K training pairs (a seeded draw; smaller K are
prefixes of larger ones for one seed) fine-tune three inits with the same budget: random (scratch),
the multilingual train model (transfer) and the meta-learned init (meta). Each is scored on the
held-out pair's test split. Nothing is selected on test: either the step budget is fixed in params,
or (`adapt.select_every` > 0) the weights kept are those that score best on the held-out pair's dev
split (`adapt.select_metric`: loss or greedy BLEU), checked every that many steps; the last step's
test score is then reported beside it, so a run shows what the selection bought.
"""
from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from babelflow.config import Params
from babelflow.adapt.finetune import dev_reading, dev_scorer, finetune_init
from babelflow.errors import InputError
from babelflow.progress import as_logger
from babelflow.runtime import Runtime, start
from babelflow.validation import Decoding, translate_and_score

_log = logging.getLogger("babelflow.adapt")
INITS = ("scratch", "transfer", "meta")
# The evaluate settings a run decodes its test split with (score_on_test); the other evaluate keys
# (examples, max_sentences, external) are the evaluate stage's own and change no adaptation score.
DECODING_KEYS = ("beam_size", "length_penalty", "max_length_ratio", "batch_sentences")


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def score_on_test(model: nn.Module, tokenizer: Any, srcs: list[str], refs: list[str], lang: str, ev: Any) -> dict:
    """sacrebleu scores of `model`'s translations of `srcs` into `lang` with the evaluate settings `ev`."""
    return translate_and_score(model, tokenizer, srcs, refs, lang, Decoding.of(ev))[1]


def adapt_run(params: Params, source: str | Path | None, tokenizer: Any, pool: Sequence[Any], k: int,
              seed: int, rt: Runtime, dev_score: Callable[[nn.Module], float] | None,
              srcs: list[str], refs: list[str], lang: str) -> dict:
    """One fine-tuning run scored on test: BLEU / chrF++ of the weights kept, and with dev selection
    on, the step kept, its dev score (as the metric reads: BLEU up, loss down) and the last step's BLEU."""
    cfg, ev = params.adapt, params.evaluate
    model, tuned = finetune_init(params, source, tokenizer, pool, k, seed, rt, dev_score)
    s = last = score_on_test(model, tokenizer, srcs, refs, lang, ev)
    run: dict = {"last_loss": round(tuned.last_loss, 5)}
    if tuned.best_state is not None:
        # As the metric reads: what a choice between settings, e.g. two meta-learning
        # configurations, may look at instead of test scores.
        run.update(best_step=tuned.best_step, bleu_last=round(last["bleu"], 4),
                   dev_kept=dev_reading(cfg.select_metric, tuned.best_score))
        if tuned.best_step != cfg.steps:
            model.load_state_dict(tuned.best_state)
            s = score_on_test(model, tokenizer, srcs, refs, lang, ev)
    run.update(bleu=round(s["bleu"], 4), chrfpp=round(s["chrfpp"], 4), signatures=s["signatures"])
    return run


def run_key(params: Params, source: str | Path | None, tokenizer: Any, k: int, seed: int, lang: str,
            clean_dir: str | Path) -> str:
    """A hash of what one adaptation run's scores depend on: the init's weights (or the random init's
    model config), the tokenizer, the held-out pair's clean files, the adapt / evaluate / training
    settings, K, seed, the code (babelflow's sources and torch: an edited trainer must not be served
    an old run's scores) and the CPU (float results differ between instruction sets)."""
    from babelflow.checkpoint import code_fingerprint
    from babelflow.io import fingerprint_of, sha256_file

    pair = Path(clean_dir) / params.languages.pair(lang)
    adapt = params.adapt.model_dump(exclude={"k", "seeds", "inits", "enabled"})
    init = (sha256_file(Path(source) / "model.safetensors") if source is not None
            else params.model.model_dump())
    return fingerprint_of(
        "adapt-run/3", init, sha256_file(tokenizer.path), {f: sha256_file(pair / f) for f in sorted(
            p.name for p in pair.glob("*.src")) + sorted(p.name for p in pair.glob("*.tgt"))},
        adapt, params.evaluate.model_dump(include=set(DECODING_KEYS)), params.train.model_dump(
            include={"label_smoothing", "clip_norm", "bf16", "bf16_cpu", "max_len", "device", "threads"}),
        k, seed, lang, code_fingerprint(), _cpu_flags())


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cached_run(params: Params, source: str | Path | None, tokenizer: Any, pool: Sequence[Any], k: int, seed: int,
               rt: Runtime, dev_score: Callable[[nn.Module], float] | None, srcs: list[str],
               refs: list[str], lang: str, run_cache: str | Path | None, clean_dir: str | Path) -> dict:
    """`adapt_run`, or its scores from `run_cache` when the same run was done before."""
    if run_cache is None:
        return adapt_run(params, source, tokenizer, pool, k, seed, rt, dev_score, srcs, refs, lang)
    import json

    from babelflow.io import write_json

    path = Path(run_cache) / f"{run_key(params, source, tokenizer, k, seed, lang, clean_dir)}.json"
    if path.is_file():
        return {**json.loads(path.read_text(encoding="utf-8")), "cached": True}
    run = adapt_run(params, source, tokenizer, pool, k, seed, rt, dev_score, srcs, refs, lang)
    write_json(path, run)
    return run


def adapt_experiment(
    params: Params,
    clean_dir: str | Path,
    tokenizer: Any,
    train_dir: str | Path | None,
    meta_dir: str | Path | None,
    log: logging.Logger | None = None,
    run_cache: str | Path | None = None,
    encoded_dir: str | Path | None = None,
) -> dict:
    """Run the experiment; returns the content of results.json (see module docstring).

    `run_cache` (benchmarks): a folder where each fine-tuning run's scores are kept under a hash of
    everything it depends on, so a rerun that changes one init (or adds seeds) redoes only those runs."""
    from babelflow.data import encoded_for, load_encoded, read_parallel

    log = as_logger(log or _log)
    cfg, ev = params.adapt, params.evaluate
    rt = start(params.train.device, params.train.threads, bf16=params.train.bf16, bf16_cpu=params.train.bf16_cpu)
    sources = {"transfer": train_dir, "meta": meta_dir}
    for init in cfg.inits:
        if init in sources and (sources[init] is None or not (Path(sources[init]) / "model.json").is_file()):
            raise InputError(sources[init] or f"data/{init}", f"adapt init {init!r} needs this model")
    if not params.languages.heldout:
        raise InputError("params.yaml", "adapt needs at least one languages.heldout language")

    results: dict = {"languages": {}, "signatures": {}, "budget": {
        "steps": cfg.steps, "lr": cfg.lr, "max_tokens": cfg.max_tokens, "optimizer": "AdamW",
        "seeds": list(cfg.seeds), "device": str(rt.device), "beam_size": ev.beam_size,
        "select_every": cfg.select_every,
        **({"select_metric": cfg.select_metric, "select_sentences": cfg.select_sentences}
           if cfg.select_every else {}),
    }, "summary": []}
    t0 = time.monotonic()
    reused = 0
    for lang in params.languages.heldout:
        pair = params.languages.pair(lang)
        encoded = encoded_for(clean_dir, tokenizer, [pair], encoded_dir)
        pool = load_encoded(encoded, pair, "train", params.train.max_len)
        if not pool:
            raise InputError(Path(clean_dir) / pair / "train.src", "held-out pair has no training examples")
        test = read_parallel(Path(clean_dir) / pair / "test.src", Path(clean_dir) / pair / "test.tgt")
        if cfg.eval_sentences:
            test = test[: cfg.eval_sentences]
        if not test:
            raise InputError(Path(clean_dir) / pair / "test.src", "held-out pair has an empty test split")
        srcs, refs = [s for s, _ in test], [t for _, t in test]
        dev_score = dev_scorer(params, pair, lang, clean_dir, tokenizer, rt, encoded)

        per_k: dict = {}
        for k in cfg.k:
            row: dict = {"k_used": min(k, len(pool))}
            for init in cfg.inits:
                bleus, chrfs, losses, last_bleus, best_steps, dev_kept = [], [], [], [], [], []
                for seed in cfg.seeds:
                    run = cached_run(params, sources.get(init), tokenizer, pool, k, seed, rt, dev_score,
                                     srcs, refs, lang, run_cache, clean_dir)
                    reused += bool(run.get("cached"))
                    losses.append(run["last_loss"])
                    if "best_step" in run:
                        best_steps.append(run["best_step"])
                        dev_kept.append(run["dev_kept"])
                        last_bleus.append(run["bleu_last"])
                    results["signatures"].setdefault(lang, run["signatures"])
                    bleus.append(run["bleu"])
                    chrfs.append(run["chrfpp"])
                    log.info("adapt %s K=%d %s seed=%d: BLEU %.2f chrF++ %.2f%s%s", pair, k, init, seed,
                             run["bleu"], run["chrfpp"],
                             "" if "best_step" not in run else
                             f" (dev-selected step {run['best_step']}; last step {run['bleu_last']:.2f} BLEU)",
                             " [cached]" if run.get("cached") else "")
                bm, bs = _stats(bleus)
                cm, cs = _stats(chrfs)
                row[init] = {"bleu_mean": round(bm, 4), "bleu_std": round(bs, 4), "chrfpp_mean": round(cm, 4),
                             "chrfpp_std": round(cs, 4), "bleu": bleus, "chrfpp": chrfs, "seeds": list(cfg.seeds),
                             "final_train_loss": [round(x, 5) for x in losses]}
                if best_steps:
                    lm, ls = _stats(last_bleus)
                    dm, _ = _stats(dev_kept)
                    row[init].update({"selected_step": best_steps, "bleu_last": last_bleus,
                                      "bleu_last_mean": round(lm, 4), "bleu_last_std": round(ls, 4),
                                      f"{cfg.select_metric}_kept": dev_kept,
                                      f"{cfg.select_metric}_kept_mean": round(dm, 4)})
            if "meta" in row and "transfer" in row:
                delta = round(row["meta"]["bleu_mean"] - row["transfer"]["bleu_mean"], 4)
                row["meta_minus_transfer_bleu"] = delta
                row["meta_beats_transfer"] = delta > 0
                results["summary"].append(
                    f"{pair} K={k}: meta {row['meta']['bleu_mean']:.2f} vs transfer "
                    f"{row['transfer']['bleu_mean']:.2f} BLEU ({delta:+.2f}): "
                    + ("meta-learning helps" if delta > 0 else
                       "tie: meta-learning does NOT beat transfer" if delta == 0 else
                       "meta-learning does NOT beat transfer")
                    + (f" (std over {len(cfg.seeds)} seeds: meta {row['meta']['bleu_std']:.2f}, "
                       f"transfer {row['transfer']['bleu_std']:.2f})" if len(cfg.seeds) > 1 else "")
                )
            per_k[str(k)] = row
        results["languages"][lang] = {"pair": pair, "test_sentences": len(test),
                                      "train_pool": len(pool), "k": per_k}
    results["wall_s"] = round(time.monotonic() - t0, 2)
    if run_cache is not None:
        results["runs_reused"] = reused
    return results


def curve_rows(results: dict, lang: str | None = None) -> list[dict]:
    """Rows k, <init>... of mean test BLEU for one held-out language (the first by default)."""
    langs = results["languages"]
    lang = lang or next(iter(langs))
    rows = []
    for k, row in sorted(langs[lang]["k"].items(), key=lambda kv: int(kv[0])):
        rows.append({"k": int(k), **{i: row[i]["bleu_mean"] for i in INITS if i in row}})
    return rows


def plot_curve(results: dict, path: str | Path) -> None:
    """BLEU vs K, one line per init (error bars = std over seeds), one panel per held-out language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from babelflow.io import atomic_path

    langs = list(results["languages"])
    fig, axes = plt.subplots(1, len(langs), figsize=(5 * len(langs), 3.6), squeeze=False)
    for ax, lang in zip(axes[0], langs):
        ks = sorted(results["languages"][lang]["k"], key=int)
        for init in INITS:
            rows = [results["languages"][lang]["k"][k] for k in ks]
            if init not in rows[0]:
                continue
            ax.errorbar([int(k) for k in ks], [r[init]["bleu_mean"] for r in rows],
                        yerr=[r[init]["bleu_std"] for r in rows], marker="o", capsize=3, label=init)
        ax.set_xscale("log")
        ax.set_xlabel("K (training sentence pairs)")
        ax.set_ylabel("test BLEU")
        ax.set_title(results["languages"][lang]["pair"])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})  # no version stamp
    plt.close(fig)
