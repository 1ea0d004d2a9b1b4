"""`make run RECIPE=NAME` (= `babelflow recipe NAME`, then `dvc repro`): a recipe becomes params.yaml and
runs through the same DVC stages and release. params.yaml is replaced only while its text is that of a
recipe, so settings a user wrote into it are never lost."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from babelflow.cli import main
from babelflow.errors import ConfigError
from babelflow.recipes import use_recipe
from tests.pipeline.tiny_project import TINY_PARAMS, make_project, sh, stale_stages

ROOT = Path(__file__).resolve().parents[2]


def _text(**changes) -> str:
    params = copy.deepcopy(TINY_PARAMS)
    for section, values in changes.items():
        params[section] = {**params.get(section, {}), **values}
    return yaml.safe_dump(params, sort_keys=False)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "small.yaml").write_text(_text(), encoding="utf-8")
    (tmp_path / "recipes" / "big.yaml").write_text(_text(train={"max_steps": 20}), encoding="utf-8")
    (tmp_path / "params.yaml").write_text(_text(), encoding="utf-8")  # as shipped: the `small` recipe
    return tmp_path


def test_switches_from_one_recipe_to_another(project):
    use_recipe(project, "big")
    assert (project / "params.yaml").read_bytes() == (project / "recipes" / "big.yaml").read_bytes()
    use_recipe(project, "small")
    assert (project / "params.yaml").read_bytes() == (project / "recipes" / "small.yaml").read_bytes()


def test_writes_params_yaml_where_there_is_none(project):
    (project / "params.yaml").unlink()
    use_recipe(project, "big")
    assert (project / "params.yaml").read_bytes() == (project / "recipes" / "big.yaml").read_bytes()


def test_an_edited_params_yaml_is_never_replaced(project, capsys):
    mine = _text(train={"lr": 0.002})
    (project / "params.yaml").write_text(mine, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"params.yaml.*not replaced.*cp params.yaml recipes/"):
        use_recipe(project, "big")
    assert main(["recipe", "big", "--root", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("babelflow recipe: error: ") and err.count("\n") == 1, err
    assert (project / "params.yaml").read_text(encoding="utf-8") == mine


def test_unknown_recipe_names_the_ones_there_are(project):
    with pytest.raises(ConfigError, match=r"unknown recipe 'multi30k'.*big, small"):
        use_recipe(project, "multi30k")


def test_a_recipe_that_does_not_validate_never_reaches_params_yaml(project):
    (project / "recipes" / "bad.yaml").write_text(_text(train={"lr": "fast"}), encoding="utf-8")
    before = (project / "params.yaml").read_bytes()
    with pytest.raises(ConfigError, match=r"bad.yaml: train.lr"):
        use_recipe(project, "bad")
    assert (project / "params.yaml").read_bytes() == before


def test_without_a_name_the_recipes_are_listed_with_the_one_in_use(project, capsys):
    assert main(["recipe", "--root", str(project)]) == 0
    out = capsys.readouterr().out
    assert "small (params.yaml)" in out and "big" in out


def test_make_run_takes_the_recipe(repo_root):
    # The documented command: `make run RECIPE=NAME` switches before `dvc repro` (dry run: no venv set-up).
    res = sh(["make", "-n", "run", "RECIPE=multi30k-ende"], repo_root)
    lines = res.stdout.splitlines()
    switch = next(i for i, line in enumerate(lines) if "babelflow recipe multi30k-ende" in line)
    assert switch < next(i for i, line in enumerate(lines) if "dvc repro" in line)
    assert "babelflow recipe" not in sh(["make", "-n", "run"], repo_root).stdout


@pytest.mark.slow
def test_a_recipe_runs_through_the_same_stages_and_release(tmp_path, multi30k_dir):
    root = make_project(tmp_path / "proj", multi30k_dir)
    (root / "recipes").mkdir()
    (root / "recipes" / "tiny.yaml").write_bytes((root / "params.yaml").read_bytes())
    rnn = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    rnn["model"]["arch"] = "rnn"
    rnn["release"]["name"] = "tiny-rnn"
    (root / "recipes" / "tiny-rnn.yaml").write_text(yaml.safe_dump(rnn, sort_keys=False), encoding="utf-8")
    sh(["python", "-m", "babelflow.cli", "recipe", "tiny-rnn"], root)
    sh(["dvc", "repro"], root, timeout=900)
    assert yaml.safe_load((root / "data" / "release" / "params.yaml").read_text())["release"]["name"] == "tiny-rnn"
    assert yaml.safe_load((root / "data" / "train" / "model.json").read_text())["arch"] == "rnn"
    assert "tiny-rnn" in (root / "data" / "release" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert stale_stages(root) == {}
