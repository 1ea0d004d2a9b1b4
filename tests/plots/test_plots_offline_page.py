"""`dvc plots show` is viewable with no network (issue 17): DVC's own page loads Vega from a CDN and is
blank offline; the project's template (.dvc/config `plots.html_template`) carries Vega itself. Checked
in a real headless Chromium with every host name unresolvable, by screenshot."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DVC = Path(sys.executable).parent / "dvc"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install chromium): the offline "
                             "plots page is only checked in a real browser")
# DVC colours the workspace's lines with the first colour of its palette (dvc_render.vega).
LINE_RGB = np.array([0x94, 0x5D, 0xD6])

CURVES = {
    "train/learning_curve.csv": "step,train_loss,lr\n" + "".join(
        f"{s},{7.5 - 2.5 * s / 40:.3f},{1e-3 * min(1, s / 20):.6g}\n" for s in range(1, 41)),
    "train/dev_loss.csv": "step,dev_loss\n20,6.1\n40,5.2\n",
    "train/dev_bleu.csv": "step,dev_bleu\n20,0.8\n40,2.4\n",
    "adapt/curve.csv": "k,scratch,transfer,meta\n10,0.1,2.0,2.4\n100,0.4,5.1,5.6\n",
}


def _dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {"DVC_NO_ANALYTICS": "1", "PATH": f"{DVC.parent}:/usr/bin:/bin", "HOME": str(root)}
    done = subprocess.run([str(DVC), *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 or not check, done.stderr
    return done


@pytest.fixture
def plots_page(tmp_path, repo_root) -> Path:
    """The page `dvc plots show` writes in a project with the real dvc.yaml and .dvc/config."""
    root = tmp_path / "proj"
    root.mkdir()
    for rel, text in CURVES.items():
        (root / "data" / "plots" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / "plots" / rel).write_text(text, encoding="utf-8")
    _dvc(root, "init", "--no-scm", "-q")
    shutil.copy(repo_root / "dvc.yaml", root / "dvc.yaml")
    template = _dvc(repo_root, "config", "plots.html_template", check=False).stdout.strip()
    if template:  # relative to .dvc/, as in the repository (without one, DVC's own page)
        target = root / ".dvc" / template
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root / ".dvc" / template, target)
        _dvc(root, "config", "plots.html_template", template)
    _dvc(root, "plots", "show")
    return root / "dvc_plots" / "index.html"


def test_the_plots_page_loads_no_script_from_the_network(plots_page):
    html = plots_page.read_text(encoding="utf-8")
    assert not re.findall(r"<script[^>]*\bsrc=", html), "the page loads a script: blank with no network"
    assert "vegaEmbed" in html and html.count("vegaEmbed(") >= 4  # one call per plot


@needs_chromium
def test_the_plots_page_draws_every_plot_with_no_network(plots_page, tmp_path):
    def chromium(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
             "--host-resolver-rules=MAP * ~NOTFOUND",  # no host name resolves: a CDN is unreachable
             *args, plots_page.as_uri()],
            capture_output=True, text=True, timeout=180)

    shot = tmp_path / "page.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1400,1000")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert (pixels.min(axis=2) < 200).mean() > 0.01, "the plot area is blank"
    lines = (np.abs(pixels - LINE_RGB).max(axis=2) < 40).sum()
    assert lines > 500, f"only {lines} pixels in the line colour: no curve is drawn"
    dom = chromium("--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # vega-embed draws each plot on a canvas of class "marks": all of them, not only the first ones.
    assert dom.stdout.count('class="marks"') >= 4, "not every plot is drawn"
