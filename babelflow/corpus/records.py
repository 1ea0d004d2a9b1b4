"""What every reader hands back: candidate pairs plus a provenance record per input file.

Counts are kept per input so the manifest can prove read = kept + sum(dropped reasons): a line that
is not in the output is always attributed to a reason, never silently lost.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Raw output files are line-aligned: any line-breaking or tab character inside a sentence would
# shift every following line of one side, so they are replaced by a space (and counted).
_BREAKS = re.compile(r"[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+")


@dataclass
class InputRecord:
    source: str
    type: str
    path: str
    lang: str
    sha256: str | None = None
    licence: str | None = None
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def to_json(self) -> dict[str, Any]:
        out = {
            "source": self.source, "type": self.type, "path": self.path, "lang": self.lang,
            "sha256": self.sha256, "licence": self.licence, "read": self.read, "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
        }
        out.update(self.extra)
        return out


@dataclass
class Pair:
    lang: str
    src: str
    tgt: str
    split: str | None  # None: the hash split decides
    record: InputRecord


def flatten(text: str, record: InputRecord) -> str:
    """Make a sentence safe for a line-aligned file; counts how often that changed something."""
    if _BREAKS.search(text):
        record.extra["line_breaks_replaced"] = record.extra.get("line_breaks_replaced", 0) + 1
        text = _BREAKS.sub(" ", text)
    return text.strip()
