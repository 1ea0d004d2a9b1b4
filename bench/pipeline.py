"""What the Multi30k benchmarks share: a preset's params (bench/presets/<name>.yaml + `--set` overrides),
and the stages run on it as the pipeline runs them, in the pipeline's own layout (`tasks._common.Paths`).

A rerun redoes collect, clean and tokenize (seconds to minutes); train and meta resume from their
checkpoints, so a finished run costs only a reload.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from babelflow.config import Params, load_params
from tasks._common import Paths, setup_logging

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "bench" / "presets"
CORPUS = ROOT.parent / "shared" / "corpora" / "multi30k"
SPLITS = "{train: train, dev: val, test: test_2016_flickr}"  # Multi30k's own splits, never re-drawn


def preset_params(name: str, overrides=(), corpus: str | Path = CORPUS) -> Params:
    """bench/presets/<name>.yaml with Multi30k at `corpus`, then `overrides` (section.key=value)."""
    source = (f"collect.sources=[{{type: aligned, name: multi30k, path: {json.dumps(str(Path(corpus).resolve()))}, "
              f"splits: {SPLITS}}}]")
    return load_params(PRESETS / f"{name}.yaml", [source, *overrides])


def add_arguments(ap: argparse.ArgumentParser, presets: list[str], default: str, work: str) -> None:
    ap.add_argument("--preset", choices=presets, default=default)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                    help="override one preset value (YAML value; repeatable), e.g. train.max_steps=600")
    ap.add_argument("--corpus", default=str(CORPUS), help="folder of the Multi30k files")
    ap.add_argument("--work", default=work, help="runs go under WORK/<preset>/, laid out as a project's data/")


def run_stages(params: Params, work: str | Path, stages: list[str]) -> tuple[Paths, dict[str, float]]:
    """Run `tasks.<stage>.run(params, paths)` for each stage in a project at `work`; seconds per stage."""
    setup_logging()
    paths, seconds = Paths(Path(work)), {}
    for stage in stages:
        t = time.monotonic()
        importlib.import_module(f"tasks.{stage}").run(params, paths)
        seconds[stage] = round(time.monotonic() - t, 1)
    return paths, seconds
