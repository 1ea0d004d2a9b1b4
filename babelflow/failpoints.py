"""Named points where a fault test can stop a real run: deterministic kill points.

A kill test that polls the file system for the moment to strike races the stage it kills: on a
loaded machine a small stage finishes between two polls. Instead the test names a point in
`BABELFLOW_FAILPOINT` (comma-separated); the process that reaches it writes a marker file into
`BABELFLOW_FAILPOINT_DIR` and waits there to be killed. Unset (always, outside tests), `reach` is
one dictionary look-up.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

_WAIT_S = 600  # a test that forgot to kill must not hang CI forever


def reach(name: str) -> None:
    wanted = os.environ.get("BABELFLOW_FAILPOINT")
    if not wanted or name not in wanted.split(","):
        return
    marker_dir = Path(os.environ.get("BABELFLOW_FAILPOINT_DIR", "."))
    marker_dir.mkdir(parents=True, exist_ok=True)
    (marker_dir / name.replace("/", "_").replace(":", "_")).write_text(f"{os.getpid()}\n")
    time.sleep(_WAIT_S)
    raise RuntimeError(f"failpoint {name!r} reached and nobody killed the process within {_WAIT_S}s")
