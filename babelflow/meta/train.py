"""Meta-training of a translation model over language pairs, with exact checkpoint/resume.

The loop (`meta_loop`) knows nothing of translation: it takes a model, a `MetaLearner` and a
function step -> tasks, so it is tested on toy modules. `meta_train` wires it to the pipeline:
examples per pair, the train-stage init (or a random one) and the saved model.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import Tensor, nn
from torch.func import functional_call

from babelflow.checkpoint import run_fingerprint
from babelflow.config import Params
from babelflow.errors import InputError
from babelflow.io import sha256_file
from babelflow.meta.algorithms import MetaLearner
from babelflow.progress import as_logger
from babelflow.runtime import Runtime, start
from babelflow.trainer import Checkpointing, Stepped, Trainer

_log = logging.getLogger("babelflow.meta")


def seq2seq_loss(label_smoothing: float = 0.0) -> Callable[[nn.Module, dict[str, Tensor], Any], Tensor]:
    """Per-token cross-entropy of a `Seq2Seq` on a `Batch`, evaluated with the given parameters."""
    from babelflow.loss import token_cross_entropy

    def loss_fn(model: nn.Module, params: dict[str, Tensor], batch: Any) -> Tensor:
        logits = functional_call(model, params, (batch.src, batch.tgt_in))
        return token_cross_entropy(logits, batch.tgt_out, label_smoothing) / max(1, batch.ntokens)

    return loss_fn


class MetaUpdate:
    """One outer step of `learner` on the tasks of the step, as the shared Trainer's update: its
    "loss" is the tasks' mean query loss (one unit a step)."""

    counts_tokens = False  # no tokens-per-second rate in the progress line

    def __init__(self, learner: MetaLearner, tasks_at: Callable[[int], Sequence[tuple[Any, Any]]], steps: int,
                 log, log_every: int):
        self.learner, self.model, self.tasks_at = learner, learner.model, tasks_at
        self.steps, self.log, self.log_every = steps, log, log_every

    def __call__(self, step: int) -> Stepped:
        m = self.learner.step(self.tasks_at(step))
        if step % self.log_every == 0 or step == self.steps:
            self.log.info("meta step %d/%d: inner loss %.4f -> %.4f, query loss %.4f", step, self.steps,
                          m["inner_loss_first"], m["inner_loss_last"], m["query_loss"])
        return Stepped(m["query_loss"], 1, 1)

    def lr(self, step: int) -> None:
        return None

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])


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
    rt: Runtime | None = None,
) -> dict:
    """Run meta-steps 1..`steps`; `tasks_at(step)` must be a pure function of the step.

    The loop is the shared Trainer's: resuming restores the weights, the outer optimizer and the RNG
    states (dropout), so the continued run is identical to an uninterrupted one. Checkpoints written
    under another `fingerprint` (other code, data or params), or not on the way to step `steps`, are
    deleted instead of resumed: they belong to a different run (see `resumable`).
    """
    log = as_logger(log, "babelflow.meta")
    rt = rt or Runtime(next(model.parameters()).device)
    ckpt = None if ckpt_dir is None else Checkpointing(Path(ckpt_dir), checkpoint_every, keep, fingerprint, resume)
    # A curve row every step: the query loss of each meta-step is the history the stage reports.
    trainer = Trainer(MetaUpdate(learner, tasks_at, steps, log, log_every), rt, steps, log_every=1,
                      checkpointing=ckpt, log=lambda m: log.info("meta: %s", m), label="meta step",
                      loss_name="query_loss")
    t0 = time.monotonic()
    st = trainer.fit()
    return {"steps": steps, "resumed_from": trainer.start_step, "wall_s": round(time.monotonic() - t0, 2),
            "history": [{"step": r["step"], "query_loss": r["query_loss"]} for r in st.curve]}


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

    log = as_logger(log, "babelflow.meta")
    cfg = params.meta
    rt = start(params.train.device, params.train.threads, bf16=params.train.bf16,
               bf16_cpu=params.train.bf16_cpu, seed=params.seed)
    device = rt.device
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
        cfg.inner_optimizer, cfg.outer_lr, clip_norm=params.train.clip_norm, autocast=rt.autocast,
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
                       resume=cfg.resume, log=log, fingerprint=fingerprint, rt=rt)
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
