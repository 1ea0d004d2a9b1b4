"""A clean worker killed mid-chunk (as by the OOM killer: SIGKILL) fails the stage in seconds.

A pool that waits forever for the dead worker's result would hang the stage, holding DVC's lock.
The worker is real: `python -m tasks.clean` with a spawned pool; the test kills the pool process
that reached the `clean_worker` failpoint (babelflow/failpoints.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _project(root: Path) -> None:
    for split, n in (("train", 40), ("dev", 12), ("test", 12)):
        d = root / "data" / "raw" / "en-de"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{split}.src").write_text("".join(f"The {split} sentence number {i}.\n" for i in range(n)))
        (d / f"{split}.tgt").write_text("".join(f"Der {split} Satz Nummer {i}.\n" for i in range(n)))
    (root / "params.yaml").write_text(yaml.safe_dump({
        "languages": {"source": "en", "targets": ["de"], "heldout": []}, "adapt": {"enabled": False},
        "collect": {"sources": [{"type": "gettext"}]},
        "clean": {"langid": False, "workers": 2, "chunk_lines": 3},
    }))


def test_killed_clean_worker_fails_the_stage_fast_with_a_clear_error(tmp_path):
    root = tmp_path / "p"
    _project(root)
    markers = tmp_path / "fp"
    env = {**os.environ, "BABELFLOW_FAILPOINT": "clean_worker", "BABELFLOW_FAILPOINT_DIR": str(markers),
           "BABELFLOW_LOG": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "tasks.clean", "--params", str(root / "params.yaml"),
                             "--root", str(root)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        end = time.monotonic() + 120
        marker = markers / "clean_worker"
        while not (marker.exists() and marker.read_text().endswith("\n")):  # the pid, written whole
            assert proc.poll() is None, f"stage ended before a worker reached the failpoint: {proc.stderr.read()}"
            assert time.monotonic() < end, "no worker reached the failpoint"
            time.sleep(0.05)
        os.kill(int(marker.read_text()), signal.SIGKILL)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("the clean stage hangs after its worker was killed") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 2, err
    assert last.startswith("babelflow clean: error:") and "worker" in last and "dev.src" in last, last
    assert not (root / "data" / "clean").exists()
    assert not list((root / "data").glob(".clean.*"))
