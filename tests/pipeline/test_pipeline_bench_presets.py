"""bench/ drives the library (issue 18): its presets are params files that load like params.yaml, and
bench/multi30k.py runs the pipeline's stages in the pipeline's layout and reads their outputs."""
from __future__ import annotations

import sys

import pytest

from bench import multi30k, pipeline


@pytest.mark.parametrize("preset", sorted(p.stem for p in pipeline.PRESETS.glob("*.yaml")))
def test_every_preset_is_a_valid_params_file(preset, tmp_path):
    params = pipeline.preset_params(preset, ["train.max_steps=5000"], tmp_path)
    source = params.collect.sources[0]
    assert source.path == str(tmp_path.resolve()) and source.splits["test"] == "test_2016_flickr"
    assert params.train.max_steps == 5000


@pytest.mark.slow
def test_multi30k_smoke_runs_the_stages(multi30k_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [
        "multi30k.py", "--preset", "smoke", "--runs", "ende", "--corpus", str(multi30k_dir), "--work", str(tmp_path),
        "--set", "train.max_steps=10", "--set", "train.checkpoint_every=2", "--set", "evaluate.max_sentences=20", "--set", "collect.max_pairs=300"])
    multi30k.main()
    project = tmp_path / "smoke" / "ende" / "data"
    assert (project / "train" / "model.safetensors").is_file() and (project / "eval" / "en-de.hyp").is_file()
    assert set((project / "raw" / "en-de").iterdir()) >= {project / "raw" / "en-de" / f"{s}.src"
                                                          for s in ("train", "dev", "test")}
    # Multi30k's own val is the dev split (1014 sentences), not a hash split of train.
    assert len((project / "clean" / "en-de" / "dev.src").read_text().splitlines()) == 1014
    assert "| ende | en-de | 20 |" in capsys.readouterr().out
