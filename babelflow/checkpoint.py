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
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model
from torch import nn

from babelflow import failpoints
from babelflow.errors import IntegrityError
from babelflow.io import atomic_dir, fingerprint_of, sha256_file
from babelflow.models import save_weights

STEP_RE = re.compile(r"^step_(\d{8})$")
PACKAGE = Path(__file__).resolve().parent


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


def _step(path: Path) -> int:
    return int(STEP_RE.match(path.name).group(1))


def code_fingerprint(package: str | Path = PACKAGE) -> dict:
    """The code a training result depends on: every source file of the babelflow package, and torch.

    The whole package, not just the modules imported when training starts: some are imported later
    (decode for dev BLEU), and which ones are imported depends on the caller (a DVC stage process, a
    Prefect flow, a test), so the key would depend on who ran it. An edit elsewhere in the package
    only costs an interrupted run its resume, never a stale result. tasks/ is left out: its stage
    modules only wire paths to these functions.
    """
    package = Path(package)
    files = {f.relative_to(package).as_posix(): sha256_file(f) for f in sorted(package.rglob("*.py"))}
    return {"torch": torch.__version__, "files": files}


def run_fingerprint(clean_dir: str | Path, pairs, tokenizer, *params) -> str:
    """The key of a training run's checkpoints: everything its result depends on, i.e. the code, the
    clean files of `pairs`, the tokenizer (its model and placeholder limit) and `params`, the
    caller's result-changing params: operational knobs stay out, and so does the step count when
    nothing before the last step depends on it (`resumable` handles a changed one)."""
    data = {pair: {f.name: sha256_file(f) for f in sorted(Path(clean_dir, pair).glob("*.src"))
                   + sorted(Path(clean_dir, pair).glob("*.tgt"))} for pair in pairs}
    return fingerprint_of(code_fingerprint(), data, sha256_file(tokenizer.path), tokenizer.max_placeholders,
                          *params)


def resumable(ckpt_dir: str | Path, fingerprint: str, max_steps: int, log=None, *, resume: bool = True,
              whole_history: bool = False) -> list[Path]:
    """The checkpoints a run with `fingerprint` ending at step `max_steps` may resume from, oldest
    first. Every other checkpoint is deleted, with a log line, so none of them can be resumed,
    averaged, or outlive the run's own ones in `save_checkpoint`'s pruning.

    Checkpoints persist across DVC runs, so the folder may hold another run's state: of other code,
    data or params (another fingerprint: start over), or of a run with another step count, which the
    fingerprint leaves out so a longer run continues a shorter one. Of those, a state is kept only
    if this run passes through it too: at most `max_steps`, and not a run's last state whose end did
    work a run going on would not do there (`state["run_end"]`: a last log row, validation or
    checkpoint off their grid) unless this run ends there too. `whole_history`: the run also reads
    earlier checkpoints (weight averaging), which the longer run has pruned, so it starts over
    rather than resume after a newer checkpoint had to go. `resume=False` deletes them all.
    """
    found = checkpoints(ckpt_dir)
    if not found:
        return []
    if not resume:
        return _discard(found, f"resume is off: deleting the checkpoints in {ckpt_dir}; starting over", log)
    if _load_state(found[-1], probe=True).get("fingerprint", "") != fingerprint:
        return _discard(found, f"checkpoints in {ckpt_dir} belong to other params, data or code; starting over",
                        log)
    kept = [p for p in found if _step(p) <= max_steps]
    while kept and _step(kept[-1]) != max_steps and _load_state(kept[-1], probe=True).get("run_end", False):
        kept.pop()
    if len(kept) < len(found) and whole_history:
        kept = []
    if len(kept) < len(found):
        _discard(found[len(kept):], f"checkpoints {', '.join(p.name for p in found[len(kept):])} in {ckpt_dir} "
                 f"are not on the way of a {max_steps}-step run; " + (f"going on from {kept[-1].name}" if kept
                                                                     else "starting over"), log)
    return kept


def _discard(paths: list[Path], why: str, log) -> list[Path]:
    if log is not None:
        log(why)
    for old in paths:
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


def _load_state(path: Path, probe: bool = False) -> dict:
    # weights_only=True: a state file never unpickles arbitrary objects; one that tries (tampered)
    # or is corrupt is an IntegrityError naming the checkpoint. CPU first: RNG states must stay CPU
    # tensors; the optimizer moves its state to the params. A probe for a flag maps the tensors
    # instead of reading them (the optimizer state is twice the model).
    try:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True, mmap=probe)
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


def select_average(ckpt_dir: str | Path, model: nn.Module, candidates: list[int],
                   score: Callable[[nn.Module], float | None], log=None) -> dict:
    """Load into `model` the best of `candidates`, each k the average of the last k checkpoints (1: the
    last weights), by `score` (higher is better; a tie goes to the smaller k). One candidate is loaded
    without scoring; k = 1 alone leaves `model` as it is (the weights of the last step).
    Returns what train_state.json records: the k kept and, when chosen, each candidate's score."""
    kept = checkpoints(ckpt_dir)
    if candidates == [1]:
        return {}
    if len(candidates) == 1:
        average_weights(kept[-candidates[0]:], model)
        return {"averaged_checkpoints": len(kept[-candidates[0]:])}
    scores: dict[str, float | None] = {}
    for k in candidates:
        average_weights(kept[-k:], model)
        value = score(model)
        scores[str(k)] = None if value is None else round(value, 3)
        if log is not None:
            log(f"average of the last {k} checkpoints: dev BLEU {scores[str(k)]}")
    chosen = max(candidates, key=lambda k: (scores[str(k)] if scores[str(k)] is not None else float("-inf"), -k))
    average_weights(kept[-chosen:], model)
    return {"averaged_checkpoints": len(kept[-chosen:]), "selection": {"chosen": chosen, "dev_bleu": scores}}
