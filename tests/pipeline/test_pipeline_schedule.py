"""A real Prefect server on loopback, the pipeline served as a cron deployment, one triggered run."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest

from tests.pipeline.tiny_project import env, make_project, sh

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_scheduled_deployment_runs_the_pipeline(tmp_path, multi30k_dir):
    root = make_project(tmp_path / "proj", multi30k_dir)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    extra = {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
             "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=tmp_path, env={**env(), **extra}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    served = None
    try:
        _wait(lambda: _healthy(api), 120, "prefect server")
        served = subprocess.Popen(["python", "-m", "flows.schedule", "--cron", "0 3 * * *", "--root", str(root)],
                                  cwd=root, env={**env(), **extra}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        _wait(lambda: sh(["prefect", "deployment", "inspect", "babelflow-pipeline/babelflow-nightly"], root,
                         check=False, extra_env=extra).returncode == 0, 120, "deployment registration")
        inspect = sh(["prefect", "deployment", "inspect", "babelflow-pipeline/babelflow-nightly"], root,
                     extra_env=extra).stdout
        assert "0 3 * * *" in inspect
        run = sh(["prefect", "deployment", "run", "babelflow-pipeline/babelflow-nightly",
                  "--param", 'stages=["collect"]', "--watch"], root, extra_env=extra, timeout=300)
        assert "Completed" in run.stdout, run.stdout[-2000:]
        assert (root / "data" / "raw" / "manifest.json").is_file()
        assert "collect" in (root / "dvc.lock").read_text()
    finally:
        for proc in (served, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
