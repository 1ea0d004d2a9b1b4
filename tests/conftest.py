"""Fixtures shared by every test module."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BABELFLOW_SHARED", ROOT.parent / "shared"))
MULTI30K = SHARED / "corpora" / "multi30k"


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    """The real Multi30k files in ../shared (read in place, never copied into the repo)."""
    if not (MULTI30K / "train.en").is_file():
        pytest.skip(f"Multi30k not found at {MULTI30K} (../shared is absent on this checkout)")
    return MULTI30K


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
