"""kill -9 mid-stage and concurrent runs: no half-written output, DVC recovers, same artifacts.

The kills are real: `dvc repro` runs in its own process group and the whole group gets SIGKILL at
a chosen point, as a pre-empted machine would.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.pipeline.tiny_project import env, lock_hashes, make_project, sh

pytestmark = pytest.mark.slow

UPTO = "train"  # collect, clean, tokenize, train: enough for the collect and train kills


def _start(root: Path, *args: str, extra_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(["dvc", "repro", *args], cwd=root, env={**env(), **(extra_env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _kill_at(root: Path, failpoint: str, *args: str, timeout: float = 300) -> None:
    """Run `dvc repro` until a stage reaches `failpoint` (see babelflow/failpoints.py), then SIGKILL
    the whole process group there, as a pre-empted machine would."""
    markers = root / ".failpoints"
    marker = markers / failpoint.replace(":", "_")
    proc = _start(root, *args, extra_env={"BABELFLOW_FAILPOINT": failpoint, "BABELFLOW_FAILPOINT_DIR": str(markers)})
    end = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"run ended before failpoint {failpoint}:\n{proc.stdout.read()[-3000:]}")
            if time.monotonic() > end:
                raise AssertionError(f"failpoint {failpoint} not reached in {timeout}s")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    marker.unlink()


def _repro_after_kill(root: Path, *args: str, extra_env: dict | None = None) -> str:
    # DVC's rwlock names the dead pid; DVC itself detects a dead owner, so nothing is removed by hand.
    res = sh(["dvc", "repro", *args], root, timeout=600, check=False, extra_env=extra_env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, multi30k_dir):
    root = make_project(tmp_path_factory.mktemp("base"), multi30k_dir)
    sh(["dvc", "repro", UPTO], root, timeout=600)
    return lock_hashes(root)


def test_kill9_in_collect_then_train_resumes_to_identical_artifacts(tmp_path, multi30k_dir, baseline):
    root = make_project(tmp_path / "p", multi30k_dir)
    data = root / "data"

    # collect: killed with its output complete in the temporary folder, just before the rename.
    _kill_at(root, "before_rename:raw", UPTO)
    assert any(p.name.startswith(".raw.") for p in data.iterdir()), "the kill did not land mid-write"
    assert not (data / "raw").exists(), "half-written data/raw at the final path"

    # train: killed right after its first checkpoint, before the weights folder is swapped in.
    _kill_at(root, "checkpoint_saved:train", UPTO)
    assert not (data / "train").exists(), "half-written data/train at the final path"
    assert (data / "raw" / "manifest.json").is_file()

    out = _repro_after_kill(root, UPTO, extra_env={"BABELFLOW_LOG": "INFO"})
    m = re.search(r"resumed from \S+ at step (\d+)", out)
    assert m and int(m.group(1)) > 0, out[-3000:]
    assert "up to date" in sh(["dvc", "status", UPTO], root).stdout
    assert not [p.name for p in data.iterdir() if p.name.endswith(".tmp")], "temporary folders left behind"
    got = lock_hashes(root)
    assert got == {stage: baseline[stage] for stage in got}, (got, baseline)


def test_two_repros_at_once_second_refuses_then_completes(tmp_path, multi30k_dir, baseline):
    root = make_project(tmp_path / "p", multi30k_dir)
    first = _start(root, UPTO)
    # Wait until the first run really holds the repo (a stage is running), then start the second.
    deadline = time.monotonic() + 120
    while not (root / "data").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.01)
    second = sh(["dvc", "repro", UPTO], root, check=False, timeout=600)
    first_out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, first_out[-3000:]
    text = second.stdout + second.stderr
    # Either DVC refused (the repo lock) or it waited and found everything done; never both running.
    if second.returncode != 0:
        assert "Unable to acquire lock" in text or "is busy" in text, text[-3000:]
    else:
        assert "Running stage" not in text or "up to date" in text, text[-3000:]
    out = _repro_after_kill(root, UPTO)
    assert "up to date" in sh(["dvc", "status", UPTO], root).stdout, out
    got = lock_hashes(root)
    assert got == {stage: baseline[stage] for stage in got}
