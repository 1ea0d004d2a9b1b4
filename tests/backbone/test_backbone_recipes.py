"""recipes/: one complete params file per real task. Each validates, states every knob (dvc.yaml names
leaf keys, and DVC stops on one missing from params.yaml), the gettext default is params.yaml itself,
and the Multi30k recipes bring val and test_2016_flickr through collect and clean whole."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from babelflow.config import Params, load_params, parse_params
from tests.backbone.test_backbone_dvc_deps import OPERATIONAL_KNOBS, _knobs

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
SPLIT_FILES = {"dev": "val", "test": "test_2016_flickr"}


def test_the_three_recipes_are_shipped():
    assert {"gettext-default", "multi30k-ende", "multi30k-ende-fr"} <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_and_states_every_knob(path):
    load_params(path)
    absent = [k for k in _knobs(Params, yaml.safe_load(path.read_text(encoding="utf-8")))
              if k not in OPERATIONAL_KNOBS]
    assert not absent, f"{path.name} leaves these to config.py's defaults: {absent}"


def test_the_gettext_default_recipe_is_params_yaml():
    # The default run is a recipe like the others, so `make run RECIPE=gettext-default` goes back to it.
    assert (ROOT / "recipes" / "gettext-default.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes()


def _words(path: Path) -> list[str]:
    # Whitespace is normalised by clean (and by sacreBLEU's tokenizer): the words must be the published ones.
    return sorted(" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("name", ["multi30k-ende", "multi30k-ende-fr"])
def test_multi30k_recipe_keeps_val_and_test_whole(name, multi30k_dir, tmp_path):
    from tasks._common import Paths
    from tasks.clean import run as clean
    from tasks.collect import run as collect

    data = yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text(encoding="utf-8"))
    data["collect"]["sources"][0]["path"] = str(multi30k_dir)
    data["clean"]["workers"] = 1
    params = parse_params(data)
    collect(params, Paths(tmp_path))
    clean(params, Paths(tmp_path))
    for tgt in params.languages.targets:
        folder = tmp_path / "data" / "clean" / f"en-{tgt}"
        for split, stem in SPLIT_FILES.items():
            assert _words(folder / f"{split}.src") == _words(multi30k_dir / f"{stem}.en"), (tgt, split)
            assert _words(folder / f"{split}.tgt") == _words(multi30k_dir / f"{stem}.{tgt}"), (tgt, split)
        assert len((folder / "train.src").read_text(encoding="utf-8").splitlines()) > 28_000
