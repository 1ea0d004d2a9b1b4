"""Ablation on validation data: variants of one params file (each a list of `--set` overrides) trained
through the pipeline's own stages, in project folders that share the data stages' outputs, then scored
on each target's dev split with the evaluate decoding settings: BLEU, chrF++ and how many outputs repeat
a word 4+ times in a row. Test is never read, so the winner can become a recipe.

    python bench/ablate.py --params recipes/gettext-default.yaml --data . \\
        --variant base --variant "lr2e-3: train.lr=0.002" --variant "vocab4k: tokenizer.vocab_size=4000" \\
        [--stages train] [--work /tmp/babelflow_ablate]

--data: a project whose data/ holds what the first stage of --stages reads (e.g. `dvc repro tokenize`
ran there); each variant's folder links those outputs read-only and writes its own from --stages on (a
variant that changes the tokenizer needs `--stages tokenize encode train`: train refuses data encoded
by another tokenizer). Rerunning a finished variant resumes from its final checkpoint: a reload.
`--stages` with no stage scores the --data project's own trained model (its data/train) with each
variant's decoding settings: the decoding ablation (beam, length penalty, repetition ban) of a
finished run, without training again.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from babelflow.config import load_params  # noqa: E402
from babelflow.io import read_json, write_json  # noqa: E402
from bench.pipeline import run_stages  # noqa: E402

# The data stages in pipeline order: a variant links the outputs of those before its first stage.
DATA_STAGES = ["raw", "clean", "tokenizer", "encoded", "train"]
FIRST_OUTPUT = {"clean": "clean", "tokenize": "tokenizer", "encode": "encoded", "train": "train"}


@dataclass(frozen=True)
class DevScore:
    pair: str
    n: int
    bleu: float
    chrfpp: float
    repeats: int  # outputs that repeat one word 4+ times in a row


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: list[str]
    steps: int
    train_s: float | None  # None: no stage ran (a decoding variant of the --data project's model)
    dev: list[DevScore]

    @property
    def bleu(self) -> float:
        return sum(d.bleu for d in self.dev) / len(self.dev)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`name` or `name: key=value key=value ...`."""
    name, _, rest = text.partition(":")
    return name.strip(), rest.split()


def link_data(data: Path, work: Path, first_stage: str | None) -> None:
    """Link into `work`/data the outputs of `data`/data made before `first_stage` (None: all of them,
    the trained model included)."""
    stop = FIRST_OUTPUT.get(first_stage)
    (work / "data").mkdir(parents=True, exist_ok=True)
    for name in DATA_STAGES:
        if name == stop:
            break
        link, target = work / "data" / name, (data / "data" / name).resolve()
        if target.exists() and not link.exists():
            link.symlink_to(target, target_is_directory=True)


def score_dev(params, paths, limit: int = 0, split: str = "dev") -> list[DevScore]:
    """Each target's `split` (dev unless a caller has chosen on dev already) decoded with the evaluate
    settings and scored; `limit`: its first N sentences (0: all)."""
    from babelflow.data import read_parallel
    from babelflow.metrics import repetition
    from babelflow.models import load_model
    from babelflow.runtime import start
    from babelflow.tokenizer import Tokenizer
    from babelflow.validation import Decoding, translate_and_score

    rt = start(params.train.device, params.train.threads)
    model = load_model(paths.train, device=rt.device).eval()
    tokenizer = Tokenizer(paths.tokenizer / "spm.model", max_placeholders=params.tokenizer.max_placeholders)
    out = []
    for lang in params.languages.targets:
        pair = params.languages.pair(lang)
        dev = read_parallel(paths.clean / pair / f"{split}.src", paths.clean / pair / f"{split}.tgt")[: limit or None]
        hyps, s = translate_and_score(model, tokenizer, [a for a, _ in dev], [b for _, b in dev], lang,
                                      Decoding.of(params.evaluate))
        out.append(DevScore(pair, s["n"], round(s["bleu"], 2), round(s["chrfpp"], 2), repetition(hyps)["repeats"]))
    return out


def run_variant(args, name: str, overrides: list[str]) -> Variant:
    params = load_params(args.params, overrides)
    work = Path(args.work) / name
    link_data(Path(args.data), work, args.stages[0] if args.stages else None)
    t = time.monotonic()
    paths, seconds = run_stages(params, work, args.stages)
    state = read_json(paths.train / "train_state.json")
    train_s = seconds.get("train", round(time.monotonic() - t, 1)) if args.stages else None
    result = Variant(name, overrides, state["steps"], train_s, score_dev(params, paths, args.dev_sentences))
    write_json(work / "ablation.json", asdict(result))
    return result


def table(rows: list[Variant]) -> str:
    pairs = [d.pair for d in rows[0].dev]
    head = "| variant | overrides | steps | train | " + " | ".join(f"{p} BLEU" for p in pairs) + \
           " | mean dev BLEU | repeats (4+) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r.name} | {' '.join(r.overrides) or '-'} | {r.steps} | "
                     + ("-" if r.train_s is None else f"{r.train_s / 60:.1f} min") + " | "
                     + " | ".join(f"{d.bleu:.2f}" for d in r.dev)
                     + f" | {r.bleu:.2f} | {sum(d.repeats for d in r.dev)} of {sum(d.n for d in r.dev)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", required=True, help="the params file the variants change")
    ap.add_argument("--data", required=True, help="project folder whose data/ the variants start from")
    ap.add_argument("--variant", action="append", required=True, help="NAME or 'NAME: key=value ...' (repeatable)")
    ap.add_argument("--stages", nargs="*", default=["train"],
                    help="stages each variant runs (default: train; none: decode the --data project's model)")
    ap.add_argument("--dev-sentences", type=int, default=0, help="first N dev sentences per pair (0: all)")
    ap.add_argument("--work", default="/tmp/babelflow_ablate")
    args = ap.parse_args()
    print(table([run_variant(args, *parse_variant(v)) for v in args.variant]))


if __name__ == "__main__":
    main()
