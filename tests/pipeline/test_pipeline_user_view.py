"""What a user sees after `dvc repro` on a real (tiny) project (issue 17): no warning noise, a
`dvc metrics show` table that fits the screen, a one-screen run summary naming every pair, and a
params edit that re-runs only the stages reading it."""
from __future__ import annotations

import pytest
import yaml

from tests.pipeline.tiny_project import make_project, sh, stale_stages

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repro(tmp_path_factory, multi30k_dir):
    """A tiny project after `dvc repro`, and what the repro printed."""
    root = make_project(tmp_path_factory.mktemp("view"), multi30k_dir)
    res = sh(["dvc", "repro"], root, timeout=900)
    return root, res.stdout + res.stderr


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def test_dvc_repro_prints_no_warning(repro):
    root, out = repro
    assert "WARNING" not in out, out
    again = sh(["dvc", "repro"], root)
    assert "WARNING" not in again.stdout + again.stderr, again.stdout + again.stderr


def test_dvc_metrics_show_and_diff_fit_120_columns(repro):
    root, _ = repro
    show = sh(["dvc", "metrics", "show"], root).stdout
    assert widest(show) <= 120, show
    # Only the headline files are metrics; the stages' detailed reports are plain outputs.
    assert sorted(line.split()[0] for line in show.splitlines()[1:]) == [
        "data/metrics/adapt.json", "data/metrics/eval.json", "data/metrics/train.json"], show
    diff = sh(["dvc", "metrics", "diff", "--all"], root).stdout
    assert widest(diff) <= 120 and "chrfpp" in diff, diff


def test_summary_names_every_pair_in_one_screen(repro):
    root, _ = repro
    res = sh(["python", "-m", "babelflow.cli", "summary"], root)  # the project's code, as its stages
    text = res.stdout
    assert widest(text) <= 100 and len(text.splitlines()) <= 30, text
    for pair in ("en-de", "en-fr"):
        assert any(line.split()[:1] == [pair] for line in text.splitlines()), text
    assert "Adaptation to en-cs" in text and "K" in text, text
    assert "translate --release data/release --to de < input.en > output.de" in text, text


def test_changing_evaluate_examples_reruns_evaluate_not_adapt(repro):
    root, _ = repro
    params_file = root / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["examples"] = params["evaluate"].get("examples", 5) + 1
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stale = stale_stages(root)
    finally:
        params_file.write_text(original)
    assert set(stale) == {"evaluate", "release"}, stale  # release copies params.yaml
