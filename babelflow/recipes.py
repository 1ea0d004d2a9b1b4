"""Recipes: params files for real tasks, `recipes/<name>.yaml`, each a complete params.yaml.

`use_recipe(root, name)` makes one the project's params.yaml, so `dvc repro` runs it through the same
stages and release as any run, and dvc.lock records which settings made the artifacts. params.yaml is
replaced only while its text is that of a recipe (as shipped it is `gettext-default`), so nothing a
user wrote into it is lost: an edited params.yaml stops the switch with a message saying how to keep
the edits as a recipe of one's own. Outputs of an earlier recipe stay in DVC's cache: switching back
and running `dvc repro` restores them from the run cache instead of training again.
"""
from __future__ import annotations

from pathlib import Path

from babelflow.config import load_params
from babelflow.errors import ConfigError
from babelflow.io import write_bytes

FOLDER = "recipes"
PARAMS = "params.yaml"


def available(root: str | Path) -> dict[str, Path]:
    """name -> file of every recipe in `root`/recipes."""
    folder = Path(root) / FOLDER
    return {p.stem: p for p in sorted(folder.glob("*.yaml"), key=lambda p: p.stem)} if folder.is_dir() else {}


def in_use(root: str | Path) -> str | None:
    """The recipe params.yaml is a copy of, or None (edited, or absent)."""
    target = Path(root) / PARAMS
    if not target.is_file():
        return None
    text = target.read_bytes()
    return next((name for name, path in available(root).items() if path.read_bytes() == text), None)


def use_recipe(root: str | Path, name: str) -> Path:
    """Write recipes/<name>.yaml to params.yaml (atomically) after checking it validates; returns its path."""
    root = Path(root)
    recipes = available(root)
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r}; {root / FOLDER} has: {', '.join(recipes) or 'none'}")
    load_params(recipes[name])  # a recipe that does not validate stops here, naming its file and key
    target = root / PARAMS
    if target.exists() and in_use(root) is None:
        raise ConfigError(f"{target} differs from every recipe (settings of your own?), so it is not replaced; "
                          f"keep it as a recipe first (cp params.yaml recipes/mine.yaml), then switch")
    write_bytes(target, recipes[name].read_bytes())
    return target
