"""Resuming a train checkpoint gives exactly what a checkpoint-free run gives (issue 16): after a
change of trainer code, of max_steps either way, or with resume off, the output is bit for bit that
of a fresh run with the new code and params."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from babelflow.checkpoint import checkpoints
from tests.train.conftest import TINY_TRANSFORMER

torch.set_num_threads(1)


def _assert_same_run(got: Path, want: Path, *, checkpoint_files: bool = False) -> None:
    a, b = load_file(str(got / "out" / "model.safetensors")), load_file(str(want / "out" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("out/train_state.json", "plots/learning_curve.csv", "plots/dev_loss.csv", "plots/dev_bleu.csv"):
        assert (got / name).read_text() == (want / name).read_text(), name
    if checkpoint_files:  # DVC hashes the checkpoint folder too
        mine, theirs = checkpoints(got / "ckpt"), checkpoints(want / "ckpt")
        assert [p.name for p in mine] == [p.name for p in theirs]
        for p, q in zip(mine, theirs):
            for f in ("model.safetensors", "state.pt"):
                assert (p / f).read_bytes() == (q / f).read_bytes(), (p.name, f)


def _resumed_at(logs: list[str]) -> int | None:
    steps = [int(m.group(1)) for line in logs if (m := re.match(r"resumed from \S+ at step (\d+)$", line))]
    return steps[-1] if steps else None


@pytest.mark.parametrize("lower, resumed_at", [(6, 6), (5, None)])
def test_lowered_max_steps_gives_the_shorter_runs_model(run, make_params, tmp_path, lower, resumed_at):
    # 9 steps keep step_6 and step_9. A 6-step run goes on from step_6 (a mid-run state that a
    # 6-step run also has); a 5-step run would need step_3, which is gone: it starts over.
    run(make_params(max_steps=9), tmp_path / "a")
    logs: list[str] = []
    run(make_params(max_steps=lower), tmp_path / "a", logs)
    run(make_params(max_steps=lower), tmp_path / "fresh")
    _assert_same_run(tmp_path / "a", tmp_path / "fresh")
    assert _resumed_at(logs) == resumed_at
    assert all(int(p.name[5:]) <= lower for p in checkpoints(tmp_path / "a" / "ckpt"))


def test_lowered_max_steps_never_averages_or_keeps_the_longer_runs_checkpoints(run, make_params, tmp_path):
    run(make_params(max_steps=9, average_last=2), tmp_path / "a")
    run(make_params(max_steps=5, average_last=2), tmp_path / "a")
    run(make_params(max_steps=5, average_last=2), tmp_path / "fresh")
    _assert_same_run(tmp_path / "a", tmp_path / "fresh", checkpoint_files=True)


@pytest.mark.parametrize("first", [6, 5])
def test_raised_max_steps_continues_exactly(run, make_params, tmp_path, first):
    # step 6 is on every grid (log, validation, checkpoint): the finished 6-step run goes on from it.
    # A 5-step run's last state holds an end-of-run validation a 9-step run does not make at step 5,
    # so the 9-step run goes on from step_3 instead.
    run(make_params(max_steps=first), tmp_path / "a")
    logs: list[str] = []
    run(make_params(max_steps=9), tmp_path / "a", logs)
    run(make_params(max_steps=9), tmp_path / "fresh")
    _assert_same_run(tmp_path / "a", tmp_path / "fresh", checkpoint_files=True)
    assert _resumed_at(logs) == (6 if first == 6 else 3)


def test_a_run_with_resume_off_ignores_and_clears_old_checkpoints(run, make_params, tmp_path):
    run(make_params(max_steps=9, average_last=2), tmp_path / "a")
    run(make_params(max_steps=5, average_last=2, resume=False), tmp_path / "a")
    run(make_params(max_steps=5, average_last=2), tmp_path / "fresh")
    _assert_same_run(tmp_path / "a", tmp_path / "fresh", checkpoint_files=True)


def test_averaging_keys_the_checkpoint_grid(run, make_params, tmp_path):
    # Averaging the last two checkpoints averages steps 3 and 6, or 4 and 6: the grid is a result param.
    run(make_params(average_last=2, checkpoint_every=3), tmp_path / "a")
    run(make_params(average_last=2, checkpoint_every=2), tmp_path / "a")
    run(make_params(average_last=2, checkpoint_every=2), tmp_path / "fresh")
    _assert_same_run(tmp_path / "a", tmp_path / "fresh", checkpoint_files=True)


def test_interrupted_between_log_rows_resumes_the_curve_exactly(run, make_params, tmp_path):
    # Checkpoints every 3 steps, log rows every 2 (1/20 of the 40-step warm-up and validation interval):
    # the state at step 3 holds a half-filled loss window.
    params = make_params(checkpoint_every=3, validate_every=40, warmup_steps=40)
    run(params, tmp_path / "full")
    run(params, tmp_path / "split", stop_at=3)
    run(params, tmp_path / "split")
    _assert_same_run(tmp_path / "split", tmp_path / "full", checkpoint_files=True)


# ------------------------------------------------------------------------- a change of the code itself
DRIVER = """
import json, sys
from pathlib import Path

cfg = json.loads(sys.argv[1])
import babelflow
assert Path(babelflow.__file__).parent == Path(cfg["pkg"]), babelflow.__file__
from babelflow.config import parse_params
from babelflow.meta.train import meta_train
from babelflow.tokenizer import Tokenizer
from babelflow.train import train_model

params, tok = parse_params(cfg["params"]), Tokenizer(cfg["spm"])
for root in map(Path, cfg["roots"]):
    train_model(params, cfg["clean"], tok, root / "train", root / "ckpt_train", root / "plots", log=print)
    meta_train(params, cfg["clean"], tok, None, root / "meta", root / "ckpt_meta", log=print)
"""

TINY = {
    "seed": 3,
    **TINY_TRANSFORMER,
    "train": {"max_tokens": 96, "max_steps": 3, "warmup_steps": 1, "checkpoint_every": 3, "validate_every": 3,
              "dev_bleu_sentences": 0, "threads": 1, "device": "cpu", "max_len": 40, "label_smoothing": 0.1},
    "meta": {"init": "scratch", "algorithm": "fomaml", "meta_steps": 2, "tasks_per_step": 2, "inner_steps": 1,
             "support_tokens": 96, "query_tokens": 96, "checkpoint_every": 2},
}


def test_a_change_of_trainer_code_is_not_resumed(tmp_path, clean_dir, tokenizer, repo_root):
    """Edit loss.py in a copy of the package: train and meta rerun in that copy must not ship the
    finished checkpoints of the old code, but what the new code computes from scratch."""
    pkg = tmp_path / "pkg"
    shutil.copytree(repo_root / "babelflow", pkg / "babelflow", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "drive.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(pkg), "OMP_NUM_THREADS": "1"}

    def drive(*roots: str) -> None:
        cfg = {"pkg": str(pkg / "babelflow"), "params": TINY, "spm": str(tokenizer.path), "clean": str(clean_dir),
               "roots": [str(tmp_path / r) for r in roots]}
        done = subprocess.run([sys.executable, str(tmp_path / "drive.py"), json.dumps(cfg)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    drive("a")
    old = {s: (tmp_path / "a" / s / "model.safetensors").read_bytes() for s in ("train", "meta")}
    loss = pkg / "babelflow" / "loss.py"
    text = loss.read_text()
    assert "label_smoothing=label_smoothing," in text
    loss.write_text(text.replace("label_smoothing=label_smoothing,", "label_smoothing=label_smoothing / 2,"))
    drive("a", "fresh")
    for stage in ("train", "meta"):
        got = (tmp_path / "a" / stage / "model.safetensors").read_bytes()
        assert got == (tmp_path / "fresh" / stage / "model.safetensors").read_bytes(), stage
        assert got != old[stage], f"{stage}: the edit should change the result"
