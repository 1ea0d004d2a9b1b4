"""bench/RESULTS.md is shared: each benchmark script owns one `## ` section and rewrites only it."""
from __future__ import annotations


def replace_section(document: str, heading: str, body: str) -> str:
    """`document` with the body under `heading` (up to the next '## ' heading) replaced by `body`;
    every other byte is kept, so the sections other scripts own stay as they are."""
    lines = document.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == heading]
    if len(starts) != 1:
        raise ValueError(f"expected exactly one line {heading!r} in the results file, found {len(starts)}")
    start = starts[0] + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    new_body = "\n" + body.strip("\n") + "\n" + ("\n" if end < len(lines) else "")
    return "".join(lines[:start]) + new_body + "".join(lines[end:])
