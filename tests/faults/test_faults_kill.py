"""kill -9 in every stage and concurrent runs: no half-written output, DVC recovers, same artifacts.

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

from tests.pipeline.tiny_project import env, lock_hashes, make_project, ran_stages, sh, stale_stages

pytestmark = pytest.mark.slow

UPTO = "train"  # collect, clean, tokenize, train: enough for the concurrency test

# Where each stage is killed: its output complete in the temporary folder but not yet renamed into
# place, or (train, meta) right after the first checkpoint. The folder that must not exist after.
KILLS = [
    ("collect", "before_rename:raw", "raw"),
    ("clean", "before_rename:clean", "clean"),
    ("tokenize", "before_rename:tokenizer", "tokenizer"),
    ("encode", "before_rename:encoded", "encoded"),
    ("train", "checkpoint_saved:train", "train"),
    ("meta", "checkpoint_saved:meta", "meta"),
    ("adapt", "before_rename:adapt", "adapt"),
    ("evaluate", "before_rename:eval", "eval"),
    ("release", "before_rename:release", "release"),
]


def _kill_at(root: Path, failpoint: str, *args: str, timeout: float = 300) -> str:
    """Run `dvc repro` until a stage reaches `failpoint` (see babelflow/failpoints.py), then SIGKILL
    the whole process group there, as a pre-empted machine would. Returns the run's output."""
    markers = root / ".failpoints"
    marker = markers / failpoint.replace(":", "_")
    log_path = root / ".failpoints.log"
    # Output goes to a file: a pipe nobody reads fills up and blocks the run before its failpoint.
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["dvc", "repro", *args], cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**env(), "BABELFLOW_LOG": "INFO", "BABELFLOW_FAILPOINT": failpoint,
                 "BABELFLOW_FAILPOINT_DIR": str(markers)})
        end = time.monotonic() + timeout
        try:
            while not marker.exists():
                if proc.poll() is not None:
                    raise AssertionError(f"run ended before failpoint {failpoint}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > end:
                    raise AssertionError(f"failpoint {failpoint} not reached in {timeout}s")
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    marker.unlink()
    return log_path.read_text()


def _repro_after_kill(root: Path, *args: str, extra_env: dict | None = None) -> str:
    # DVC's rwlock names the dead pid; DVC itself detects a dead owner, so nothing is removed by hand.
    res = sh(["dvc", "repro", *args], root, timeout=600, check=False, extra_env=extra_env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, multi30k_dir):
    root = make_project(tmp_path_factory.mktemp("base"), multi30k_dir)
    sh(["dvc", "repro"], root, timeout=900)
    return lock_hashes(root)


def test_kill9_in_every_stage_then_repro_resumes_to_identical_artifacts(tmp_path, multi30k_dir, baseline):
    root = make_project(tmp_path / "p", multi30k_dir)
    data = root / "data"
    outputs = []
    for stage, failpoint, out in KILLS:
        outputs.append(_kill_at(root, failpoint))
        assert any(p.name.startswith(f".{out}.") for p in data.iterdir()) or stage in ("train", "meta"), stage
        assert not (data / out).exists(), f"{stage}: half-written data/{out} at the final path"
        # Every earlier stage finished and its artifacts match what DVC recorded.
        if stage != "collect":
            previous = KILLS[KILLS.index((stage, failpoint, out)) - 1][0]
            assert "up to date" in sh(["dvc", "status", previous], root).stdout, stage

    # The run killed in meta had resumed train, the one killed in adapt had resumed meta.
    after_train_kill, after_meta_kill = outputs[5], outputs[6]
    m = re.search(r"resumed from \S+ at step (\d+)", after_train_kill)
    assert m and int(m.group(1)) > 0, after_train_kill[-3000:]
    m = re.search(r"meta: resumed from \S+ at meta step (\d+)", after_meta_kill)
    assert m and int(m.group(1)) > 0, after_meta_kill[-3000:]

    out = _repro_after_kill(root)
    assert stale_stages(root) == {}, out[-3000:]
    assert not [str(p) for p in data.rglob("*.tmp")], "temporary files left behind"
    assert lock_hashes(root) == baseline


def test_two_repros_at_once_second_refuses_then_completes(tmp_path, multi30k_dir, baseline):
    root = make_project(tmp_path / "p", multi30k_dir)
    first = subprocess.Popen(["dvc", "repro", UPTO], cwd=root, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
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
        assert ran_stages(text) <= {"inputs"}, text[-3000:]
    out = _repro_after_kill(root, UPTO)
    assert "up to date" in sh(["dvc", "status", UPTO], root).stdout, out
    got = lock_hashes(root)
    assert got == {stage: baseline[stage] for stage in got}
