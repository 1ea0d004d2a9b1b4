"""Choose a meta-learning setting on the held-out pair's dev split, never on its test split (issue 6).

Each variant is the `meta` section of a `bench/meta_multi30k.py` preset with some values changed. It
is meta-trained from the same transfer init that bench built, then fine-tuned on en->cs exactly as
the adapt stage fine-tunes it (same K draws, seeds, steps, dev-BLEU selection), and the cs dev BLEU
of the weights kept is recorded. The transfer init and the budget-matched transfer init (when
`meta_multi30k.py --matched-transfer` built it) are fine-tuned the same way as reference rows. No
test file is opened. A variant may not train on more de/fr tokens than the preset's meta-learning,
so the preset's budget-matched transfer baseline still covers it.

    python bench/meta_multi30k.py --preset cpu --matched-transfer   # builds the inits (its project folder)
    python bench/meta_select.py --preset cpu --refs --variant fomaml meta.algorithm=fomaml \\
        meta.meta_steps=90 meta.outer_lr=0.001
    python bench/meta_select.py --preset cpu --report   # table of every variant scored so far, into
                                                        # the dev-selection section of bench/RESULTS.md

    options: --work DIR --k 500 2000 --results FILE --corpus DIR

Each variant is a project folder <work>/<preset>/select/<name>/ whose data/clean, data/tokenizer and
data/train are meta_multi30k.py's (linked); its meta stage runs there and its scores go to dev.json
beside it, so two processes can score different variants at once (one core each) and `--report`
collects them. A row whose transfer init is not today's is left out of the report, named.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.io import read_json  # noqa: E402
from bench.machine import cpu_description  # noqa: E402
from bench.meta_multi30k import DEV_BLEU_SENTENCES, dev_bleu, meta_padded_tokens  # noqa: E402
from bench.pipeline import CORPUS, preset_params, run_stages  # noqa: E402
from bench.results_file import replace_section  # noqa: E402
from tasks._common import Paths  # noqa: E402

SECTION = "## Choosing the meta-learning setting on dev (issue 6): `bench/meta_select.py`"
GOAL_KS = (500, 2000)
# Inits meta_multi30k.py built, scored as they are -> their folder under the work dir ("meta": the preset's).
REFS = {"transfer": "data/train", "matched": "matched/data/train", "meta": "data/meta"}
SHARED = ("data/clean", "data/tokenizer", "data/encoded", "data/train")  # what a variant's project takes from the main one


def variant_params(preset: str, overrides: list[str], corpus=CORPUS):
    """The preset's params with `overrides`; refuses a variant that trains on more de/fr tokens
    than the preset's meta-learning (the budget-matched baseline would not cover it)."""
    for item in overrides:
        if not item.startswith("meta."):
            raise SystemExit(f"--variant {item!r}: only meta.* values may change (the adaptation is the yardstick)")
    base, params = preset_params(f"meta-{preset}", (), corpus), preset_params(f"meta-{preset}", overrides, corpus)
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


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        return cls(round(statistics.fmean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                   values)


@dataclass(frozen=True)
class AtK:
    kept: Spread  # the cs dev score of the weights the adaptation keeps, over the seeds
    last: Spread  # and of its last step's weights
    steps: list[int]  # the step kept, per seed


@dataclass(frozen=True)
class Row:
    """One init's scores (dev.json, written with asdict and read back by `load`)."""
    name: str
    key: dict  # what the scores depend on (record_key)
    padded_tokens: int | None  # de/fr tokens meta-learning added (None: a reference init)
    query_loss: list[float] | None
    wall_s: int
    metric: str
    init_dev_bleu: dict[str, float]
    k: dict[str, AtK]

    @classmethod
    def load(cls, path: Path) -> "Row":
        raw = read_json(path)
        return cls(**{**raw, "k": {k: AtK(Spread(**v["kept"]), Spread(**v["last"]), v["steps"])
                                   for k, v in raw["k"].items()}})


def score_init(params, init_dir: Path | None, project: Paths, tokenizer, ks: list[int], log) -> tuple[dict, dict]:
    """The cs dev score (`adapt.select_metric`, as it reads: BLEU or loss) of the weights the adaptation
    keeps and of its last step, per K over the seeds; and the init's own de/fr dev BLEU."""
    from babelflow.adapt.finetune import dev_reading, dev_scorer, finetune_init
    from babelflow.data import encoded_for, load_encoded
    from babelflow.runtime import start

    rt = start(params.train.device, params.train.threads, bf16=params.train.bf16, bf16_cpu=params.train.bf16_cpu)
    pair = params.languages.pair("cs")
    pool = load_encoded(encoded_for(project.clean, tokenizer, [pair]), pair, "train", params.train.max_len)
    ranked = dev_scorer(params, pair, "cs", project.clean, tokenizer, rt)
    metric, out = params.adapt.select_metric, {}
    init_bleu = dev_bleu(params, project, init_dir, DEV_BLEU_SENTENCES) if init_dir is not None else {}
    for k in ks:
        kept, last, steps = [], [], []
        for seed in params.adapt.seeds:
            model, tuned = finetune_init(params, init_dir, tokenizer, pool, k, seed, rt, ranked)
            last.append(round(dev_reading(metric, ranked(model)), 4))  # the scorers decode without grad
            kept.append(round(dev_reading(metric, tuned.best_score), 4))
            steps.append(tuned.best_step)
            log(f"  K={k} seed={seed}: cs {metric} kept {kept[-1]:.2f} (step {steps[-1]}), last step {last[-1]:.2f}")
        out[str(k)] = AtK(Spread.of(kept), Spread.of(last), steps)
    return out, init_bleu


def record_key(name: str, overrides: list[str], params, ks: list[int], work: Path) -> dict:
    """What a row's scores depend on besides the adaptation code: its meta settings, K, seeds and the
    weights it starts from (a reference init's own, or the transfer init a variant meta-trains from),
    so the report can tell a row of an older init from today's."""
    from babelflow.io import sha256_file

    trained_meta = name not in REFS or name == "meta"
    start = work / (REFS[name] if name in REFS else "data/train") / "model.safetensors"
    return {"overrides": overrides, "k": ks, "seeds": list(params.adapt.seeds),
            "meta": meta_settings(params) if trained_meta else None, "start_sha256": sha256_file(start)}


def run_one(name: str, overrides: list[str], preset: str, work: Path, ks: list[int], corpus, log) -> Row:
    from babelflow.io import write_json
    from babelflow.tokenizer import Tokenizer

    params = variant_params(preset, overrides, corpus)
    if not params.adapt.select_every:
        raise SystemExit("the preset's adapt selects nothing on dev (adapt.select_every 0): nothing to compare")
    project, folder = Paths(work), work / "select" / name
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(project.tokenizer / "spm.model", max_placeholders=params.tokenizer.max_placeholders)
    t, meta_metrics = time.monotonic(), None
    if name in REFS:
        init_dir = work / REFS[name]
    else:
        for shared in SHARED:
            (folder / shared).parent.mkdir(parents=True, exist_ok=True)
            if not (folder / shared).exists():
                (folder / shared).symlink_to(work.resolve() / shared)
        init_dir = run_stages(params, folder, ["meta"])[0].meta
        meta_metrics = read_json(init_dir / "meta_state.json")
    log(f"{name}: fine-tuning on en->cs, K {ks}, seeds {list(params.adapt.seeds)}")
    scores, init_bleu = score_init(params, init_dir, project, tokenizer, ks, log)
    key = record_key(name, overrides, params, ks, work)
    row = Row(name, key, meta_padded_tokens(params.meta) if key["meta"] is not None else None,
              [meta_metrics["query_loss_first"], meta_metrics["query_loss_last"]] if meta_metrics else None,
              round(time.monotonic() - t), params.adapt.select_metric, init_bleu, scores)
    write_json(folder / "dev.json", asdict(row))
    return row


def render(preset: str, rows: list[Row], ks: list[int]) -> str:
    a = variant_params(preset, []).adapt
    metric = "dev BLEU" if a.select_metric == "dev_bleu" else "dev loss"
    out = [
        f"- Machine: {cpu_description()}; date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} (UTC).",
        f"- Command: one `python bench/meta_select.py --preset {preset} --variant NAME meta.KEY=VALUE ...` per "
        "variant (its settings are in the table; a `meta` row is the preset's own init), then `--report`. "
        f"Inits and adaptation as in the section above ({a.steps} AdamW steps, lr {a.lr}, seeds {list(a.seeds)}, "
        f"kept: the best {metric} on {f'the first {a.select_sentences}' if a.select_sentences else 'all'} cs dev "
        "sentences). Only the cs dev split is read: these numbers choose a setting, the test split then scores "
        "the chosen one in the section above.",
        "",
        "| init | meta-learning | de/fr tokens added | de / fr dev BLEU of the init | "
        + " | ".join(f"cs {metric} {which}, K={k}" for which in ("kept", "last step") for k in ks) + " |",
        "|" + "---|" * (4 + 2 * len(ks)),
    ]
    for r in rows:
        cells = [f"{getattr(r.k[str(k)], which).mean:.2f} ± {getattr(r.k[str(k)], which).std:.2f}"
                 for which in ("kept", "last") for k in ks]
        out.append(f"| {r.name} | {describe(r.key.get('meta'))} | {f'{r.padded_tokens:,}' if r.padded_tokens else '-'} "
                   f"| {' / '.join(f'{v:.2f}' for v in r.init_dev_bleu.values()) or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "babelflow_meta_bench"))
    ap.add_argument("--corpus", default=str(CORPUS))
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
    if not (work / REFS["transfer"] / "model.json").is_file():
        raise SystemExit(f"{work / REFS['transfer']}: no transfer init; run bench/meta_multi30k.py --preset {args.preset} first")
    todo = [(v[0], v[1:]) for v in args.variant]
    if args.refs:
        todo = [(name, []) for name in REFS if (work / REFS[name] / "model.json").is_file()] + todo
    for name, overrides in todo:
        if name in REFS and overrides:
            raise SystemExit(f"--variant {name}: the name is taken by a reference init")
        run_one(name, overrides, args.preset, work, args.k, args.corpus, lambda m: print(m, flush=True))
    if args.report:
        from babelflow.io import sha256_file, write_text

        rows = [Row.load(p) for p in sorted((work / "select").glob("*/dev.json"))]
        start = {name: sha256_file(work / folder / "model.safetensors") for name, folder in REFS.items()
                 if (work / folder / "model.safetensors").is_file()}
        stale = [r.name for r in rows if r.key["start_sha256"] != start.get(r.name, start["transfer"])]
        if stale:
            print(f"left out, scored on init weights that have changed since: {', '.join(stale)}")
        rows = [r for r in rows if r.name not in stale]
        rows.sort(key=lambda r: (list(REFS).index(r.name) if r.name in REFS else len(REFS), r.name))
        body = render(args.preset, rows, args.k)
        target = Path(args.results)
        write_text(target, replace_section(target.read_text(encoding="utf-8"), SECTION, body))
        print(body)
        print(f"wrote the dev-selection section of {target}")


if __name__ == "__main__":
    main()
