"""Each direction of a multilingual run against its bilingual model (issue 20): the test translations each
project's evaluate stage wrote (data/eval/<pair>.hyp), scored by the same code (babelflow.metrics.score)
against the same references, with a paired bootstrap 95 % interval of the BLEU difference.

    python bench/multilingual.py --multilingual ../m30k_fr --bilingual ../m30k --bilingual ../m30k_enfr

Each project is a finished run (`make run RECIPE=...`); a bilingual one has one target language (its
params.yaml). The references are the multilingual project's data/clean/<pair>/test.tgt; the bilingual
project's must be the same lines (both read Multi30k's fixed test split), which is checked, so the two
systems are scored on the same sentences. Goal: multilingual BLEU >= bilingual BLEU - 1, per direction.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from babelflow.metrics import SCORES, metric_objects, score  # noqa: E402

MARGIN = 1.0  # BLEU: each direction within 1 of its bilingual model, or better
RESAMPLES = 1000


@dataclass(frozen=True)
class Direction:
    pair: str
    n: int
    bilingual: dict  # babelflow.metrics.score of the bilingual model's test translations
    multilingual: dict
    ci: tuple[float, float]  # paired bootstrap 95 % interval of multilingual - bilingual BLEU

    @property
    def delta(self) -> float:
        return self.multilingual["bleu"] - self.bilingual["bleu"]

    @property
    def met(self) -> bool:
        return self.delta >= -MARGIN


def languages(project: Path) -> tuple[str, list[str]]:
    langs = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["languages"]
    return langs["source"], list(langs["targets"])


def lines(path: Path) -> list[str]:
    if not path.is_file():
        raise SystemExit(f"{path}: missing (has the project's evaluate stage run?)")
    return path.read_text(encoding="utf-8").splitlines()


def paired_bootstrap(hyps_a: list[str], hyps_b: list[str], refs: list[str], lang: str,
                     resamples: int = RESAMPLES, seed: int = 12345) -> tuple[float, float]:
    """95 % interval of BLEU(b) - BLEU(a) over test sets resampled with replacement, the same sentences
    for both systems in each resample (Koehn 2004), from sacrebleu's per-sentence BLEU statistics."""
    bleu = dict(zip(SCORES, metric_objects(lang)))["bleu"]  # the BLEU `score` reports
    stats = [np.array(bleu._extract_corpus_statistics(h, [refs]), dtype=np.int64) for h in (hyps_a, hyps_b)]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(refs), len(refs))
        a, b = (bleu._compute_score_from_stats(s[idx].sum(0).tolist()).score for s in stats)
        diffs.append(b - a)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def compare(multilingual: Path, bilinguals: list[Path], resamples: int = RESAMPLES) -> list[Direction]:
    source, targets = languages(multilingual)
    by_target = {}
    for project in bilinguals:
        src, tgts = languages(project)
        if src != source or len(tgts) != 1:
            raise SystemExit(f"{project / 'params.yaml'}: not a bilingual {source}->X project (languages: "
                             f"source {src}, targets {tgts})")
        by_target[tgts[0]] = project
    out = []
    for lang in targets:
        pair = f"{source}-{lang}"
        if lang not in by_target:
            raise SystemExit(f"no --bilingual project translates {pair}")
        refs = lines(multilingual / "data" / "clean" / pair / "test.tgt")
        bi_refs = by_target[lang] / "data" / "clean" / pair / "test.tgt"
        if lines(bi_refs) != refs:
            raise SystemExit(f"{bi_refs}: not the same test references as {multilingual}'s: the two systems "
                             "would be scored on different sentences")
        hyps = {name: lines(project / "data" / "eval" / f"{pair}.hyp")
                for name, project in (("bilingual", by_target[lang]), ("multilingual", multilingual))}
        out.append(Direction(pair, len(refs), score(hyps["bilingual"], refs, lang),
                             score(hyps["multilingual"], refs, lang),
                             paired_bootstrap(hyps["bilingual"], hyps["multilingual"], refs, lang, resamples)))
    return out


def table(rows: list[Direction]) -> str:
    out = ["| direction | sentences | bilingual BLEU | multilingual BLEU | multilingual - bilingual [95 % CI] | "
           "BLEU, lowercased (bi / multi) | chrF++ (bi / multi) | within 1 BLEU or better |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, m = r.bilingual, r.multilingual
        out.append(f"| {r.pair} | {r.n} | {b['bleu']:.2f} | {m['bleu']:.2f} | {r.delta:+.2f} "
                   f"[{r.ci[0]:+.2f}, {r.ci[1]:+.2f}] | {b['bleu_lc']:.2f} / {m['bleu_lc']:.2f} | "
                   f"{b['chrfpp']:.2f} / {m['chrfpp']:.2f} | {'yes' if r.met else '**no**'} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--multilingual", required=True, help="the finished multilingual project")
    ap.add_argument("--bilingual", action="append", required=True, help="a finished bilingual project (repeatable)")
    ap.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    args = ap.parse_args()
    rows = compare(Path(args.multilingual), [Path(p) for p in args.bilingual], args.resamples)
    print(table(rows))
    met = all(r.met for r in rows)
    print(f"\nGoal (each direction >= its bilingual model - {MARGIN:g} BLEU): {'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
