"""bench/meta_multi30k.py --project: meta-learning and adaptation start from a finished recipe run's
model (its data and weights linked, not rebuilt), and the budget-matched baseline continues that run's
own training, which only the code that trained it can resume."""
from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from babelflow.errors import ConfigError
from bench import meta_multi30k as bench
from tests.pipeline.tiny_project import ROOT, make_project, sh


def recipe_project(tmp_path: Path, heldout=("cs",)) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    recipe = yaml.safe_load((ROOT / "recipes" / "multi30k-ende-fr.yaml").read_text(encoding="utf-8"))
    recipe["languages"]["heldout"] = list(heldout)
    (project / "params.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return project


def test_project_params_are_the_recipes_with_the_presets_meta_and_adapt(tmp_path):
    params = bench.project_params(recipe_project(tmp_path), "cpu", ["adapt.seeds=[1,2,3,4,5]"], tmp_path / "w")
    preset = bench.preset_params("meta-cpu")
    # The model and its training are the recipe's; how to meta-learn, adapt and score is the preset's.
    assert (params.model.transformer.encoder_layers, params.train.max_steps, params.tokenizer.vocab_size) == \
        (4, 16000, 12000)
    assert params.meta.enabled and params.adapt.enabled and params.meta.meta_steps == preset.meta.meta_steps
    assert params.adapt.k == preset.adapt.k and params.adapt.seeds == [1, 2, 3, 4, 5]
    assert params.evaluate.beam_size == preset.evaluate.beam_size
    written = yaml.safe_load((tmp_path / "w" / "params.yaml").read_text(encoding="utf-8"))
    assert written["meta"]["enabled"] is True and written["train"]["max_steps"] == 16000


def test_a_project_without_a_heldout_language_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"project/params.yaml: languages.heldout is empty"):
        bench.project_params(recipe_project(tmp_path, heldout=()), "cpu", [], tmp_path / "w")


def test_matched_transfer_refuses_a_project_trained_by_other_code(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "babelflow", project / "babelflow", ignore=shutil.ignore_patterns("__pycache__"))
    bench.require_same_code(project)  # the same files: the project's checkpoints resume here
    with open(project / "babelflow" / "decode.py", "a", encoding="utf-8") as fh:
        fh.write("\n# an edit after the project trained\n")
    with pytest.raises(ConfigError, match=r"babelflow differs from .* \(decode.py\): --matched-transfer"):
        bench.require_same_code(project)


def test_project_run_adapts_the_projects_model_and_continues_its_training(tmp_path, multi30k_dir):
    project = make_project(tmp_path / "project", multi30k_dir)
    sh(["dvc", "repro", "-q", "train"], project, timeout=900)
    trained = yaml.safe_load((project / "data" / "train" / "train_state.json").read_text())["steps"]
    before = sorted(p.name for p in (project / "data" / "checkpoints" / "train").iterdir())
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# R\n\n{bench.PROJECT_SECTION}\n\n_Not measured yet._\n", encoding="utf-8")
    cmd = [sys.executable, str(ROOT / "bench" / "meta_multi30k.py"), "--preset", "smoke", "--project", str(project),
           "--matched-transfer", "--work", str(tmp_path / "work"), "--results", str(results)]
    res = sh(cmd, ROOT, extra_env={"BABELFLOW_LOG": "INFO"}, timeout=900)
    work = tmp_path / "work" / "project"
    # The project's model is the transfer init, linked, not trained again; meta and adapt ran here.
    assert (work / "data" / "train").resolve() == (project / "data" / "train").resolve()
    assert not (work / "data" / "checkpoints" / "train").exists()
    assert (work / "data" / "adapt" / "results.json").is_file() and (work / "data" / "meta" / "model.json").is_file()
    # The matched baseline went on from the project's last checkpoint, not from scratch.
    params = bench.project_params(project, "smoke", [], tmp_path / "check")
    steps = bench.matched_train_steps(params)
    assert steps > trained
    # (The tiny run's last checkpoint, step 12, is off its 5-step grid, so it goes on from step 10.)
    resumed = re.search(r"resumed from \S+/matched/data/checkpoints/train/step_\d+ at step (\d+)", res.stderr)
    assert resumed and 0 < int(resumed.group(1)) <= trained, res.stderr[-2000:]
    assert yaml.safe_load((work / "matched" / "data" / "train" / "train_state.json").read_text())["steps"] == steps
    body = results.read_text(encoding="utf-8")
    assert "_Not measured yet._" not in body and f"--project {project}" in body
    # The Command line is the command that ran (it was a template with `nice -n 10` that this run never used).
    assert f"- Command: `python bench/meta_multi30k.py {shlex.join(cmd[2:])}`" in body, body[:1500]
    assert "| 50 | matched transfer |" in body and f"Transfer (train stage of the project {project}" in body
    # The project itself is left as it was: its checkpoints are where they were, no stage wrote into it.
    assert sorted(p.name for p in (project / "data" / "checkpoints" / "train").iterdir()) == before
    assert not (project / "data" / "meta").exists() and not (project / "data" / "adapt").exists()
