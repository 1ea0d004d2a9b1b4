"""`babelflow schedule`: a real Prefect server whose scheduler fires the served deployment, and the
refusals (bad cron, bad timezone, no API) that come before anything is registered."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.pipeline.tiny_project import ROOT, env, make_project


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, path: str, body: dict | None = None):
    """GET (or POST `body` to) the Prefect REST API; None when the server does not answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")
    except OSError:
        return None


def _wait(fetch, timeout: float, what: str, log: Path):
    """Poll `fetch` until it returns something truthy; on timeout fail with the server log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fetch()
        if got:
            return got
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; server log tail:\n{tail}")


def _stop(proc: subprocess.Popen | None) -> None:
    """End the process group started for `proc`, whatever it left behind (flow-run children, a
    temporary Prefect server): TERM, up to 20 s for the leader, then KILL for what remains."""
    if proc is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass


def _run(cmd: list[str], extra: dict[str, str | None]) -> subprocess.CompletedProcess:
    """Run `cmd` from the repository root in its own process group (None in `extra` unsets a
    variable); at most 60 s, and nothing it started outlives it."""
    e = {k: v for k, v in {**env(), **extra}.items() if v is not None}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_the_scheduler_fires_the_served_deployment(tmp_path, multi30k_dir):
    """The server's scheduler (not a hand-made `prefect deployment run`) creates a run of the every-
    minute deployment, and the served process runs it to Completed with the collect stage's outputs."""
    root = make_project(tmp_path / "proj", multi30k_dir)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    extra = {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
             "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
             # the scheduler looks every 2 s instead of 60, the runner polls every 2 s instead of 10
             "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    log = tmp_path / "server.log"
    server = served = None
    try:
        with open(log, "wb") as out:
            server = subprocess.Popen(
                ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                cwd=tmp_path, env={**env(), **extra}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        _wait(lambda: _api(api, "/health"), 120, "the Prefect server", log)
        with open(tmp_path / "serve.log", "wb") as out:
            served = subprocess.Popen(
                [sys.executable, "-m", "flows.schedule", "--cron", "* * * * *", "--root", str(root),
                 "--stages", "collect"],
                cwd=root, env={**env(), **extra}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deployment = _wait(lambda: _api(api, "/deployments/name/babelflow-pipeline/babelflow-nightly"), 90,
                           "the deployment to be registered", log)
        assert deployment["schedules"][0]["schedule"]["cron"] == "* * * * *"
        assert deployment["parameters"]["stages"] == ["collect"]

        def completed_run():
            runs = _api(api, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
            for run in runs or []:
                assert run["state_type"] not in ("FAILED", "CRASHED"), run["state"]
            return next((r for r in runs or [] if r["state_type"] == "COMPLETED"), None)

        # The next minute boundary, the scheduler's and the runner's loops, and the collect stage.
        run = _wait(completed_run, 150, "a scheduled flow run to complete", log)
        # Made by the server's scheduler: nothing in this test asked for a run.
        assert run["auto_scheduled"] is True
        assert run["created_by"]["type"] == "SCHEDULE"
        assert run["idempotency_key"].startswith("scheduled ")
        assert run["parameters"]["stages"] == ["collect"]
        assert (root / "data" / "raw" / "manifest.json").is_file()
        assert "collect" in (root / "dvc.lock").read_text()
    finally:
        _stop(served)
        _stop(server)


def _schedule_cli(args: list[str], tmp_path: Path, api: str | None = "closed") -> subprocess.CompletedProcess:
    """`babelflow schedule` with PREFECT_API_URL = `api` (default: a closed port; None: unset)."""
    if api == "closed":
        api = f"http://127.0.0.1:{_free_port()}/api"
    return _run([sys.executable, "-m", "babelflow.cli", "schedule", "--root", str(tmp_path), *args],
                {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api})


def _assert_refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_schedule_refuses_an_invalid_cron(tmp_path):
    # The API address is closed too: the cron is judged first, before any contact with Prefect.
    _assert_refused(_schedule_cli(["--cron", "61 * * * *"], tmp_path), "--cron", "61 * * * *")


def test_schedule_refuses_an_unknown_timezone(tmp_path):
    _assert_refused(_schedule_cli(["--cron", "0 3 * * *", "--timezone", "Mars/Base"], tmp_path),
                    "--timezone", "unknown timezone 'Mars/Base'")


def test_schedule_refuses_an_unreachable_api_fast(tmp_path):
    api = f"http://127.0.0.1:{_free_port()}/api"  # nothing listens there
    start = time.monotonic()
    proc = _schedule_cli(["--cron", "0 3 * * *"], tmp_path, api=api)
    _assert_refused(proc, api, "not reachable")
    assert time.monotonic() - start < 30


def test_schedule_refuses_to_register_without_an_api(tmp_path):
    # Prefect would start a temporary in-process server, which never runs the schedule.
    _assert_refused(_schedule_cli(["--cron", "0 3 * * *"], tmp_path, api=None), "PREFECT_API_URL")


@pytest.mark.parametrize("args, words", [(["--cron", "0 3 * *"], ["--cron", "0 3 * *"]),
                                         (["--stages", "collect", "bogus"], ["--stages", "bogus"])])
def test_flows_schedule_refuses_like_the_cli(tmp_path, args, words):
    """`python -m flows.schedule` (the Makefile's `schedule` target) refuses the same way."""
    proc = _run([sys.executable, "-m", "flows.schedule", "--root", str(tmp_path), *args],
                {"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api"})
    _assert_refused(proc, *words)


def test_schedule_refuses_a_bad_timezone_in_params_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text("languages: {targets: [de]}\ncollect: {sources: [{type: gettext}]}\n"
                                          "schedule: {cron: '0 3 * * *', timezone: Mars/Base}\n")
    proc = _schedule_cli([], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "schedule.timezone" in proc.stderr and "unknown timezone 'Mars/Base'" in proc.stderr
