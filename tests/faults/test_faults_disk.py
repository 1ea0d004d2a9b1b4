"""Disk full while writing an artifact: a clear OSError, the old artifact intact, no temp file left.

RLIMIT_FSIZE stands in for a full disk: with SIGXFSZ ignored, a write past the limit fails with
EFBIG exactly where ENOSPC would, without needing root for a tmpfs.
"""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.pipeline.tiny_project import ROOT, env, make_project, sh

LIMIT = 64 * 1024


def _limit_fsize() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from babelflow.io import atomic_dir, write_text
    target, folder = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        write_text(target, "x" * (1 << 20))
    except OSError as exc:
        print("file:", type(exc).__name__, exc.errno)
    try:
        with atomic_dir(folder) as tmp:
            (tmp / "a.txt").write_text("y" * (1 << 20))
    except OSError as exc:
        print("dir:", type(exc).__name__, exc.errno)
""")


def test_disk_full_write_text_and_atomic_dir_keep_old_target(tmp_path):
    target = tmp_path / "artifact.txt"
    target.write_text("old\n")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.txt").write_text("old folder\n")
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(target), str(folder)], cwd=ROOT, text=True,
                         capture_output=True, preexec_fn=_limit_fsize, timeout=60)
    assert res.returncode == 0, res.stderr
    # EFBIG (27): the write itself failed, and the error reached the caller.
    assert "file: OSError 27" in res.stdout and "dir: OSError 27" in res.stdout, res.stdout + res.stderr
    assert target.read_text() == "old\n"
    assert (folder / "a.txt").read_text() == "old folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.txt", "out"]


@pytest.mark.slow
def test_disk_full_collect_stage_fails_and_leaves_no_raw(tmp_path, multi30k_dir):
    root = make_project(tmp_path / "p", multi30k_dir, lines=3000)
    res = subprocess.run([sys.executable, "-m", "tasks.collect"], cwd=root, env=env(), text=True,
                         capture_output=True, preexec_fn=_limit_fsize, timeout=120)
    assert res.returncode != 0, res.stdout + res.stderr
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "babelflow collect: error: no space left writing " in res.stderr, res.stderr[-2000:]
    assert "writing data/raw " in res.stderr, res.stderr[-2000:]  # names the artifact
    data = root / "data"
    assert not (data / "raw").exists()
    leftovers = [p.name for p in data.iterdir()] if data.exists() else []
    assert not [n for n in leftovers if n.startswith(".raw.")], leftovers
    # Without the limit the same stage succeeds: the failure was the "disk", not the input.
    sh([sys.executable, "-m", "tasks.collect"], root, timeout=120)
    assert (data / "raw" / "manifest.json").is_file()
