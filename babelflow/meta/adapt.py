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
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from babelflow.config import Params
from babelflow.data import Examples, shuffled
from babelflow.errors import InputError
from babelflow.meta.algorithms import autocast_for
from babelflow.meta.train import as_logger, resolve_device, seed_all

_log = logging.getLogger("babelflow.adapt")
INITS = ("scratch", "transfer", "meta")
# The evaluate settings a run decodes its test split with (score_on_test); the other evaluate keys
# (examples, max_sentences, external) are the evaluate stage's own and change no adaptation score.
DECODING_KEYS = ("beam_size", "length_penalty", "max_length_ratio", "batch_sentences")


def pick_k(examples: Examples, k: int, seed: int) -> Examples:
    """K examples drawn with `seed`; for one seed a smaller K is a prefix of a larger one."""
    return examples[shuffled(random.Random(f"adapt:{seed}"), len(examples))[:k]]


@dataclass
class Finetuned:
    """What `finetune` did: the model is left at its last step; `best_state` holds the weights with the
    lowest `dev_score` (None when nothing was selected: no `dev_score` or `select_every` = 0)."""

    last_loss: float
    best_step: int | None = None
    best_score: float | None = None
    best_state: dict[str, torch.Tensor] | None = None


def finetune(
    model: nn.Module,
    examples: Sequence[Any],
    steps: int,
    lr: float,
    max_tokens: int,
    seed: int,
    label_smoothing: float = 0.0,
    clip_norm: float = 1.0,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    dev_score: Callable[[nn.Module], float] | None = None,
    select_every: int = 0,
) -> Finetuned:
    """`steps` AdamW updates on token batches of `examples` (cycling epochs).

    With `dev_score` (lower is better, e.g. dev loss or minus dev BLEU) and `select_every` > 0 the
    model is scored before the first update, every `select_every` steps and after the last; the
    best-scoring weights are copied into the result. The first of equal scores wins, so a flat dev
    curve keeps the earlier weights. Scoring draws no random numbers: the updates are the same
    with or without it.
    """
    from babelflow.data import TokenBatcher
    from babelflow.loss import token_cross_entropy

    torch.manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    batches = iter(TokenBatcher(examples, max_tokens, shuffle=True, seed=seed, infinite=True))
    selecting = dev_score is not None and select_every > 0
    result = Finetuned(last_loss=float("nan"))

    def check(step: int) -> None:
        # Rounded before comparing, so the choice is the one the reported scores show.
        score = round(float(dev_score(model)), 5)
        model.train()  # whatever mode the scorer left: dropout must stay on for the next updates
        if result.best_score is None or score < result.best_score:
            result.best_step, result.best_score = step, score
            result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    if selecting:
        check(0)
    for step in range(1, steps + 1):
        batch = next(batches).to(device)
        with autocast_for(device, bf16):
            logits = model(batch.src, batch.tgt_in)
        loss = token_cross_entropy(logits, batch.tgt_out, label_smoothing) / max(1, batch.ntokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        opt.step()
        result.last_loss = float(loss.detach())
        if selecting and (step % select_every == 0 or step == steps):
            check(step)
    model.eval()
    return result


def dev_scorer(params: Params, pair: str, lang: str, clean_dir: str | Path, tokenizer: Any,
               device: torch.device, encoded_dir: str | Path | None = None) -> Callable[[nn.Module], float] | None:
    """What `adapt.select_metric` asks for on the held-out pair's dev split, lower is better:
    the per-token loss, or minus the greedy BLEU; None when `adapt.select_every` is 0."""
    from babelflow.data import TokenBatcher, encoded_for, load_encoded, read_parallel
    from babelflow.train import dev_bleu, dev_loss

    cfg = params.adapt
    if not cfg.select_every:
        return None
    src = Path(clean_dir) / pair / "dev.src"
    limit = cfg.select_sentences or None
    if not src.is_file():  # named as the clean text: the encoded split is missing with it
        raise InputError(src, "file not found: adapt.select_every needs the dev split of the held-out pair")
    if cfg.select_metric == "dev_bleu":
        pairs = read_parallel(src, src.with_suffix(".tgt"))[:limit]
        if not pairs:
            raise InputError(src, "adapt.select_every needs a non-empty dev split of the held-out pair")
        return lambda model: -(dev_bleu(model, tokenizer, {lang: pairs}, len(pairs)) or 0.0)
    examples = load_encoded(encoded_for(clean_dir, tokenizer, [pair], encoded_dir), pair, "dev", params.train.max_len, limit)
    if not examples:
        raise InputError(src, "adapt.select_every needs a non-empty dev split of the held-out pair")
    batcher = TokenBatcher(examples, cfg.max_tokens, shuffle=False, seed=0)
    return lambda model: dev_loss(model, batcher, device, lambda: autocast_for(device, params.train.bf16))


def dev_reading(select_metric: str, ranked: float) -> float:
    """A `dev_scorer` score (lower is better) as its metric reads: BLEU back up, loss as is."""
    return -ranked if select_metric == "dev_bleu" else ranked


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def score_on_test(model: nn.Module, tokenizer: Any, srcs: list[str], refs: list[str], lang: str, ev: Any,
                  device: torch.device) -> dict:
    """sacrebleu scores of `model`'s translations of `srcs` into `lang` with the evaluate settings `ev`."""
    from babelflow.decode import decoding_workers, translate
    from babelflow.metrics import score

    with decoding_workers(device) as workers:
        hyps = translate(model, tokenizer, srcs, lang, beam_size=ev.beam_size,
                         length_penalty=ev.length_penalty, max_length_ratio=ev.max_length_ratio,
                         batch_sentences=ev.batch_sentences, workers=workers)
    return score(hyps, refs, lang)


def finetune_init(params: Params, source: str | Path | None, tokenizer: Any, pool: Sequence[Any], k: int,
                  seed: int, device: torch.device,
                  dev_score: Callable[[nn.Module], float] | None = None) -> tuple[nn.Module, Finetuned]:
    """One adaptation run: the init saved in `source` (None: a random init of `params.model`)
    fine-tuned on the seed's K examples of `pool` with the `adapt` budget of `params`."""
    from babelflow.models import build_model, load_model

    cfg = params.adapt
    seed_all(seed)
    model = build_model(params.model, tokenizer.vocab_size) if source is None else load_model(source, device)
    tuned = finetune(
        model, pick_k(pool, k, seed), cfg.steps, cfg.lr, cfg.max_tokens, seed,
        params.train.label_smoothing, params.train.clip_norm, device, params.train.bf16,
        dev_score=dev_score, select_every=cfg.select_every,
    )
    return model, tuned


def adapt_run(params: Params, source: str | Path | None, tokenizer: Any, pool: Sequence[Any], k: int,
              seed: int, device: torch.device, dev_score: Callable[[nn.Module], float] | None,
              srcs: list[str], refs: list[str], lang: str) -> dict:
    """One fine-tuning run scored on test: BLEU / chrF++ of the weights kept, and with dev selection
    on, the step kept, its dev score (as the metric reads: BLEU up, loss down) and the last step's BLEU."""
    cfg, ev = params.adapt, params.evaluate
    model, tuned = finetune_init(params, source, tokenizer, pool, k, seed, device, dev_score)
    s = last = score_on_test(model, tokenizer, srcs, refs, lang, ev, device)
    run: dict = {"last_loss": round(tuned.last_loss, 5)}
    if tuned.best_state is not None:
        # As the metric reads: what a choice between settings, e.g. two meta-learning
        # configurations, may look at instead of test scores.
        run.update(best_step=tuned.best_step, bleu_last=round(last["bleu"], 4),
                   dev_kept=dev_reading(cfg.select_metric, tuned.best_score))
        if tuned.best_step != cfg.steps:
            model.load_state_dict(tuned.best_state)
            s = score_on_test(model, tokenizer, srcs, refs, lang, ev, device)
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
            include={"label_smoothing", "clip_norm", "bf16", "max_len", "device", "threads"}),
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
               device: torch.device, dev_score: Callable[[nn.Module], float] | None, srcs: list[str],
               refs: list[str], lang: str, run_cache: str | Path | None, clean_dir: str | Path) -> dict:
    """`adapt_run`, or its scores from `run_cache` when the same run was done before."""
    if run_cache is None:
        return adapt_run(params, source, tokenizer, pool, k, seed, device, dev_score, srcs, refs, lang)
    import json

    from babelflow.io import write_json

    path = Path(run_cache) / f"{run_key(params, source, tokenizer, k, seed, lang, clean_dir)}.json"
    if path.is_file():
        return {**json.loads(path.read_text(encoding="utf-8")), "cached": True}
    run = adapt_run(params, source, tokenizer, pool, k, seed, device, dev_score, srcs, refs, lang)
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
    device = resolve_device(params.train.device, params.train.threads)
    sources = {"transfer": train_dir, "meta": meta_dir}
    for init in cfg.inits:
        if init in sources and (sources[init] is None or not (Path(sources[init]) / "model.json").is_file()):
            raise InputError(sources[init] or f"data/{init}", f"adapt init {init!r} needs this model")
    if not params.languages.heldout:
        raise InputError("params.yaml", "adapt needs at least one languages.heldout language")

    results: dict = {"languages": {}, "signatures": {}, "budget": {
        "steps": cfg.steps, "lr": cfg.lr, "max_tokens": cfg.max_tokens, "optimizer": "AdamW",
        "seeds": list(cfg.seeds), "device": str(device), "beam_size": ev.beam_size,
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
        dev_score = dev_scorer(params, pair, lang, clean_dir, tokenizer, device, encoded)

        per_k: dict = {}
        for k in cfg.k:
            row: dict = {"k_used": min(k, len(pool))}
            for init in cfg.inits:
                bleus, chrfs, losses, last_bleus, best_steps, dev_kept = [], [], [], [], [], []
                for seed in cfg.seeds:
                    run = cached_run(params, sources.get(init), tokenizer, pool, k, seed, device, dev_score,
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
