"""Screenshots of the Prefect UI for a real pipeline run, for docs/ (README links them).

Builds the tiny test project (tests/pipeline/tiny_project.py, needs ../shared/corpora/multi30k or
BABELFLOW_SHARED), starts a Prefect server on loopback with its own PREFECT_HOME, runs the flow against
it, and shoots the flow run's Task Runs and Artifacts tabs and the metrics artifact with the system's
headless Chromium, quantised with pngquant when installed. Everything but the PNGs lives in a temp folder.

    python scripts/prefect_screenshots.py [--out docs] [--port 4317]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.pipeline.tiny_project import make_project  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=15000"]


def api(url: str, body: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def shoot(url: str, png: Path, size: str, tmp: Path) -> None:
    profile = Path(tempfile.mkdtemp(dir=tmp))  # a fresh profile per shot: nothing cached between pages
    subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                    f"--screenshot={png}", url], check=True, capture_output=True, timeout=180)
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--output", str(png), "64", str(png)],
                       check=False)
    print(f"{png}: {png.stat().st_size // 1024} KiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--port", type=int, default=4317)
    args = ap.parse_args()
    out = Path(args.out)
    shared = Path(os.environ.get("BABELFLOW_SHARED", ROOT.parent / "shared"))
    base = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        project = make_project(tmp / "proj", shared / "corpora" / "multi30k")
        env = dict(os.environ, PREFECT_HOME=str(tmp / "prefect"), PREFECT_API_URL=f"{base}/api",
                   PREFECT_UI_API_URL=f"{base}/api",  # the UI asks the API where it was told, not 4200
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", DVC_NO_ANALYTICS="1",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        server = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(args.port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            for _ in range(120):
                try:
                    if api(f"{base}/api/health") is True:
                        break
                except OSError:
                    time.sleep(1)
            subprocess.run([sys.executable, "-m", "flows.pipeline", "."], cwd=project, env=env, check=True)
            [run] = api(f"{base}/api/flow_runs/filter", {"limit": 1})
            [artifact] = api(f"{base}/api/artifacts/filter", {"limit": 1})
            page = f"{base}/v2/runs/flow-run/{run['id']}"
            shoot(f"{page}?tab=TaskRuns", out / "prefect-flow-run.png", "1400,1400", tmp)
            shoot(f"{page}?tab=Artifacts", out / "prefect-artifacts.png", "1400,1000", tmp)
            shoot(f"{base}/v2/artifacts/artifact/{artifact['id']}", out / "prefect-artifact.png", "1400,1400", tmp)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
