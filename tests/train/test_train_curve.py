"""The learning curve shows only what was measured (issue 17): train loss and learning rate on a grid
fine enough to see the warm-up, dev loss and dev BLEU as series of their own at the validation steps,
and `dvc plots show` (the real dvc.yaml) draws loss and BLEU on separate axes with no empty points,
which Vega would draw as zeros."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from babelflow.config import parse_params
from babelflow.train import train_model
from babelflow.trainer import lr_at
from tests.train.conftest import TINY_TRANSFORMER

torch.set_num_threads(1)

DVC = Path(sys.executable).parent / "dvc"


def _params(**train):
    # A real (tiny) Transformer: dev BLEU needs the decoder interface the trainer tests' toy model lacks.
    base = dict(max_tokens=256, max_steps=7, lr=3e-3, warmup_steps=2, checkpoint_every=2, validate_every=3,
                dev_bleu_sentences=4, threads=1, max_len=40, device="cpu")
    return parse_params({
        "seed": 5,
        **TINY_TRANSFORMER,
        "train": {**base, **train},
    })


def _train(params, clean_dir, tokenizer, root: Path) -> Path:
    train_model(params, clean_dir, tokenizer, root / "out", root / "ckpt", root / "plots", log=lambda _: None)
    return root / "plots"


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_each_series_holds_only_measured_values(clean_dir, tokenizer, tmp_path):
    params = _params()
    plots = _train(params, clean_dir, tokenizer, tmp_path)
    train = _rows(plots / "learning_curve.csv")
    dev_loss, dev_bleu = _rows(plots / "dev_loss.csv"), _rows(plots / "dev_bleu.csv")
    assert list(train[0]) == ["step", "train_loss", "lr"]
    assert list(dev_loss[0]) == ["step", "dev_loss"] and list(dev_bleu[0]) == ["step", "dev_bleu"]
    for rows in (train, dev_loss, dev_bleu):
        assert all(float(v) == float(v) for row in rows for v in row.values())  # no empty cells
    # Validations every 3 steps and at the end of the 7-step run; nothing in between.
    assert [int(r["step"]) for r in dev_loss] == [int(r["step"]) for r in dev_bleu] == [3, 6, 7]
    assert [int(r["step"]) for r in train][-1] == 7
    for row in train:
        assert float(row["lr"]) == pytest.approx(lr_at(int(row["step"]), params.train), rel=1e-5)


def test_unmeasured_dev_bleu_is_an_empty_series_not_zeros(clean_dir, tokenizer, tmp_path):
    plots = _train(_params(dev_bleu_sentences=0), clean_dir, tokenizer, tmp_path)
    assert (plots / "dev_bleu.csv").read_text(encoding="utf-8") == "step,dev_bleu\n"
    assert len(_rows(plots / "dev_loss.csv")) == 3


def test_the_curve_shows_the_warm_up(clean_dir, tokenizer, tmp_path):
    # The default run warms up over 100 of 400 steps and validates every 200: rows every 100 steps
    # (the old grid) showed the warm-up as one point.
    params = _params(max_steps=24, warmup_steps=20, validate_every=24, checkpoint_every=24, dev_bleu_sentences=0)
    rows = _rows(_train(params, clean_dir, tokenizer, tmp_path) / "learning_curve.csv")
    warm = [float(r["lr"]) for r in rows if int(r["step"]) <= 20]
    assert len(warm) >= 10 and warm == sorted(warm) and warm[0] < warm[-1] / 5


def test_dvc_plots_draw_measured_points_only_and_bleu_apart_from_loss(clean_dir, tokenizer, tmp_path, repo_root):
    plots = _train(_params(), clean_dir, tokenizer, tmp_path / "run")
    proj = tmp_path / "proj"
    shutil.copytree(plots, proj / "data" / "plots" / "train")
    (proj / "data" / "plots" / "adapt").mkdir(parents=True)
    (proj / "data" / "plots" / "adapt" / "curve.csv").write_text("k,scratch,transfer,meta\n10,0.1,1.0,1.2\n")
    shutil.copy(repo_root / "dvc.yaml", proj / "dvc.yaml")
    env = {"DVC_NO_ANALYTICS": "1", "PATH": f"{DVC.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([str(DVC), "init", "--no-scm", "-q"], cwd=proj, env=env, check=True)
    done = subprocess.run([str(DVC), "plots", "show", "--json"], cwd=proj, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert not shown.get("errors"), shown["errors"]
    fields_by_plot: dict[str, set[str]] = {}
    for name, items in shown["data"].items():
        for item in items:
            # One y: its own column; several: DVC stacks them into one column, naming each point's source.
            y = item["content"]["layer"][0]["encoding"]["y"]["field"]
            for point in item["content"]["data"]["values"]:
                source = point.get("field") or point.get("filename::field", y)
                fields_by_plot.setdefault(name, set()).add(source.split("::")[-1])
                float(point[y])  # "" would be drawn as 0
    assert set().union(*fields_by_plot.values()) >= {"train_loss", "dev_loss", "dev_bleu", "lr"}
    for name, fields in fields_by_plot.items():
        assert not ({"train_loss", "dev_loss"} & fields and "dev_bleu" in fields), (name, fields)
