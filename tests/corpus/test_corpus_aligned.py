from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelflow.config import AlignedSource
from babelflow.corpus.aligned import collect_aligned, read_moses, read_tmx, read_tsv
from babelflow.errors import InputError


def _src(**kw) -> AlignedSource:
    return AlignedSource(type="aligned", name="t", **kw)


def test_multi30k_four_languages(multi30k_dir):
    cfg = _src(path=str(multi30k_dir), splits={"train": "train", "dev": "val", "test": "test_2016_flickr"})
    pairs, recs = collect_aligned(cfg, "en", ["de", "fr", "cs", "sv"], "fail")
    by = {(r.lang, r.extra["split"]): r for r in recs}
    assert {lang for lang, _ in by} == {"de", "fr", "cs"}  # no Swedish files: left to other sources
    assert by[("de", "train")].read == 29000 and by[("fr", "dev")].read == 1014
    assert by[("cs", "test")].read == 1000
    for r in recs:
        assert r.read == sum(1 for p in pairs if p.record is r) + sum(r.dropped.values())
    first = [p for p in pairs if p.record is by[("de", "train")]][0]
    assert first.src == (multi30k_dir / "train.en").read_text(encoding="utf-8").split("\n", 1)[0].strip()


def _moses(tmp_path: Path, en: bytes, de: bytes, gz: bool = False) -> AlignedSource:
    opener = gzip.compress if gz else (lambda b: b)
    (tmp_path / ("train.en" + (".gz" if gz else ""))).write_bytes(opener(en))
    (tmp_path / ("train.de" + (".gz" if gz else ""))).write_bytes(opener(de))
    return _src(path=str(tmp_path))


def test_gzip_transparent_and_empty_lines_counted(tmp_path):
    cfg = _moses(tmp_path, b"Hello\n\nBye\r\n", "Hallo\nLeer\nTschüs\n".encode(), gz=True)
    pairs, [rec] = collect_aligned(cfg, "en", ["de"], "fail")
    assert [(p.src, p.tgt) for p in pairs] == [("Hello", "Hallo"), ("Bye", "Tschüs")]
    assert rec.read == 3 and rec.dropped == {"empty": 1} and rec.path.endswith("train.de.gz")


def test_mismatched_line_counts(tmp_path):
    cfg = _moses(tmp_path, b"a\nb\nc\n", b"x\ny\n")
    with pytest.raises(InputError) as ei:
        collect_aligned(cfg, "en", ["de"], "fail")
    assert ei.value.path.endswith("train.de") and ei.value.line == 3 and "not aligned" in str(ei.value)
    pairs, [rec] = collect_aligned(cfg, "en", ["de"], "skip")
    assert pairs == [] and rec.dropped == {"mismatched_line_count": 3} and "error" in rec.extra


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(b"".join(b"line %d\n" % i for i in range(5000)))
    cfg = _moses(tmp_path, b"", b"")
    (tmp_path / "train.en").unlink()
    (tmp_path / "train.en.gz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "train.de").write_bytes(b"".join(b"zeile %d\n" % i for i in range(5000)))
    with pytest.raises(InputError, match=r"train\.en\.gz.*truncated"):
        collect_aligned(cfg, "en", ["de"], "fail")


def test_invalid_utf8_and_empty_file(tmp_path):
    cfg = _moses(tmp_path, b"ok\nbad \xff\n", b"gut\nschlecht\n")
    with pytest.raises(InputError) as ei:
        collect_aligned(cfg, "en", ["de"], "fail")
    assert ei.value.line == 2 and "invalid UTF-8" in str(ei.value)
    pairs, [rec] = collect_aligned(cfg, "en", ["de"], "skip")
    assert len(pairs) == 1 and rec.dropped == {"invalid_utf8": 1}
    (tmp_path / "train.de").write_bytes(b"")
    with pytest.raises(InputError, match="train.de: empty file"):
        collect_aligned(cfg, "en", ["de"], "fail")


def test_tsv_and_tatoeba(tmp_path):
    (tmp_path / "pairs.tsv").write_text("Hello\tHallo\nTab\tin\tthree\nYes\tJa\n", encoding="utf-8")
    cfg = _src(format="tsv", path=str(tmp_path), splits={"train": "pairs.tsv"}, lang="de")
    with pytest.raises(InputError) as ei:
        collect_aligned(cfg, "en", ["de", "fr"], "fail")
    assert ei.value.line == 2
    pairs, recs = collect_aligned(cfg, "en", ["de", "fr"], "skip")
    assert [(p.lang, p.src, p.tgt) for p in pairs] == [("de", "Hello", "Hallo"), ("de", "Yes", "Ja")]
    assert sum(r.read for r in recs) == 3 and sum(sum(r.dropped.values()) for r in recs) == 1

    (tmp_path / "tat.tsv.gz").write_bytes(gzip.compress(
        "eng\tdeu\tI run.\tIch renne.\nfra\teng\tJe cours.\tI run.\neng\tita\tCiao\tCiao\n".encode()))
    cfg = _src(format="tatoeba", path=str(tmp_path), splits={"train": "tat.tsv"})
    pairs, recs = collect_aligned(cfg, "en", ["de", "fr"], "fail")
    assert sorted((p.lang, p.src, p.tgt) for p in pairs) == [("de", "I run.", "Ich renne."),
                                                               ("fr", "I run.", "Je cours.")]
    other = [r for r in recs if r.lang == "*"][0]
    assert other.dropped == {"other_language": 1}


TMX = """<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4"><header srclang="en"/><body>
<tu><tuv xml:lang="en"><seg>Hello <b>world</b></seg></tuv><tuv xml:lang="de-DE"><seg>Hallo Welt</seg></tuv></tu>
<tu><tuv xml:lang="EN"><seg>Bye</seg></tuv><tuv xml:lang="fr"><seg>Salut</seg></tuv></tu>
<tu><tuv xml:lang="de"><seg>Nur Deutsch</seg></tuv></tu>
</body></tmx>
"""


def test_tmx(tmp_path):
    path = tmp_path / "mem.tmx"
    path.write_text(TMX, encoding="utf-8")
    pairs, recs = read_tmx(path, "en", ["de", "fr"], None, "fail", "t", None)
    assert sorted((p.lang, p.src, p.tgt) for p in pairs) == [("de", "Hello world", "Hallo Welt"),
                                                               ("fr", "Bye", "Salut")]
    de = [r for r in recs if r.lang == "de"][0]
    assert de.read == 2 and de.dropped == {"missing_source_language": 1}
    with pytest.raises(InputError, match="not en and any of"):
        read_tmx(path, "en", ["ga"], None, "fail", "t", None)
    (tmp_path / "broken.tmx").write_text(TMX[:200], encoding="utf-8")
    with pytest.raises(InputError, match="malformed TMX"):
        read_tmx(tmp_path / "broken.tmx", "en", ["de"], None, "fail", "t", None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.sampled_from(["fail", "skip"]), st.booleans())
def test_tsv_reader_random_bytes_only_input_error(tmp_path, data, on_error, tatoeba):
    path = tmp_path / "f.tsv"
    path.write_bytes(data)
    try:
        pairs, recs = read_tsv(path, "en", ["de"], "de", tatoeba, None, on_error, "t", None)
    except InputError:
        return
    assert all("\t" not in p.src and "\n" not in p.tgt for p in pairs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200), st.binary(max_size=200), st.booleans())
def test_moses_and_tmx_random_bytes_only_input_error(tmp_path, a, b, gz):
    (tmp_path / "x.en").write_bytes(gzip.compress(a)[: len(a)] if gz else a)
    (tmp_path / "x.de").write_bytes(b)
    for call in (lambda: read_moses(tmp_path / "x.en", tmp_path / "x.de", "de", None, "fail", "t", None),
                 lambda: read_tmx(tmp_path / "x.de", "en", ["de"], None, "fail", "t", None)):
        try:
            call()
        except InputError:
            pass
