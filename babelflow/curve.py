"""The learning curve as DVC plot files: one CSV per series, each row a measured value.

`dvc plots show` draws an empty CSV cell as 0, so a value that was not measured at a step has no row
in its series: the train loss and learning rate are logged on the trainer's log grid, the dev loss
and dev BLEU only at validations (and dev BLEU not at all when `train.dev_bleu_sentences` is 0).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from babelflow.io import write_text

# file name -> the columns after `step` (dvc.yaml's plots name the same files and columns).
SERIES = {
    "learning_curve.csv": ("train_loss", "lr"),
    "dev_loss.csv": ("dev_loss",),
    "dev_bleu.csv": ("dev_bleu",),
}


def write_curve(plots_dir: Path, rows: list[dict]) -> None:
    """Split the trainer's rows ({"step", and what was measured then}) into the series files."""
    for name, columns in SERIES.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["step", *columns])
        writer.writerows([row["step"], *(row[c] for c in columns)] for row in rows
                         if all(row.get(c) is not None for c in columns))
        write_text(Path(plots_dir) / name, buf.getvalue())


def read_curve(plots_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """{column: (steps, values)} of every series file present in `plots_dir`."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for name, columns in SERIES.items():
        path = Path(plots_dir) / name
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for col in columns:
            out[col] = ([int(r["step"]) for r in rows], [float(r[col]) for r in rows])
    return out
