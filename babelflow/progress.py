"""Progress of a long loop on stderr: tqdm's bar on a terminal, plain lines everywhere else.

In a log file, a pipe or a Prefect task (which runs the stages under `dvc repro` with their output
piped into its log) a bar's carriage-return refreshes become one record each, mostly noise. There a
line such as `step 100/400 loss 5.120 lr 1.00e-03 tok/s 3500` is written every
BABELFLOW_PROGRESS_EVERY_S seconds (default 30), and at the end when one was.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO

DEFAULT_EVERY_S = 30.0


def every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("BABELFLOW_PROGRESS_EVERY_S", DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


class PlainProgress:
    """The part of tqdm's interface babelflow uses (update, set_postfix, write, close), as lines."""

    def __init__(self, total: int | None, unit: str, desc: str | None, initial: int, file: TextIO):
        self.total, self.unit, self.desc, self.n, self.file = total, unit, desc, initial, file
        self.postfix: dict[str, object] = {}
        self.every = every_s()
        self.last = time.monotonic()
        self.shown = initial  # the count the last line showed
        self.lines = 0

    def line(self) -> str:
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        parts = [self.desc, f"{self.unit} {count}", *(f"{k} {v}" for k, v in self.postfix.items())]
        return " ".join(p for p in parts if p)

    def _show(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self.last, self.shown, self.lines = time.monotonic(), self.n, self.lines + 1

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._show()

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def write(self, message: str, file: TextIO | None = None) -> None:
        print(message, file=file or self.file, flush=True)

    def close(self) -> None:
        # A log that showed progress shows where it ended; a short run stays quiet (a one-line error
        # stays one line).
        if self.lines and self.n != self.shown:
            self._show()


def meter(total: int | None, unit: str, desc: str | None = None, initial: int = 0,
             file: TextIO | None = None, enabled: bool = True):
    """A tqdm bar when `file` (default stderr) is a terminal, else a PlainProgress. `enabled=False`
    gives one that prints nothing (another rank's). No other tqdm option is passed, so the user's
    TQDM_* environment settings stay in charge of the bar."""
    file = file or sys.stderr
    if not enabled:
        from tqdm import tqdm

        return tqdm(total=total, disable=True)
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit=unit, desc=desc, file=file, dynamic_ncols=True)
    return PlainProgress(total, unit, desc, initial, file)


class _CallableLog:
    """Lets a plain `print`-like callable stand in for a logger."""

    def __init__(self, fn):
        self.fn = fn

    def _emit(self, msg: str, *args) -> None:
        self.fn(msg % args if args else msg)

    info = warning = debug = error = _emit


def as_logger(log, default: str = "babelflow"):
    """A logger from what a caller passed: a Logger as is, a callable such as `print` wrapped, None the
    `default` logger."""
    import logging

    if log is None:
        return logging.getLogger(default)
    if isinstance(log, logging.Logger) or not callable(log):
        return log
    return _CallableLog(log)
