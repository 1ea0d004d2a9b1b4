"""Every documented switch runs through a real `dvc repro` (issue 16): a switched-off stage still writes
the outputs dvc.yaml declares, says it did not run, and the release says so too. The switches are
independent, so one tiny project turns them all at once (one repro, about a minute)."""
from __future__ import annotations

import json

import pytest

from tests.pipeline.tiny_project import make_project, ran_stages, sh, stale_stages

pytestmark = pytest.mark.slow

SWITCHES = {
    "adapt.enabled": False,
    "languages.heldout": [],  # allowed once adapt is off
    "meta.enabled": False,
    "model.arch": "rnn",
    "model.rnn": {"embed_dim": 32, "hidden_dim": 32},
    "train.average_last": 2,
    "evaluate.external": [],
}


def test_switched_off_stages_keep_dvc_repro_whole(tmp_path, multi30k_dir):
    root = make_project(tmp_path / "proj", multi30k_dir, overrides=SWITCHES)
    sh(["dvc", "repro"], root, timeout=900)
    assert stale_stages(root) == {}
    assert ran_stages(sh(["dvc", "repro"], root).stdout) <= {"inputs"}

    data = root / "data"
    assert json.loads((data / "metrics" / "adapt.json").read_text()) == {}  # no headline to compare
    adapt = json.loads((data / "adapt" / "results.json").read_text())
    assert adapt["enabled"] is False and "not run" in adapt["note"]
    assert (data / "plots" / "adapt" / "curve.csv").read_text().startswith("k,scratch,transfer,meta")
    assert json.loads((data / "metrics" / "meta.json").read_text())["enabled"] is False
    train_state = json.loads((data / "train" / "train_state.json").read_text())
    assert train_state["averaged_checkpoints"] == 2
    release = data / "release"
    assert json.loads((release / "model.json").read_text())["arch"] == "rnn"
    card = (release / "MODEL_CARD.md").read_text()
    assert "Adaptation was not run" in card and "Meta-learning was not run" in card
    assert json.loads((release / "metrics.json").read_text())["adapt"]["enabled"] is False
