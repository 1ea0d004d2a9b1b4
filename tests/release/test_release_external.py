"""External test sets in the evaluate stage: aligned files are scored, unreachable sacrebleu sets fail clearly."""
from __future__ import annotations

import shutil
import sys

import pytest

from babelflow.config import parse_params
from babelflow.errors import BabelflowError, InputError, SourceUnavailableError
from babelflow.io import read_json
from tasks._common import Paths
from tasks.evaluate import load_aligned, load_sacrebleu_set, run


def test_external_aligned_set_is_scored(tiny_project, tmp_path):
    root, params = tiny_project
    for sub in ("tokenizer", "train", "clean"):
        shutil.copytree(root / "data" / sub, tmp_path / "data" / sub)
    (tmp_path / "ext.en").write_text("a cat\nthe snow\nthe girl\n", encoding="utf-8")
    (tmp_path / "ext.de").write_text("eine katze\nder schnee\ndas mädchen\n", encoding="utf-8")
    raw = params.model_dump(mode="json")
    raw["evaluate"]["external"] = [{"name": "mini", "tgt": "de", "src_path": str(tmp_path / "ext.en"),
                                    "ref_path": str(tmp_path / "ext.de")}]
    raw["evaluate"]["max_sentences"] = 2
    summary = run(parse_params(raw), Paths(tmp_path))
    assert summary["external"]["mini"]["n"] == 2
    metrics = read_json(tmp_path / "data" / "eval" / "metrics.json")
    assert metrics["external"]["mini"]["tgt"] == "de"
    assert metrics["en-de"]["n"] == 2  # max_sentences applies to the test split too
    assert len((tmp_path / "data" / "eval" / "external.mini.hyp").read_text().splitlines()) == 2
    assert "## External test sets" in (tmp_path / "data" / "eval" / "report.md").read_text()


def test_misaligned_external_files(tmp_path):
    (tmp_path / "a").write_text("x\ny\n")
    (tmp_path / "b").write_text("x\n")
    with pytest.raises(InputError, match="not aligned"):
        load_aligned(tmp_path / "a", tmp_path / "b", 0)
    with pytest.raises(InputError, match="file not found"):
        load_aligned(tmp_path / "a", tmp_path / "missing", 0)


def test_sacrebleu_set_offline_or_unknown(monkeypatch):
    import sacrebleu.utils

    with pytest.raises(BabelflowError, match="not a sacrebleu test set"):
        load_sacrebleu_set("no-such-set", "en-de", 0)
    # sacrebleu ends the process with sys.exit when a download fails; we turn that into our error.
    monkeypatch.setattr(sacrebleu.utils, "get_source_file", lambda *a: sys.exit(1))
    with pytest.raises(SourceUnavailableError, match="wmt14.*offline"):
        load_sacrebleu_set("wmt14", "en-de", 0)
