"""Deterministic train/dev/test assignment by a hash of the (normalised) source sentence.

Every target language uses the same assignment, so an English sentence in one language's test set
is never in any language's training set. The key ignores case, accelerator marks and punctuation:
"_Open", "&Open" and "Open" are the same sentence to a model once cleaning strips accelerators, and
must not straddle splits.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")

_ACCELERATOR_MARKS = re.compile(r"[&_~]")
_NON_WORD = re.compile(r"\W+", re.UNICODE)


def split_key(source: str) -> str:
    """The identity of a source sentence for splitting and cross-split leakage checks."""
    text = unicodedata.normalize("NFKC", source).casefold()
    # Marks are deleted, not spaced: "O&pen" and "Open" must share a key.
    text = _ACCELERATOR_MARKS.sub("", text)
    return _NON_WORD.sub(" ", text).strip()


def assign_split(source: str, dev: float, test: float, salt: str = "babelflow") -> Split:
    """Map a source sentence to a split; `dev` and `test` are fractions of distinct keys."""
    digest = hashlib.sha256(f"{salt}\x1f{split_key(source)}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test:
        return "test"
    if u < test + dev:
        return "dev"
    return "train"
