"""Tampered or corrupt checkpoints: a clear IntegrityError naming the checkpoint, and never code
execution (state files load with weights_only=True, weights are safetensors)."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from babelflow.checkpoint import load_checkpoint, resumable, save_checkpoint
from babelflow.errors import IntegrityError


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.fixture
def ckpt(tmp_path):
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "ckpt", 5, model, {"step": 5, "fingerprint": "f"}, keep=2)
    return model, path


def test_malicious_pickle_in_state_is_refused_not_run(ckpt, tmp_path, monkeypatch):
    model, path = ckpt
    monkeypatch.chdir(tmp_path)
    (path / "state.pt").write_bytes(pickle.dumps({"step": _Exploit()}))
    with pytest.raises(IntegrityError, match="step_00000005"):
        load_checkpoint(path, model)
    with pytest.raises(IntegrityError, match="step_00000005"):
        resumable(path.parent, "f", 5)
    assert not (tmp_path / "pwned").exists()


def test_truncated_weights_and_garbage_state(ckpt):
    model, path = ckpt
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="unreadable checkpoint"):
        load_checkpoint(path, model)
    (path / "state.pt").write_bytes(b"\x00garbage")
    with pytest.raises(IntegrityError, match="step_00000005"):
        resumable(path.parent, "f", 5)


def test_weights_of_another_shape_are_refused(ckpt):
    _, path = ckpt
    with pytest.raises(IntegrityError, match="unreadable checkpoint"):
        load_checkpoint(path, nn.Linear(4, 2))


def test_intact_checkpoint_round_trips(ckpt):
    model, path = ckpt
    fresh = nn.Linear(3, 2)
    state = load_checkpoint(path, fresh)
    assert state["step"] == 5 and torch.equal(fresh.weight, model.weight)
