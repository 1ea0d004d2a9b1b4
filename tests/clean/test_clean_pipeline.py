"""The streaming cleaner: report sums, determinism across workers, dedup/leakage, bad input, the stage."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from babelflow.clean import clean_corpus, to_markdown
from babelflow.config import CleanConfig, parse_params
from babelflow.errors import InputError

PAIRS = ("de", "fr")


def _write(d: Path, split: str, src: list[str], tgt: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
    (d / f"{split}.tgt").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")


@pytest.fixture
def raw(tmp_path, multi30k_dir):
    """A raw folder from real Multi30k lines, seeded with pairs each filter must catch."""
    root = tmp_path / "raw"
    read = lambda name, n: (multi30k_dir / name).read_text(encoding="utf-8").splitlines()[:n]  # noqa: E731
    en = read("train.en", 300)
    for tgt in PAIRS:
        tr = read(f"train.{tgt}", 300)
        src, dst = list(en), list(tr)
        src += [en[0], en[1].upper(), "<b>_Open</b> the file", en[5], "", "Save %s now", en[7] + " 42"]
        dst += [tr[0], tr[1].upper(), "<b>_Open</b> the file", tr[6], "...", "Speichern jetzt", tr[7]]
        dev_en, dev_tr = read("val.en", 20), read(f"val.{tgt}", 20)
        # A train pair whose source equals a dev source once markup is stripped: leakage.
        src.append(f"<i>{dev_en[3]}</i>")
        dst.append(dev_tr[3])
        _write(root / f"en-{tgt}", "train", src, dst)
        _write(root / f"en-{tgt}", "dev", dev_en, dev_tr)
        _write(root / f"en-{tgt}", "test", read("test_2016_flickr.en", 20), read(f"test_2016_flickr.{tgt}", 20))
    return root


def _clean(raw: Path, out: Path, **kw) -> dict:
    cfg = CleanConfig(**{"langid": False, "chunk_lines": 37, **kw})
    out.mkdir(parents=True)
    return clean_corpus(raw, out, cfg, "en", list(PAIRS))


def test_report_sums_and_reasons(raw, tmp_path):
    rep = _clean(raw, tmp_path / "out", workers=1)
    for pair, splits in rep["pairs"].items():
        for split, r in splits.items():
            assert r["in"] == r["out"] + sum(r["removed"].values()), (pair, split)
            out_lines = (tmp_path / "out" / pair / f"{split}.tgt").read_text(encoding="utf-8").splitlines()
            assert len(out_lines) == r["out"]
        train = splits["train"]["removed"]
        assert train["duplicate"] >= 1 and train["near_duplicate"] >= 1 and train["leakage"] == 1
        assert train["copy"] == 1 and train["empty"] == 1 and train["placeholders"] == 1
        assert train["numbers"] >= 1
        ex = splits["train"]["examples"]["placeholders"][0]
        assert ex["src"] == "Save %s now" and ex["line"] == 306
    tot = rep["totals"]
    assert tot["in"] == tot["out"] + sum(tot["removed"].values())
    md = to_markdown(rep)
    assert "| en-de | train |" in md and "placeholders" in md


def test_byte_identical_across_workers(raw, tmp_path):
    a = _clean(raw, tmp_path / "w1", workers=1)
    b = _clean(raw, tmp_path / "w2", workers=2)
    assert a == b
    for pair in ("en-de", "en-fr"):
        for name in ("train.src", "train.tgt", "dev.tgt", "test.src"):
            assert (tmp_path / "w1" / pair / name).read_bytes() == (tmp_path / "w2" / pair / name).read_bytes()


def test_byte_identical_across_chunk_sizes_with_langid(raw, tmp_path):
    # Language id runs once per chunk on whatever survived in it: neither the chunking nor the
    # worker count may change a decision, an output byte or the report.
    a = _clean(raw, tmp_path / "small", workers=2, langid=True, langid_source=True, langid_min_chars=0)
    b = _clean(raw, tmp_path / "whole", workers=1, langid=True, langid_source=True, langid_min_chars=0,
               chunk_lines=100_000)
    assert a == b
    assert a["langid"]["candidates"] == ["de", "en", "fr"]
    assert sum(r["removed"]["langid"] for p in a["pairs"].values() for r in p.values()) > 0
    for pair in ("en-de", "en-fr"):
        for split in ("train", "dev", "test"):
            for side in ("src", "tgt"):
                name = f"{split}.{side}"
                assert (tmp_path / "small" / pair / name).read_bytes() == (tmp_path / "whole" / pair / name).read_bytes()


def test_placeholders_and_text_kept_literal(tmp_path):
    root = tmp_path / "raw"
    src = ["Delete %s and {0} files?", "Print &Document"]
    tgt = ["%s und {0} Dateien löschen?", "&Dokument drucken"]
    for split in ("train", "dev", "test"):
        _write(root / "en-de", split, src if split == "train" else [], tgt if split == "train" else [])
    out = tmp_path / "out"
    out.mkdir()
    clean_corpus(root, out, CleanConfig(langid=False, workers=1), "en", ["de"])
    assert (out / "en-de" / "train.src").read_text(encoding="utf-8") == "Delete %s and {0} files?\nPrint Document\n"
    assert (out / "en-de" / "train.tgt").read_text(encoding="utf-8") == "%s und {0} Dateien löschen?\nDokument drucken\n"


def _bad_raw(tmp_path: Path, payload: bytes) -> Path:
    root = tmp_path / "raw"
    _write(root / "en-de", "dev", [], [])
    _write(root / "en-de", "test", [], [])
    d = root / "en-de"
    (d / "train.src").write_bytes(b"A dog runs in the park.\n" + payload + b"\nTwo men play chess outside.\n")
    (d / "train.tgt").write_bytes("Ein Hund läuft im Park.\nKaputt.\nZwei Männer spielen draußen Schach.\n".encode())
    return root


@pytest.mark.parametrize("payload,what", [(b"Bad \xff\xfe bytes", "invalid UTF-8"),
                                          (b"x" * (1 << 20 + 1), "longer than")])
def test_bad_line_skip_or_fail(tmp_path, payload, what):
    root = _bad_raw(tmp_path, payload)
    out = tmp_path / "out"
    out.mkdir()
    rep = clean_corpus(root, out, CleanConfig(langid=False, workers=1, on_error="skip"), "en", ["de"])
    train = rep["pairs"]["en-de"]["train"]
    assert train["removed"]["invalid_input"] == 1 and train["in"] == 3 and train["out"] == 2
    ex = train["examples"]["invalid_input"][0]
    assert ex["line"] == 2 and ex["file"].endswith("train.src") and what in ex["error"]
    assert (out / "en-de" / "train.tgt").read_text(encoding="utf-8").splitlines()[1].startswith("Zwei")
    out2 = tmp_path / "out2"
    out2.mkdir()
    with pytest.raises(InputError) as err:
        clean_corpus(root, out2, CleanConfig(langid=False, workers=1, on_error="fail"), "en", ["de"])
    assert err.value.line == 2 and err.value.path.endswith("train.src") and what in str(err.value)


def test_misaligned_and_missing_files(tmp_path):
    root = tmp_path / "raw"
    _write(root / "en-de", "train", ["a", "b"], ["a"])
    _write(root / "en-de", "dev", [], [])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="test.src"):
        clean_corpus(root, out, CleanConfig(langid=False, workers=1), "en", ["de"])
    _write(root / "en-de", "test", [], [])
    with pytest.raises(InputError, match="line counts differ"):
        clean_corpus(root, out, CleanConfig(langid=False, workers=1), "en", ["de"])


def test_stage_run_writes_outputs(raw, tmp_path):
    from tasks._common import Paths
    from tasks.clean import run

    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    raw.rename(root / "data" / "raw")
    params = parse_params({
        "languages": {"source": "en", "targets": ["de"], "heldout": ["fr"]},
        "collect": {"sources": [{"type": "gettext"}]},
        "clean": {"langid": True, "workers": 1},
    })
    metrics = run(params, Paths(root))
    report = json.loads((root / "data" / "clean" / "report.json").read_text(encoding="utf-8"))
    assert set(report["pairs"]) == {"en-de", "en-fr"}
    assert metrics["total_in"] == metrics["total_out"] + sum(metrics["removed"].values())
    assert json.loads((root / "data" / "metrics" / "clean.json").read_text())["pairs"]["en-fr"]["train"]["in"] == 308
    assert (root / "data" / "clean" / "en-fr" / "train.src").is_file()


def _dedup(seen, chunks):
    """clean's dedup loop: per chunk, prepare, then each row's digest sliced from its 24-byte key."""
    decisions = []
    for chunk in chunks:
        seen.prepare([k[8:16] for k in chunk])
        for k in chunk:
            digest = k[8:16]
            decisions.append(digest in seen)
            if not decisions[-1]:
                seen.add(digest)
    return decisions


def test_dedup_digests_match_a_set_across_merges():
    from babelflow.digests import DigestSet

    rng = random.Random(3)
    pool = [rng.randbytes(24) for _ in range(700)]  # many repeats, within and across chunks
    chunks = [[rng.choice(pool) for _ in range(rng.randint(0, 90))] for _ in range(60)]
    reference = []
    plain: set[bytes] = set()
    for k in (k for chunk in chunks for k in chunk):
        reference.append(k[8:16] in plain)
        plain.add(k[8:16])
    seen = DigestSet(flush=50)
    assert _dedup(seen, chunks) == reference and len(seen) == len(plain) and len(seen.old) > 0


def test_dedup_digests_cost_about_8_bytes_each():
    # clean keeps a digest of every kept pair twice (exact, near duplicates): in Python sets that was
    # ~90 bytes a digest, 1.8 GB at 10 M pairs; DigestSet keeps them in a sorted uint64 array.
    import tracemalloc

    from babelflow.digests import DigestSet

    rng = random.Random(1)
    chunks = [[rng.randbytes(24) for _ in range(2000)] for _ in range(200)]  # 400k distinct keys
    tracemalloc.start()
    try:
        _dedup(DigestSet(flush=8192), chunks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / 400_000 < 30, f"{peak / 400_000:.1f} bytes a digest"
