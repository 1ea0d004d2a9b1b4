"""Training checkpoints: weights as safetensors, everything else needed to continue exactly
(optimizer, step, RNG states, data position) in a state file loaded with `weights_only=True`,
so opening a checkpoint never unpickles arbitrary objects.

Layout: `<ckpt_dir>/step_00001234/{model.safetensors,state.pt}`, each folder written atomically.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model
from torch import nn

from babelflow import failpoints
from babelflow.errors import IntegrityError
from babelflow.io import atomic_dir, fingerprint_of  # noqa: F401  (re-exported for train and meta)
from babelflow.models import save_weights

STEP_RE = re.compile(r"^step_(\d{8})$")


def rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [
        p for p in ckpt_dir.iterdir()
        if STEP_RE.match(p.name) and (p / "model.safetensors").is_file() and (p / "state.pt").is_file()
    ]
    return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))


def _canonical(obj):
    """The same values as `obj`, with every string interned.

    Pickle writes an object seen twice as a back-reference, so its bytes depend on which equal
    strings are the *same object*. After a resume, keys loaded from the old state are distinct
    objects from the code's literals; interning them all makes the bytes of a resumed run's
    checkpoint equal to an uninterrupted run's (DVC hashes the checkpoint folder).
    """
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    return obj


def resumable(ckpt_dir: str | Path, fingerprint: str, log=None) -> list[Path]:
    """The checkpoints a run with `fingerprint` may resume from, oldest first.

    Checkpoints persist across DVC runs, so after a change of params or data the folder holds
    another run's state; resuming it would mix two runs (or fail on a shape mismatch). Those are
    deleted, with a log line, and the run starts over.
    """
    found = checkpoints(ckpt_dir)
    if not found:
        return []
    probe = _load_state(found[-1])
    if probe.get("fingerprint", "") == fingerprint:
        return found
    if log is not None:
        log(f"checkpoints in {ckpt_dir} belong to other params or data; starting over")
    for old in found:
        shutil.rmtree(old, ignore_errors=True)
    return []


def save_checkpoint(ckpt_dir: str | Path, step: int, model: nn.Module, state: dict, keep: int) -> Path:
    target = Path(ckpt_dir) / f"step_{step:08d}"
    with atomic_dir(target) as tmp:
        save_weights(model, tmp / "model.safetensors")
        with open(tmp / "state.pt", "wb", buffering=0) as fh:  # unbuffered: no write left for close()
            try:
                torch.save(_canonical(state), fh)
            except RuntimeError as exc:
                # torch.save to a path reports a full disk as "unexpected pos"; through a Python file
                # the failed write's OSError is kept as the context, so it can name the file.
                if not isinstance(exc.__context__, OSError) or exc.__context__.errno is None:
                    raise
                err = exc.__context__.errno
                raise OSError(err, os.strerror(err), str(tmp / "state.pt")) from exc
    failpoints.reach(f"checkpoint_saved:{Path(ckpt_dir).name}")
    for old in checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: str | Path, model: nn.Module, device: str | torch.device = "cpu") -> dict:
    path = Path(path)
    try:
        load_model(model, str(path / "model.safetensors"), strict=True, device=str(device))
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        raise IntegrityError(f"{path}: unreadable checkpoint ({_first_line(exc)}); delete it to start over") from None
    return _load_state(path)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _load_state(path: Path) -> dict:
    # weights_only=True: a state file never unpickles arbitrary objects; one that tries (tampered)
    # or is corrupt is an IntegrityError naming the checkpoint. CPU first: RNG states must stay CPU
    # tensors; the optimizer moves its state to the params.
    try:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise IntegrityError(f"{path}: unreadable checkpoint state ({_first_line(exc)}); "
                             "delete it to start over") from None
    if not isinstance(state, dict):
        raise IntegrityError(f"{path}: checkpoint state is not a dict; delete it to start over")
    return state


def average_weights(paths: list[Path], model: nn.Module) -> None:
    """Load into `model` the element-wise mean of the checkpoints' weights."""
    total: dict[str, torch.Tensor] = {}
    for p in paths:
        for name, tensor in load_file(str(p / "model.safetensors")).items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    own = model.state_dict()
    avg = {name: (t / len(paths)).to(own[name].dtype) for name, t in total.items()}
    # Names missing here are aliases of tied weights that save_model wrote once.
    model.load_state_dict(avg, strict=False)
