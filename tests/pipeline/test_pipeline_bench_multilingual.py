"""bench/multilingual.py sets each direction of a multilingual run beside its bilingual model: the same
references, the same scoring code, a paired bootstrap interval, and the within-1-BLEU verdict."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from babelflow.metrics import score
from bench import multilingual as bench

REFS = {"de": ["Zwei Hunde spielen im Schnee.", "Ein Mann fährt Fahrrad.", "Eine Frau liest ein Buch.",
               "Kinder spielen am Strand.", "Ein Hund rennt über die Wiese."],
        "fr": ["Deux chiens jouent dans la neige.", "Un homme fait du vélo.", "Une femme lit un livre.",
               "Des enfants jouent sur la plage.", "Un chien court dans le pré."]}


def project(root: Path, targets: list[str], hyps: dict[str, list[str]], refs=REFS) -> Path:
    (root).mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump({"languages": {"source": "en", "targets": targets}}))
    for lang in targets:
        clean = root / "data" / "clean" / f"en-{lang}"
        clean.mkdir(parents=True)
        (clean / "test.tgt").write_text("\n".join(refs[lang]) + "\n", encoding="utf-8")
        (root / "data" / "eval").mkdir(parents=True, exist_ok=True)
        (root / "data" / "eval" / f"en-{lang}.hyp").write_text("\n".join(hyps[lang]) + "\n", encoding="utf-8")
    return root


def weaker(lines: list[str]) -> list[str]:
    return [" ".join(s.split()[:-2]) for s in lines]  # the last two words of each sentence lost


def test_each_direction_scored_on_the_same_references(tmp_path):
    ml = project(tmp_path / "ml", ["de", "fr"], {"de": REFS["de"], "fr": weaker(REFS["fr"])})
    bi = [project(tmp_path / "de", ["de"], {"de": weaker(REFS["de"])}),
          project(tmp_path / "fr", ["fr"], {"fr": REFS["fr"]})]
    rows = bench.compare(ml, bi, resamples=200)
    de, fr = rows
    assert (de.pair, fr.pair, de.n) == ("en-de", "en-fr", 5)
    assert de.multilingual == score(REFS["de"], REFS["de"], "de")
    assert de.bilingual == score(weaker(REFS["de"]), REFS["de"], "de")
    # de: the multilingual model is the better one; fr: it is far worse, so the goal is missed there.
    assert de.delta > 0 and de.met and de.ci[0] <= de.delta <= de.ci[1]
    assert fr.delta < -bench.MARGIN and not fr.met
    text = bench.table(rows)
    assert f"| en-de | 5 | {de.bilingual['bleu']:.2f} | 100.00 | {de.delta:+.2f} [" in text
    assert text.splitlines()[-1].endswith("| **no** |")


def test_identical_systems_differ_by_nothing(tmp_path):
    hyps = {"de": weaker(REFS["de"])}
    (row,) = bench.compare(project(tmp_path / "ml", ["de"], hyps), [project(tmp_path / "bi", ["de"], hyps)], 50)
    assert row.delta == 0 and row.ci == (0.0, 0.0) and row.met


def test_other_references_or_a_missing_direction_are_refused(tmp_path):
    ml = project(tmp_path / "ml", ["de", "fr"], REFS)
    other = {"de": list(reversed(REFS["de"]))}
    with pytest.raises(SystemExit, match=r"de/data/clean/en-de/test.tgt: not the same test references"):
        bench.compare(ml, [project(tmp_path / "de", ["de"], REFS, refs=other),
                           project(tmp_path / "fr", ["fr"], REFS)], 10)
    with pytest.raises(SystemExit, match="no --bilingual project translates en-fr"):
        bench.compare(ml, [project(tmp_path / "de2", ["de"], REFS)], 10)
    with pytest.raises(SystemExit, match="not a bilingual en->X project"):
        bench.compare(ml, [ml], 10)
