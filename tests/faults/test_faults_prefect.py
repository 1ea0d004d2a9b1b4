"""Prefect retries: a network source that fails transiently is retried by the flow until it works;
one that fails for good fails the flow naming the stage and the cause, leaves the other stages'
artifacts valid, and the failed stage's last good output restorable from DVC's cache.

The source is a real HTTP server on 127.0.0.1; the download's own retries are turned off
(`retries: 0`) so that what recovers is Prefect's task retry, not the downloader.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tests.pipeline.tiny_project import make_project, sh

pytestmark = pytest.mark.slow


class FlakyServer:
    """Serves one file; answers 503 to the first `fail_first` requests (forever if None)."""

    def __init__(self, body: bytes, fail_first: int | None):
        self.body, self.fail_first, self.requests = body, fail_first, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests += 1
                if outer.fail_first is None or outer.requests <= outer.fail_first:
                    self.send_error(503, "Service Unavailable")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/corpus.tsv"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def _tatoeba_tsv(multi30k_dir, lines: int = 300) -> bytes:
    sides = {lang: (multi30k_dir / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:lines]
             for lang in ("en", "de", "fr", "cs")}
    rows = [f"en\t{lang}\t{sides['en'][i]}\t{sides[lang][i]}" for lang in ("de", "fr", "cs") for i in range(lines)]
    return ("\n".join(rows) + "\n").encode()


def _point_at(root, url: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["collect"]["sources"] = [{"type": "url", "name": "flaky-mirror", "url": url, "format": "tatoeba",
                                     "retries": 0, "timeout_s": 10}]
    params["schedule"] = {"network_retries": 3, "retry_delay_s": [0.2]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _flow(root, home, stages: list[str]):
    code = f"from flows.pipeline import pipeline_flow; pipeline_flow(root='.', stages={stages!r})"
    return sh(["python", "-c", code], root, check=False, timeout=600,
              extra_env={"PREFECT_HOME": str(home), "PREFECT_API_URL": "", "PREFECT_LOGGING_LEVEL": "INFO"})


def test_transient_503_recovers_through_retries_then_permanent_failure_names_the_stage(
        tmp_path, multi30k_dir):
    root = make_project(tmp_path / "p", multi30k_dir)
    body = _tatoeba_tsv(multi30k_dir)
    flaky = FlakyServer(body, fail_first=2)
    try:
        _point_at(root, flaky.url)
        res = _flow(root, tmp_path / "home", ["collect", "clean"])
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-4000:]
        assert flaky.requests == 3, out[-4000:]  # 503, 503, then 200: two Prefect retries
        # Three task attempts, counted from the stage command DVC echoes on a line of its own (the
        # failure messages repeat it mid-line): Prefect's retry log wording is not relied on.
        attempts = re.findall(r"(?m)> python -m tasks\.collect$", out)
        assert "HTTP 503" in out and len(attempts) == 3, out[-4000:]
    finally:
        flaky.close()
    assert "up to date" in sh(["dvc", "status", "clean"], root).stdout
    manifest = json.loads((root / "data" / "raw" / "manifest.json").read_text())
    assert any(rec.get("url") == flaky.url for rec in manifest["inputs"]), manifest
    raw_before = {p.relative_to(root): p.read_bytes() for p in (root / "data").rglob("*") if p.is_file()}

    down = FlakyServer(body, fail_first=None)
    try:
        _point_at(root, down.url)
        res = _flow(root, tmp_path / "home", ["collect", "clean"])
        out = res.stdout + res.stderr
        assert res.returncode != 0, out[-4000:]
        assert down.requests == 4, out[-4000:]  # the first try and three retries
        assert "stage 'collect' failed" in out and "503" in out, out[-4000:]
        assert "Running stage 'clean'" not in out, out[-4000:]  # nothing after the failed stage
    finally:
        down.close()
    # DVC deletes a stage's outputs before running it; every other stage's artifacts are untouched
    # (but the inputs stage's, which ran and fingerprinted the new source), and the failed stage's
    # last good output is still in DVC's cache, one checkout away.
    collect_outs = {"data/raw", "data/metrics/collect.json", "data/inputs"}
    untouched = {p: b for p, b in raw_before.items() if not any(str(p).startswith(o) for o in collect_outs)}
    after = {p.relative_to(root): p.read_bytes() for p in (root / "data").rglob("*") if p.is_file()}
    assert {p: after.get(p) for p in untouched} == untouched
    sh(["dvc", "checkout", "collect"], root)
    restored = {p.relative_to(root): p.read_bytes() for p in (root / "data" / "raw").rglob("*") if p.is_file()}
    assert restored == {p: b for p, b in raw_before.items() if str(p).startswith("data/raw")}
