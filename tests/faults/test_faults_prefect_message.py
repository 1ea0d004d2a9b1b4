"""A stage that fails under `make flow` shows its message once (issue 17): the stage's own one-line error
is logged once, the failure names the stage, and no Python traceback follows (Prefect used to repeat
the stage's last output lines in every state it reported, with three tracebacks)."""
from __future__ import annotations

import subprocess

import pytest

from tests.pipeline.tiny_project import env, make_project

pytestmark = pytest.mark.slow


def test_failed_stage_message_appears_once_without_traceback(tmp_path, multi30k_dir):
    # No Prefect retries of collect here: each retry is a new attempt with its own message.
    root = make_project(tmp_path / "p", multi30k_dir, lines=50, overrides={"schedule.network_retries": 0})
    (root / "corpus" / "train.de").write_text("only\nthree\nlines\n", encoding="utf-8")
    # As `make flow` runs it: Prefect's temporary server (no PREFECT_API_URL at all: an empty one makes
    # Prefect's event client log tracebacks of its own).
    run_env = {k: v for k, v in env().items() if k != "PREFECT_API_URL"}
    run_env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_LOGGING_LEVEL="INFO")
    res = subprocess.run(["python", "-m", "flows.pipeline", "."], cwd=root, env=run_env, text=True,
                         capture_output=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-4000:]
    assert out.count("has 3 lines but") == 1, out[-6000:]  # the stage's error, once
    assert "stage 'collect' failed (exit 2)" in out, out[-4000:]
    assert "Traceback" not in out and "NoneType: None" not in out, out[-6000:]
    assert "Running stage 'clean'" not in out, out[-4000:]  # nothing after the failed stage
