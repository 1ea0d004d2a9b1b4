"""Quality benchmark of issue 5: Multi30k through the pipeline's own stages (collect with Multi30k's
train / val / test_2016_flickr splits, clean, tokenize, encode, train, evaluate); sacrebleu BLEU and chrF++
(with signatures) on test_2016_flickr.

    python bench/multi30k.py [--preset cpu|gpu|smoke] [--runs ende multi] [--set train.max_steps=600 ...]
                             [--corpus ../shared/corpora/multi30k] [--work /tmp/babelflow_multi30k]

Runs (each a project folder <work>/<preset>/<run>/data/, as `dvc repro` lays it out):
- `ende`:  a bilingual en->de model (tokenizer on en+de, one target tag).
- `multi`: one multilingual en->de+fr model (the `<2xx>` tag picks the output).
Both get the same step budget, so the multilingual model sees about half as much en->de data.

Presets: bench/presets/multi30k-<preset>.yaml (params files; `--set` changes one value). Selection on
val is the train option `train.average_last: [1, 3, ...]`: the last weights or the average of the last
k checkpoints, whichever has the best greedy BLEU on the val split; test is decoded (beam search) only
with the weights kept. bench/decode_speed.py --model <work>/<preset>/ende/data/train times them.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from babelflow.io import read_json  # noqa: E402
from bench.pipeline import add_arguments, preset_params, run_stages  # noqa: E402

RUN_TARGETS = {"ende": "[de]", "multi": "[de, fr]"}
STAGES = ["collect", "clean", "tokenize", "encode", "train", "evaluate"]


@dataclass(frozen=True)
class PairScore:
    pair: str
    n: int
    bleu: float
    chrfpp: float
    signatures: tuple[str, str]  # BLEU's, chrF++'s


@dataclass(frozen=True)
class RunResult:
    run: str
    steps: int
    tokens_seen: int
    device: str
    kept: str  # which weights the val split chose
    seconds: dict[str, float]
    test: list[PairScore]


def run_one(name: str, args) -> RunResult:
    params = preset_params(f"multi30k-{args.preset}", [f"languages.targets={RUN_TARGETS[name]}", *args.overrides],
                           args.corpus)
    paths, seconds = run_stages(params, Path(args.work) / args.preset / name, STAGES)
    state, scores = read_json(paths.train / "train_state.json"), read_json(paths.eval / "metrics.json")
    chosen = state.get("selection", {}).get("chosen", state.get("averaged_checkpoints", 1))
    test = [PairScore(pair, m["n"], m["bleu"], m["chrfpp"], (m["signatures"]["bleu"], m["signatures"]["chrfpp"]))
            for pair, m in scores.items() if pair != "macro"]
    return RunResult(name, state["steps"], state["tokens_seen"], state["device"],
                     "last" if chosen == 1 else f"avg{chosen}", seconds, test)


def table(results: list[RunResult]) -> str:
    lines = ["| run | test pair | n | BLEU | chrF++ | steps | target tokens | train wall | total wall | device | val choice |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for m in r.test:
            lines.append(f"| {r.run} | {m.pair} | {m.n} | {m.bleu:.2f} | {m.chrfpp:.2f} | {r.steps} | "
                         f"{r.tokens_seen:,} | {r.seconds['train'] / 60:.1f} min | "
                         f"{sum(r.seconds.values()) / 60:.1f} min | {r.device} | {r.kept} |")
    sigs = sorted({s for r in results for m in r.test for s in m.signatures})
    return "\n".join(lines + [""] + [f"- `{s}`" for s in sigs])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap, ["cpu", "gpu", "smoke"], "cpu", "/tmp/babelflow_multi30k")
    ap.add_argument("--runs", nargs="+", choices=sorted(RUN_TARGETS), default=["ende", "multi"])
    args = ap.parse_args()
    print(table([run_one(name, args) for name in args.runs]))


if __name__ == "__main__":
    main()
