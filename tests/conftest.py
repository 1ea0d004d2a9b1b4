"""Fixtures shared by every test module."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BABELFLOW_SHARED", ROOT.parent / "shared"))
MULTI30K = SHARED / "corpora" / "multi30k"


HAVE_MULTI30K = (MULTI30K / "train.en").is_file()


def pytest_collection_modifyitems(config, items):
    """Every test that needs Multi30k, directly or through another fixture, is skipped with the reason
    when ../shared is absent; the condition is stated once, here."""
    needs_multi30k = pytest.mark.skipif(
        not HAVE_MULTI30K, reason=f"Multi30k not found at {MULTI30K} (../shared is absent on this checkout)")
    for item in items:
        if "multi30k_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(needs_multi30k)


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """The real Multi30k files in ../shared (read in place, never copied into the repo)."""
    assert HAVE_MULTI30K, f"Multi30k not found at {MULTI30K}"  # tests needing it are skipped above
    return MULTI30K


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
