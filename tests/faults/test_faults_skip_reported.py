"""`on_error: skip` skips, never silently: a WARNING per skipped input (file and reason), the counts in
the stage's metrics, and the model card lists them (or counts them and points at the manifest)."""
from __future__ import annotations

import gzip
import logging

from babelflow.config import parse_params
from babelflow.io import read_json
from babelflow.release import render_model_card
from tasks._common import Paths

from tests.corpus.mo_writer import make_shared_mo

EN = [f"The sentence number {i} is here." for i in range(40)]
DE = [f"Der Satz Nummer {i} ist hier." for i in range(40)]


def _warnings(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == name]


def test_collect_skips_are_logged_counted_and_in_the_manifest(tmp_path, caplog):
    from tasks.collect import run

    good = tmp_path / "good"
    good.mkdir()
    (good / "train.en").write_text("".join(s + "\n" for s in EN), encoding="utf-8")
    (good / "train.de").write_bytes(b"".join((b"Kaputt \xff\n" if i == 3 else s.encode() + b"\n")
                                             for i, s in enumerate(DE)))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train.tsv").write_bytes(gzip.compress(b"Hello\tHallo\n" * 500)[:60])  # truncated gzip
    bomb = tmp_path / "cat" / "de" / "LC_MESSAGES" / "bomb.mo"
    bomb.parent.mkdir(parents=True)
    bomb.write_bytes(make_shared_mo(2000, b"x" * 20_000))
    params = parse_params({
        "languages": {"source": "en", "targets": ["de"], "heldout": []}, "adapt": {"enabled": False},
        "collect": {"on_error": "skip", "split": {"dev": 0.1, "test": 0.1}, "sources": [
            {"type": "aligned", "name": "good", "path": str(good)},
            {"type": "aligned", "name": "broken", "format": "tsv", "lang": "de", "path": str(broken),
             "splits": {"train": "train.tsv"}},
            {"type": "gettext", "name": "cat", "search": [], "paths": [str(tmp_path / "cat")]}]},
    })
    root = tmp_path / "proj"
    with caplog.at_level(logging.WARNING):
        metrics = run(params, Paths(root))
    warned = _warnings(caplog, "babelflow.collect")
    assert len(warned) == 3, warned
    assert any("train.de" in w and "invalid_utf8" in w and "1 line" in w for w in warned), warned
    assert any("train.tsv" in w and "gzip" in w for w in warned), warned
    assert any("bomb.mo" in w and "entry " in w for w in warned), warned
    skipped = read_json(root / "data" / "raw" / "manifest.json")["skipped"]
    assert [(s["path"].rsplit("/", 1)[1], s["whole"]) for s in skipped] == [
        ("train.tsv", True), ("bomb.mo", True), ("train.de", False)]  # broken/, cat/, good/
    assert all(s["reason"] for s in skipped) and skipped[2]["lines"] == 1
    # Lines lost: the bad one, and those a whole skipped file had yielded before its error.
    assert metrics["skipped_inputs"] == 2 and metrics["skipped_lines"] == sum(s["lines"] for s in skipped)
    assert read_json(root / "data" / "metrics" / "collect.json") == metrics


def _raw(root, bad_line: bytes) -> None:
    d = root / "data" / "raw" / "en-de"
    d.mkdir(parents=True)
    for split, n in (("dev", 5), ("test", 5)):
        (d / f"{split}.src").write_text("".join(s + "\n" for s in EN[:n]), encoding="utf-8")
        (d / f"{split}.tgt").write_text("".join(s + "\n" for s in DE[:n]), encoding="utf-8")
    (d / "train.src").write_bytes(b"".join(s.encode() + b"\n" for s in EN[5:]) + bad_line + b"\n")
    (d / "train.tgt").write_bytes(b"".join(s.encode() + b"\n" for s in DE[5:]) + b"Kaputt\n")


def test_clean_skips_are_logged_and_counted(tmp_path, caplog):
    from tasks.clean import run

    root = tmp_path / "proj"
    _raw(root, b"Broken \xff\xfe bytes")
    params = parse_params({
        "languages": {"source": "en", "targets": ["de"], "heldout": []}, "adapt": {"enabled": False},
        "collect": {"sources": [{"type": "gettext"}]},
        "clean": {"langid": False, "workers": 1, "on_error": "skip"},
    })
    with caplog.at_level(logging.WARNING):
        metrics = run(params, Paths(root))
    warned = _warnings(caplog, "babelflow.clean")
    assert len(warned) == 1 and "train.src:36" in warned[0] and "invalid UTF-8" in warned[0], warned
    assert metrics["skipped_lines"] == 1
    assert read_json(root / "data" / "metrics" / "clean.json")["skipped_lines"] == 1


def test_model_card_lists_skipped_inputs_or_counts_them():
    manifest = {"inputs": [], "skipped": [
        {"path": "/c/de/LC_MESSAGES/bomb.mo", "lang": "de", "lines": 0, "whole": True,
         "reason": "/c/de/LC_MESSAGES/bomb.mo: entry 6: refused as a decompression bomb"},
        {"path": "/g/train.de", "lang": "de", "lines": 1, "whole": False, "reason": "invalid_utf8 1"}]}
    clean = {"pairs": {"en-de": {"train": {"removed": {"invalid_input": 2}, "examples": {"invalid_input": [
        {"file": "data/raw/en-de/train.src", "line": 36, "error": "invalid UTF-8 (invalid start byte at byte 7)"}]}},
        "dev": {"removed": {"invalid_input": 0}}}}}
    params = {"release": {"name": "m", "version": "0.1.0"}}
    card = render_model_card(params, None, None, False, manifest, "ab" * 32, None, None, clean_report=clean)
    section = card.split("## Skipped inputs", 1)[1].split("\n## ", 1)[0]
    assert "/c/de/LC_MESSAGES/bomb.mo (de): skipped whole:" in section and "decompression bomb" in section
    assert "/g/train.de (de): 1 line(s) skipped: invalid_utf8 1" in section
    assert "en-de train: 2 line(s)" in section and "data/raw/en-de/train.src:36" in section

    many = {"inputs": [], "skipped": [{"path": f"/x/{i:02d}.mo", "lang": "de", "lines": 0, "whole": True,
                                       "reason": "bad"} for i in range(40)]}
    card = render_model_card(params, None, None, False, many, "ab" * 32, None, None)
    section = card.split("## Skipped inputs", 1)[1].split("\n## ", 1)[0]
    assert "/x/00.mo" in section and "/x/39.mo" not in section
    assert "40 inputs" in section and "`skipped` in data/raw/manifest.json" in section

    card = render_model_card(params, None, None, False, {"inputs": []}, "ab" * 32, None, None)
    assert "No input was skipped" in card
