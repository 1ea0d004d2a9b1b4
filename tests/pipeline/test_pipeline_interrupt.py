"""Ctrl-C while a flow runs a stage (`babelflow run`): the stage's command is interrupted too, not left
running on its own after the flow is gone. Real DVC, a stage that waits for its interruption."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.pipeline.tiny_project import ROOT, env, sh

STAGE = textwrap.dedent("""
    import os, pathlib, time
    pathlib.Path("started").write_text(str(os.getpid()))
    try:
        time.sleep(300)
    except KeyboardInterrupt:
        pathlib.Path("interrupted").write_text("yes")
        raise
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_during_a_stage_stops_the_stage(tmp_path):
    (tmp_path / "stage.py").write_text(STAGE, encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text(f"stages:\n  wait:\n    cmd: {sys.executable} stage.py\n    outs: [out]\n")
    sh(["git", "init", "-q"], tmp_path)
    sh(["dvc", "init", "-q"], tmp_path)
    runner = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); from flows.pipeline import run_stage; "
                               f"run_stage('wait', {str(tmp_path)!r})"],
        cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert runner.poll() is None and time.monotonic() < deadline, runner.stderr.read()
            time.sleep(0.1)
        stage_pid = int((tmp_path / "started").read_text())
        runner.send_signal(signal.SIGINT)  # only the flow's process, as a supervisor's kill -INT would
        runner.wait(90)
    finally:
        if runner.poll() is None:
            runner.kill()
    deadline = time.monotonic() + 30
    while _alive(stage_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    still_running = _alive(stage_pid)
    if still_running:
        os.kill(stage_pid, signal.SIGKILL)
    assert not still_running and (tmp_path / "interrupted").exists()
