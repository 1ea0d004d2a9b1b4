"""Meta-training of a translation model over language pairs, with exact checkpoint/resume.

The loop (`meta_loop`) knows nothing of translation: it takes a model, a `MetaLearner` and a
function step -> tasks, so it is tested on toy modules. `meta_train` wires it to the pipeline:
examples per pair, the train-stage init (or a random one) and the saved model.
"""
from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from babelflow.checkpoint import (load_checkpoint, resumable, rng_state, run_fingerprint, save_checkpoint,
                                  set_rng_state)
from babelflow.config import Params
from babelflow.errors import InputError
from babelflow.io import sha256_file
from babelflow.meta.algorithms import MetaLearner

_log = logging.getLogger("babelflow.meta")


class _CallableLog:
    """Lets a plain `print`-like callable stand in for a logger (the trainer's convention)."""

    def __init__(self, fn: Callable[[str], None]):
        self.fn = fn

    def _emit(self, msg: str, *args: Any) -> None:
        self.fn(msg % args if args else msg)

    info = warning = debug = error = _emit


def as_logger(log: Any) -> Any:
    if log is None:
        return _log
    if isinstance(log, logging.Logger) or not callable(log):
        return log
    return _CallableLog(log)


def seq2seq_loss(label_smoothing: float = 0.0) -> Callable[[nn.Module, dict[str, Tensor], Any], Tensor]:
    """Per-token cross-entropy of a `Seq2Seq` on a `Batch`, evaluated with the given parameters."""
    from babelflow.loss import token_cross_entropy

    def loss_fn(model: nn.Module, params: dict[str, Tensor], batch: Any) -> Tensor:
        logits = functional_call(model, params, (batch.src, batch.tgt_in))
        return token_cross_entropy(logits, batch.tgt_out, label_smoothing) / max(1, batch.ntokens)

    return loss_fn


def resolve_device(device: str, threads: int = 0) -> torch.device:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("params.yaml", "train.device is cuda but no CUDA device is available")
        return torch.device("cuda")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    # CPU runs promise bit-for-bit reproducibility, like the trainer.
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device("cpu")


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def meta_loop(
    model: nn.Module,
    learner: MetaLearner,
    tasks_at: Callable[[int], Sequence[tuple[Any, Any]]],
    steps: int,
    ckpt_dir: str | Path | None,
    checkpoint_every: int,
    resume: bool = True,
    keep: int = 2,
    log: logging.Logger | None = None,
    log_every: int = 10,
    fingerprint: str = "",
) -> dict:
    """Run meta-steps 1..`steps`; `tasks_at(step)` must be a pure function of the step.

    Resuming restores the weights, the outer optimizer and the RNG states (dropout), so the
    continued run is identical to an uninterrupted one. Checkpoints written under another
    `fingerprint` (other code, data or params), or not on the way to step `steps`, are deleted
    instead of resumed: they belong to a different run (see `resumable`).
    """
    log = as_logger(log)
    start, history = 0, []
    if ckpt_dir is not None:
        found = resumable(ckpt_dir, fingerprint, steps, log=lambda m: log.warning("meta: %s", m), resume=resume)
        if found:
            device = next(model.parameters()).device
            state = load_checkpoint(found[-1], model, device)
            learner.load_state_dict(state["learner"])
            set_rng_state(state["rng"])
            start = int(state["step"])
            history = [{"step": int(s), "query_loss": q} for s, q in state["history"].tolist()]
            log.info("meta: resumed from %s (step %d)", found[-1], start)
    model.train()
    t0 = time.monotonic()
    for step in range(start + 1, steps + 1):
        tasks = tasks_at(step)
        m = learner.step(tasks)
        history.append({"step": step, "query_loss": m["query_loss"]})
        if step % log_every == 0 or step == steps:
            log.info("meta step %d/%d: inner loss %.4f -> %.4f, query loss %.4f", step, steps,
                     m["inner_loss_first"], m["inner_loss_last"], m["query_loss"])
        if ckpt_dir is not None and (step % checkpoint_every == 0 or step == steps):
            state = {
                "step": step,
                "fingerprint": fingerprint,
                "learner": learner.state_dict(),
                "rng": rng_state(),
                # A tensor (not a list of dicts) keeps the state loadable with weights_only=True.
                "history": torch.tensor([[h["step"], h["query_loss"]] for h in history], dtype=torch.float64),
                # A checkpoint off the grid, made only because the run ends here: a longer run has
                # none at this step (see resumable).
                "run_end": step == steps and step % checkpoint_every != 0,
            }
            save_checkpoint(ckpt_dir, step, model, state, keep)
    return {"steps": steps, "resumed_from": start, "wall_s": round(time.monotonic() - t0, 2),
            "history": history}


def meta_train(
    params: Params,
    clean_dir: str | Path,
    tokenizer: Any,
    init_dir: str | Path | None,
    out_dir: str | Path,
    ckpt_dir: str | Path | None,
    log: logging.Logger | None = None,
    encoded_dir: str | Path | None = None,
) -> dict:
    """Meta-train on the pairs of `languages.targets` (held-out pairs are never seen) and save the
    meta-learned init to `out_dir` (model.safetensors + model.json). Returns the stage metrics."""
    from babelflow.data import encoded_for, load_encoded
    from babelflow.meta.tasks import TaskSampler
    from babelflow.models import build_model, load_model, save_model

    log = as_logger(log)
    cfg = params.meta
    device = resolve_device(params.train.device, params.train.threads)
    seed_all(params.seed)
    if cfg.init == "train":
        if init_dir is None or not (Path(init_dir) / "model.json").is_file():
            raise InputError(init_dir or "data/train", "meta.init is 'train' but the train model is missing")
        model = load_model(init_dir, device)
    else:
        model = build_model(params.model, tokenizer.vocab_size)
    model = model.to(device)
    pairs = [params.languages.pair(lang) for lang in params.languages.targets]
    encoded = encoded_for(clean_dir, tokenizer, pairs, encoded_dir)
    examples = {pair: load_encoded(encoded, pair, "train", params.train.max_len) for pair in pairs}
    empty = [p for p, exs in examples.items() if not exs]
    if len(empty) == len(examples):
        raise InputError(clean_dir, "no training examples in any target pair for meta-learning")
    sampler = TaskSampler(examples, cfg.support_tokens, cfg.query_tokens, cfg.temperature, params.seed)
    learner = MetaLearner(
        model, seq2seq_loss(params.train.label_smoothing), cfg.algorithm, cfg.inner_steps, cfg.inner_lr,
        cfg.inner_optimizer, cfg.outer_lr, clip_norm=params.train.clip_norm, device=device,
        bf16=params.train.bf16,
    )

    def tasks_at(step: int):
        return [(s.to(device), q.to(device)) for _, s, q in sampler.sample(step, cfg.tasks_per_step)]

    # What determines the run: resuming a checkpoint made under other settings would mix two runs.
    # meta_steps stays out (nothing before the last step depends on it: a longer run continues a
    # shorter one), like the operational knobs.
    fingerprint = run_fingerprint(
        clean_dir, list(examples), tokenizer, params.seed, params.languages.model_dump(), params.model.model_dump(),
        cfg.model_dump(exclude={"enabled", "meta_steps", "checkpoint_every", "resume"}),
        params.train.model_dump(include={"label_smoothing", "max_len", "clip_norm", "bf16"}),
        sha256_file(Path(init_dir) / "model.safetensors") if cfg.init == "train" else None)
    result = meta_loop(model, learner, tasks_at, cfg.meta_steps, ckpt_dir, cfg.checkpoint_every,
                       resume=cfg.resume, log=log, fingerprint=fingerprint)
    save_model(model.cpu(), out_dir)
    hist = result.pop("history")
    return {
        "enabled": True,
        "algorithm": cfg.algorithm,
        "init": cfg.init,
        "device": str(device),
        "pairs": {p: len(v) for p, v in examples.items()},
        "task_probabilities": {k: round(v, 6) for k, v in sampler.probs.items()},
        "query_loss_first": hist[0]["query_loss"] if hist else None,
        "query_loss_last": hist[-1]["query_loss"] if hist else None,
        **result,
    }
