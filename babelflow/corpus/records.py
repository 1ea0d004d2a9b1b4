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
    first_skip: str | None = None  # file:line of the first line `on_error: skip` dropped, for the warning

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


@dataclass(slots=True)  # one per collected pair: no per-instance __dict__
class Pair:
    lang: str
    src: str
    tgt: str
    split: str | None  # None: the hash split decides
    record: InputRecord


class PairList(list):
    """What a reader fills when no `PairSink` is given (tests, small inputs): a list with the sink's
    two extra calls."""

    def emitted(self, rec: InputRecord) -> int:
        return sum(1 for p in self if p.record is rec)

    def discard(self, recs) -> None:
        ids = {id(r) for r in recs}
        self[:] = [p for p in self if id(p.record) not in ids]


# Drop reasons that only `on_error: skip` produces: with `fail` each of them stops the run instead.
SKIP_REASONS = ("invalid_utf8", "invalid_encoding", "bad_field_count", "mismatched_line_count", "file_error",
                "too_long")


def skipped(records: list[InputRecord]) -> list[dict[str, Any]]:
    """The input files `on_error: skip` skipped, whole (an error) or in part (lines), sorted by path.
    One entry per file: a TSV or TMX file has a record per language."""
    by_path: dict[str, dict[str, Any]] = {}
    for r in records:
        lines = Counter({k: v for k, v in r.dropped.items() if k in SKIP_REASONS and v})
        if "error" not in r.extra and not lines:
            continue
        s = by_path.setdefault(r.path, {"path": r.path, "langs": set(), "error": None, "dropped": Counter(),
                                        "first": None})
        s["langs"].add(r.lang)
        s["error"] = s["error"] or r.extra.get("error")
        s["dropped"] += lines
        s["first"] = s["first"] or r.first_skip
    return [{"path": p, "lang": ",".join(sorted(s["langs"] - {"*"})) or "*", "whole": s["error"] is not None,
             "lines": sum(s["dropped"].values()),
             "reason": s["error"] or ", ".join(f"{k} {v}" for k, v in sorted(s["dropped"].items()))
             + (f"; first at {s['first']}" if s["first"] else "")}
            for p, s in sorted(by_path.items())]


def flatten(text: str, record: InputRecord) -> str:
    """Make a sentence safe for a line-aligned file; counts how often that changed something."""
    if _BREAKS.search(text):
        record.extra["line_breaks_replaced"] = record.extra.get("line_breaks_replaced", 0) + 1
        text = _BREAKS.sub(" ", text)
    return text.strip()
