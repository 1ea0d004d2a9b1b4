"""What every stage module shares: where artifacts live and how a stage is started from the CLI."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from babelflow.config import Params, load_params
from babelflow.errors import BabelflowError
from babelflow.io import disk_full_message, write_json

log = logging.getLogger("babelflow")


@dataclass(frozen=True)
class Paths:
    """The artifact layout of one pipeline run, relative to a project root (dvc.yaml mirrors it)."""

    root: Path = Path(".")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def inputs(self) -> Path:
        return self.data / "inputs"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def clean(self) -> Path:
        return self.data / "clean"

    @property
    def tokenizer(self) -> Path:
        return self.data / "tokenizer"

    @property
    def encoded(self) -> Path:
        return self.data / "encoded"

    @property
    def train(self) -> Path:
        return self.data / "train"

    @property
    def meta(self) -> Path:
        return self.data / "meta"

    @property
    def adapt(self) -> Path:
        return self.data / "adapt"

    @property
    def eval(self) -> Path:
        return self.data / "eval"

    @property
    def release(self) -> Path:
        return self.data / "release"

    @property
    def cache(self) -> Path:
        return self.data / "cache"

    def checkpoints(self, stage: str) -> Path:
        # Declared `persist: true, cache: false` in dvc.yaml: survives a killed run so it can resume.
        return self.data / "checkpoints" / stage

    def metrics(self, stage: str) -> Path:
        return self.data / "metrics" / f"{stage}.json"

    def plots(self, stage: str) -> Path:
        return self.data / "plots" / stage


# Values that differ between identical runs (clock readings, where a run resumed). DVC hashes the
# metrics files, so these are logged and never written: identical runs give identical bytes.
VOLATILE_METRICS = ("wall_s", "wall_time_s", "tokens_per_s", "resumed_from")


def write_metrics(paths: Paths, stage: str, metrics: dict, keys: tuple[str, ...] | None = None) -> dict:
    """Write `data/metrics/<stage>.json` without the volatile values; log those instead. `keys`: only
    these (a headline DVC compares; the stage keeps the rest in its own outputs)."""
    volatile = {k: metrics[k] for k in VOLATILE_METRICS if k in metrics}
    if volatile:
        log.info("stage %s: %s", stage, ", ".join(f"{k}={v}" for k, v in volatile.items()))
    kept = {k: v for k, v in metrics.items() if k not in volatile and (keys is None or k in keys)}
    paths.metrics(stage).parent.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics(stage), kept)
    return kept


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("BABELFLOW_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def stage_main(name: str, run: Callable[[Params, Paths], object]) -> None:
    """CLI entry for `python -m tasks.<name>`: validated params first, then the stage.

    A BabelflowError (bad input, bad config) ends with exit code 2 and a one-paragraph message
    instead of a traceback: it is the user's to fix, not a bug. A full disk ends with exit code 3 and
    the file it was writing.
    """
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{name}")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                        help="override one params value (YAML value; repeatable), e.g. train.max_steps=100")
    args = parser.parse_args()
    setup_logging()
    try:
        params = load_params(args.params, args.overrides)
        t0 = time.monotonic()
        log.info("stage %s: start", name)
        run(params, Paths(Path(args.root)))
        log.info("stage %s: done in %.1fs", name, time.monotonic() - t0)
    except BabelflowError as exc:
        print(f"babelflow {name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        message = disk_full_message(exc)
        if message is None:
            raise
        print(f"babelflow {name}: error: {message}", file=sys.stderr)
        sys.exit(3)
