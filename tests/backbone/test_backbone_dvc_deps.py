"""dvc.yaml must name everything a stage's output depends on, or `dvc repro` calls a stale output
up to date: each stage's deps cover every babelflow module its task imports (statically, lazy
imports included), and params.yaml states every knob, so no default in babelflow/config.py is
an untracked input."""
from __future__ import annotations

import ast
from pathlib import Path

import yaml
from pydantic import BaseModel

from babelflow.config import Params

ROOT = Path(__file__).resolve().parents[2]

# Imported by every stage but unable to change what a stage writes, so not deps (a change to them
# would re-run the whole pipeline for nothing).
OUTPUT_NEUTRAL = {
    "babelflow/__init__.py": "the package docstring and version string; no stage writes the version",
    "tasks/__init__.py": "docstring only",
    "babelflow/errors.py": "exception types and messages",
    "babelflow/failpoints.py": "fault injection, off unless a test sets BABELFLOW_FAILPOINT",
    "babelflow/progress.py": "progress lines on stderr; writes no artifact",
    "babelflow/config.py": "its defaults are inputs, but params.yaml states every knob (tested below) "
                           "and DVC tracks those values; parsing itself does not shape outputs",
}
# Knobs that say where or how a run operates, not what it computes.
OPERATIONAL_KNOBS = {"collect.cache_dir"}


def _module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported_modules(path: Path) -> set[str]:
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {n for n in names if n.split(".")[0] in ("babelflow", "tasks")}


def import_closure(start: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = _module_file(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


def _covered(rel: str, deps: list[str]) -> bool:
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_depends_on_the_code_it_runs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    missing = {}
    for name, stage in stages.items():
        code = import_closure(ROOT / "tasks" / f"{name}.py")
        assert ROOT / "babelflow" / "config.py" in code  # the walk reaches the library at all
        gaps = sorted(rel for rel in (str(p.relative_to(ROOT)) for p in code)
                      if rel not in OUTPUT_NEUTRAL and not _covered(rel, stage["deps"]))
        if gaps:
            missing[name] = gaps
    assert not missing, f"dvc.yaml deps lack modules the stage imports: {missing}"


def _knobs(model: type[BaseModel], values: dict, prefix: str = "") -> list[str]:
    absent = []
    for name, field in model.model_fields.items():
        key = prefix + name
        if name not in values:
            absent.append(key)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            absent += _knobs(field.annotation, values[name] or {}, key + ".")
    return absent


def test_params_yaml_states_every_knob():
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    absent = [k for k in _knobs(Params, shipped) if k not in OPERATIONAL_KNOBS]
    assert not absent, f"params.yaml leaves these to config.py's defaults, which DVC does not track: {absent}"


def test_the_walk_sees_lazy_imports(tmp_path):
    # adapt imports babelflow.data only inside functions (FinetuneUpdate, dev_scorer): the walk must
    # still find it.
    assert ROOT / "babelflow" / "data.py" in import_closure(ROOT / "tasks" / "adapt.py")


def test_no_stage_depends_on_code_it_does_not_run():
    """A dep on code the stage never imports re-runs it for nothing: editing how adaptation is run or
    reported must not re-run meta-training (meta does not import babelflow.adapt)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    extra = {}
    for name, stage in stages.items():
        code = {str(p.relative_to(ROOT)) for p in import_closure(ROOT / "tasks" / f"{name}.py")}
        unused = [d for d in stage["deps"] if d.split("/")[0] in ("babelflow", "tasks")
                  and not any(_covered(rel, [d]) for rel in code)]
        if unused:
            extra[name] = unused
    assert not extra, f"dvc.yaml deps name code the stage does not import: {extra}"
    assert not any(p.startswith("babelflow/adapt") for p in map(str, (
        q.relative_to(ROOT) for q in import_closure(ROOT / "tasks" / "meta.py"))))
