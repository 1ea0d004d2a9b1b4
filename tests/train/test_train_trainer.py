from __future__ import annotations

import csv

import pytest
import torch
from safetensors.torch import load_file

from babelflow.checkpoint import checkpoints
from babelflow.io import sha256_file
from babelflow.trainer import lr_at

torch.set_num_threads(1)


def _weights(root):
    return load_file(str(root / "out" / "model.safetensors"))


def test_stop_and_resume_equals_uninterrupted(run, make_params, tmp_path):
    params = make_params(accumulate=2)
    run(params, tmp_path / "full")
    stopped = run(params, tmp_path / "split", stop_at=3)
    assert stopped["interrupted"] and not (tmp_path / "split" / "out").exists()
    assert [p.name for p in checkpoints(tmp_path / "split" / "ckpt")] == ["step_00000003"]
    logs: list[str] = []
    resumed = run(params, tmp_path / "split", logs)
    assert any(line.startswith("resumed from") and line.endswith("at step 3") for line in logs)
    assert resumed["steps"] == 6
    full, split = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert full.keys() == split.keys()
    for name in full:
        assert torch.equal(full[name], split[name]), name
    curve_full = (tmp_path / "full" / "plots" / "learning_curve.csv").read_text()
    assert curve_full == (tmp_path / "split" / "plots" / "learning_curve.csv").read_text()
    # DVC hashes the checkpoint folder: the resumed run's files must be byte-identical too.
    for a, b in zip(checkpoints(tmp_path / "full" / "ckpt"), checkpoints(tmp_path / "split" / "ckpt"), strict=True):
        assert a.name == b.name
        for f in ("state.pt", "model.safetensors"):
            assert (a / f).read_bytes() == (b / f).read_bytes(), (a.name, f)


def test_checkpoints_of_other_params_are_not_resumed(run, make_params, tmp_path):
    run(make_params(), tmp_path, stop_at=3)
    logs: list[str] = []
    changed = run(make_params(lr=0.002), tmp_path, logs)
    assert not any(line.startswith("resumed from") for line in logs)
    assert any("belong to other params" in line for line in logs)
    fresh = run(make_params(lr=0.002), tmp_path / "fresh")
    assert changed["steps"] == fresh["steps"] == 6
    got, want = _weights(tmp_path), _weights(tmp_path / "fresh")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_cpu_runs_are_deterministic_and_learn(run, make_params, tmp_path):
    params = make_params(max_steps=12, checkpoint_every=4, keep_checkpoints=2, validate_every=4)
    m1 = run(params, tmp_path / "a")
    m2 = run(params, tmp_path / "b")
    assert sha256_file(tmp_path / "a" / "out" / "model.safetensors") == sha256_file(tmp_path / "b" / "out" / "model.safetensors")
    assert m1["tokens_seen"] == m2["tokens_seen"] > 0
    assert [p.name for p in checkpoints(tmp_path / "a" / "ckpt")] == ["step_00000008", "step_00000012"]
    rows = list(csv.DictReader(open(tmp_path / "a" / "plots" / "dev_loss.csv")))
    dev = [float(r["dev_loss"]) for r in rows]
    assert len(dev) == 3 and dev[-1] < dev[0]
    assert (tmp_path / "a" / "out" / "train_state.json").is_file()


def test_averaging_and_early_stopping(run, make_params, tmp_path):
    params = make_params(max_steps=9, average_last=2, lr=1e-9, warmup_steps=0, early_stopping_patience=1,
                         schedule="constant")
    metrics = run(params, tmp_path)
    # With a negligible learning rate the dev loss cannot improve: stop at the second validation.
    assert metrics["stopped_early"] and metrics["steps"] == 6 and metrics["averaged_checkpoints"] == 2
    again = run(params, tmp_path)  # resuming a stopped run does not train on
    assert again["steps"] == 6 and again["stopped_early"]


def test_schedules(make_params):
    p = make_params(warmup_steps=4, lr=1.0, max_steps=20).train
    assert lr_at(2, p) == 0.5 and lr_at(4, p) == 1.0 and abs(lr_at(16, p) - 0.5) < 1e-12
    c = make_params(warmup_steps=0, lr=1.0, max_steps=10, schedule="cosine").train
    assert abs(lr_at(10, c)) < 1e-12 and lr_at(5, c) == 0.5


def test_learning_curve_logs_loss_lr_and_dev_metrics(run, make_params, tmp_path):
    params = make_params(max_steps=6, validate_every=3)
    run(params, tmp_path)
    import csv

    with open(tmp_path / "plots" / "learning_curve.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) == {"step", "train_loss", "lr"}
    for row in rows:
        assert float(row["lr"]) == pytest.approx(lr_at(int(row["step"]), params.train), rel=1e-5)
    with open(tmp_path / "plots" / "dev_loss.csv", encoding="utf-8") as fh:
        assert [int(row["step"]) for row in csv.DictReader(fh)] == [3, 6]


def test_progress_bar_leaves_tqdm_environment_in_charge(run, make_params, tmp_path, monkeypatch, capsys):
    # tqdm reads TQDM_DISABLE, TQDM_MININTERVAL, ... once, at import, as defaults that an explicit
    # argument overrides: the main rank must not pass `disable` (or any of them) itself.
    import tqdm

    seen = []

    class Recording(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the bar is for a terminal (babelflow.progress)
    run(make_params(max_steps=3), tmp_path)
    assert len(seen) == 1 and not {"disable", "mininterval", "miniters"} & set(seen[0])
    assert "step" in capsys.readouterr().err  # the bar is drawn, with its unit


def test_progress_in_a_log_is_plain_lines(run, make_params, tmp_path, monkeypatch, capsys):
    # stderr is not a terminal here (a log file, a pipe, Prefect): no carriage-return refreshes, one
    # plain line per BABELFLOW_PROGRESS_EVERY_S (0: every step).
    monkeypatch.setenv("BABELFLOW_PROGRESS_EVERY_S", "0")
    run(make_params(max_steps=4, validate_every=2, checkpoint_every=2), tmp_path)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"], err
    assert "loss" in lines[-1] and "lr" in lines[-1] and "tok/s" in lines[-1]
