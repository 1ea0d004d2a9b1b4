"""Choose a meta-learning setting on the held-out pair's dev split, never on its test split (issue 6).

Each variant is the `meta` section of a `bench/meta_multi30k.py` preset with some values changed. It
is meta-trained from the same transfer init that bench built, then fine-tuned on en->cs exactly as
the adapt stage fine-tunes it (same K draws, seeds, steps, dev-BLEU selection), and the cs dev BLEU
of the weights kept is recorded. The transfer init and the budget-matched transfer init (when
`meta_multi30k.py --matched-transfer` built it) are fine-tuned the same way as reference rows. No
test file is opened. A variant may not train on more de/fr tokens than the preset's meta-learning,
so the preset's budget-matched transfer baseline still covers it.

    python bench/meta_multi30k.py --preset cpu --matched-transfer   # builds the inits (or reuses them)
    python bench/meta_select.py --preset cpu --refs --variant fomaml meta.algorithm=fomaml \\
        meta.meta_steps=90 meta.outer_lr=0.001
    python bench/meta_select.py --preset cpu --report   # table of every variant scored so far, into
                                                        # the dev-selection section of bench/RESULTS.md

Variants are cached under <work>/<preset>/select/<name>/, so two processes can score different
variants at once (one core each) and `--report` collects them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.config import parse_params  # noqa: E402
from bench.machine import cpu_description  # noqa: E402
from bench.meta_multi30k import PRESETS, DEV_BLEU_SENTENCES, meta_padded_tokens, with_overrides  # noqa: E402
from bench.results_file import replace_section  # noqa: E402

SECTION = "## Choosing the meta-learning setting on dev (issue 6): `bench/meta_select.py`"
GOAL_KS = (500, 2000)
# Inits meta_multi30k.py built, scored as they are -> their folder under the work dir ("meta": the preset's).
REFS = {"transfer": "train", "matched": "train_matched", "meta": "meta"}


def variant_params(preset: str, overrides: list[str]):
    """The preset's params with `overrides`; refuses a variant that trains on more de/fr tokens
    than the preset's meta-learning (the budget-matched baseline would not cover it)."""
    for item in overrides:
        if not item.startswith("meta."):
            raise SystemExit(f"--variant {item!r}: only meta.* values may change (the adaptation is the yardstick)")
    base = parse_params(PRESETS[preset])
    params = parse_params(with_overrides(PRESETS[preset], overrides))
    if meta_padded_tokens(params.meta) > meta_padded_tokens(base.meta):
        raise SystemExit(f"variant {overrides}: {meta_padded_tokens(params.meta):,} padded de/fr tokens, more than "
                         f"the preset's {meta_padded_tokens(base.meta):,}; lower meta.meta_steps")
    return params


def meta_settings(params) -> dict:
    """What a meta-learned init depends on (not how often it is checkpointed)."""
    return params.meta.model_dump(exclude={"checkpoint_every", "resume", "enabled"})


def describe(meta: dict | None) -> str:
    if meta is None:
        return "-"
    return (f"{meta['algorithm']} {meta['meta_steps']} x {meta['tasks_per_step']} tasks x {meta['inner_steps']} "
            f"inner {meta['inner_optimizer']} (lr {meta['inner_lr']:g}), outer lr {meta['outer_lr']:g}")


def _mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0, "values": values}


def score_init(params, init_dir: Path | None, clean: Path, tokenizer, ks: list[int], log) -> dict:
    """The cs dev score (`adapt.select_metric`, as it reads: BLEU or loss) of the weights the adaptation
    keeps and of its last step, per K over the seeds; plus the init's own de/fr dev BLEU."""
    from babelflow.data import encoded_for, load_encoded, read_parallel
    from babelflow.meta.adapt import dev_reading, dev_scorer, finetune_init
    from babelflow.meta.train import resolve_device
    from babelflow.models import load_model
    from babelflow.train import dev_bleu

    device = resolve_device(params.train.device, params.train.threads)
    pair = params.languages.pair("cs")
    pool = load_encoded(encoded_for(clean, tokenizer, [pair]), pair, "train", params.train.max_len)
    ranked = dev_scorer(params, pair, "cs", clean, tokenizer, device)
    metric = params.adapt.select_metric
    out: dict = {"metric": metric, "init_dev_bleu": {}, "k": {}}
    if init_dir is not None:
        model = load_model(init_dir, device)
        for lang in params.languages.targets:
            pairs = read_parallel(clean / f"en-{lang}" / "dev.src", clean / f"en-{lang}" / "dev.tgt")
            out["init_dev_bleu"][lang] = round(dev_bleu(model, tokenizer, {lang: pairs}, DEV_BLEU_SENTENCES) or 0.0, 2)
        del model
    for k in ks:
        kept, last, steps = [], [], []
        for seed in params.adapt.seeds:
            model, tuned = finetune_init(params, init_dir, tokenizer, pool, k, seed, device, ranked)
            last.append(round(dev_reading(metric, ranked(model)), 4))  # the scorers decode without grad
            kept.append(round(dev_reading(metric, tuned.best_score), 4))
            steps.append(tuned.best_step)
            log(f"  K={k} seed={seed}: cs {metric} kept {kept[-1]:.2f} (step {steps[-1]}), "
                f"last step {last[-1]:.2f}")
            del model, tuned
        out["k"][str(k)] = {"kept": _mean_std(kept), "last": _mean_std(last), "steps": steps}
    return out


def cache_key(name: str, overrides: list[str], params, ks: list[int], work: Path) -> dict:
    """What a row's scores depend on besides the adaptation code: its meta settings, K, seeds and the
    weights it starts from (a reference init's own, or the transfer init a variant meta-trains from),
    so retraining either cannot pass old scores off as the new init's."""
    from babelflow.io import sha256_file

    trained_meta = name not in REFS or name == "meta"
    start = work / (REFS[name] if name in REFS else "train") / "model.safetensors"
    return {"overrides": overrides, "k": ks, "seeds": list(params.adapt.seeds),
            "meta": meta_settings(params) if trained_meta else None, "start_sha256": sha256_file(start)}


def run_one(name: str, overrides: list[str], preset: str, work: Path, ks: list[int], log) -> dict:
    from babelflow.meta.train import meta_train
    from babelflow.tokenizer import Tokenizer

    params = variant_params(preset, overrides)
    if not params.adapt.select_every:
        raise SystemExit("the preset's adapt selects nothing on dev (adapt.select_every 0): nothing to compare")
    clean, folder = work / "clean", work / "select" / name
    tokenizer = Tokenizer(work / "tokenizer" / "spm.model", max_placeholders=params.tokenizer.max_placeholders)
    key = cache_key(name, overrides, params, ks, work)
    cache = folder / "dev.json"
    if cache.is_file():
        done = json.loads(cache.read_text(encoding="utf-8"))
        if done.get("key") == key:
            log(f"{name}: scored before ({cache})")
            return done
    t = time.monotonic()
    if name in REFS:
        init_dir, meta_metrics = work / REFS[name], None
    else:
        init_dir = folder / "meta"
        meta_metrics = meta_train(params, clean, tokenizer, work / "train", init_dir, folder / "ckpt_meta", log)
    log(f"{name}: fine-tuning on en->cs, K {ks}, seeds {list(params.adapt.seeds)}")
    scores = score_init(params, init_dir, clean, tokenizer, ks, log)
    from babelflow.io import write_json

    result = {"key": key, "name": name,
              "padded_tokens": meta_padded_tokens(params.meta) if key["meta"] is not None else None,
              "query_loss": ([meta_metrics["query_loss_first"], meta_metrics["query_loss_last"]]
                             if meta_metrics else None),
              "wall_s": round(time.monotonic() - t), **scores}
    write_json(cache, result)
    return result


def render(preset: str, rows: list[dict], ks: list[int]) -> str:
    params = parse_params(PRESETS[preset])
    a = params.adapt
    metric = "dev BLEU" if a.select_metric == "dev_bleu" else "dev loss"
    head = ("| init | meta-learning | de/fr tokens added | de / fr dev BLEU of the init | "
            + " | ".join(f"cs {metric} kept, K={k}" for k in ks) + " | "
            + " | ".join(f"cs {metric} last step, K={k}" for k in ks) + " |")
    out = [
        f"- Machine: {cpu_description()}; date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} (UTC).",
        f"- Command: one `python bench/meta_select.py --preset {preset} --variant NAME meta.KEY=VALUE ...` per "
        "variant (its settings are in the table; a `meta` row is the preset's own init), then `--report`. "
        f"Inits and adaptation as in the section above ({a.steps} AdamW steps, lr {a.lr}, seeds {list(a.seeds)}, "
        f"kept: the best {metric} on {f'the first {a.select_sentences}' if a.select_sentences else 'all'} cs dev "
        "sentences). Only the cs dev split is read: these numbers choose a setting, the test split then scores "
        "the chosen one in the section above.",
        "",
        head,
        "|" + "---|" * (4 + 2 * len(ks)),
    ]
    for r in rows:
        changed = describe(r["key"].get("meta"))
        dev = " / ".join(f"{v:.2f}" for v in r["init_dev_bleu"].values()) or "-"
        cells = [f"{r['k'][str(k)][which]['mean']:.2f} ± {r['k'][str(k)][which]['std']:.2f}"
                 for which in ("kept", "last") for k in ks]
        tokens = f"{r['padded_tokens']:,}" if r["padded_tokens"] else "-"
        out.append(f"| {r['name']} | {changed} | {tokens} | {dev} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "babelflow_meta_bench"))
    ap.add_argument("--preset", choices=["cpu", "gpu", "smoke"], default="cpu")
    ap.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME [meta.KEY=VALUE ...]",
                    help="a meta-learning variant: a name, then the preset's meta values it changes")
    ap.add_argument("--refs", action="store_true",
                    help="also score the inits meta_multi30k.py built: transfer, budget-matched transfer and "
                         "the preset's meta")
    ap.add_argument("--k", nargs="+", type=int, default=list(GOAL_KS))
    ap.add_argument("--report", action="store_true",
                    help="render every variant scored so far into --results")
    ap.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    work = Path(args.work) / args.preset
    if not (work / "train" / "model.json").is_file():
        raise SystemExit(f"{work / 'train'}: no transfer init; run bench/meta_multi30k.py --preset {args.preset} first")
    todo = [(v[0], v[1:]) for v in args.variant]
    if args.refs:
        todo = [(name, []) for name in REFS if (work / REFS[name] / "model.json").is_file()] + todo
    for name, overrides in todo:
        if name in REFS and overrides:
            raise SystemExit(f"--variant {name}: the name is taken by a reference init")
        run_one(name, overrides, args.preset, work, args.k, lambda m: print(m, flush=True))
    if args.report:
        from babelflow.io import write_text

        rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "select").glob("*/dev.json"))]
        rows.sort(key=lambda r: (list(REFS).index(r["name"]) if r["name"] in REFS else len(REFS), r["name"]))
        body = render(args.preset, rows, args.k)
        target = Path(args.results)
        write_text(target, replace_section(target.read_text(encoding="utf-8"), SECTION, body))
        print(body)
        print(f"wrote the dev-selection section of {target}")


if __name__ == "__main__":
    main()
