"""The training loop train, meta-training and adaptation share.

`Trainer.fit` is a short run of named calls (update, log, validate, checkpoint, early stop) over a
`TrainState` that saves and loads itself, as in Sockeye's `EarlyStoppingTrainer`. What one update
does is the caller's `Update`: a seq2seq AdamW step over token batches (train), a meta-learner's
outer step (meta), a fine-tuning step (adapt). Device, precision and DDP come from the `Runtime`.

A resumed run is the uninterrupted run: the checkpoint holds the state, the update's own state
(optimizer, data position, learner), every rank's RNG streams and its unlogged loss.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from babelflow.checkpoint import load_checkpoint, resumable, rng_state, save_checkpoint, set_rng_state
from babelflow.curve import write_curve
from babelflow.runtime import Runtime


def lr_at(step: int, cfg: Any) -> float:
    """Learning rate for the update numbered `step` (1-based) under `cfg` (lr, warmup_steps, schedule,
    max_steps; a TrainConfig): linear warm-up, then the schedule."""
    warm = cfg.warmup_steps
    if warm and step <= warm:
        return cfg.lr * step / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "inverse_sqrt":
        return cfg.lr * math.sqrt(max(warm, 1) / step)
    progress = (step - warm) / max(1, cfg.max_steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Stepped:
    """What one update did on this rank: its summed loss (a tensor: reading it would stall a GPU),
    the tokens it was summed over, and the tokens of the update on all ranks."""

    loss: Any
    tokens: float
    global_tokens: float


class Update(Protocol):
    model: nn.Module  # the plain module: the weights checkpointed, kept and saved
    counts_tokens: bool  # optional (default True): its Stepped tokens are tokens, so a rate means something

    def __call__(self, step: int) -> Stepped: ...

    def lr(self, step: int) -> float | None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class TrainState:
    """Everything the loop itself carries from step to step."""

    step: int = 0
    tokens_seen: int = 0
    curve: list[dict] = field(default_factory=list)
    best: float | None = None  # the best validation metric so far (lower is better)
    best_step: int | None = None
    bad_validations: int = 0
    stopped_early: bool = False
    # This rank's train loss since the last curve row: a tensor while training (no device sync).
    window_loss: Any = 0.0
    window_tokens: float = 0.0

    def state_dict(self) -> dict:
        """The state every rank shares; the loss window is a rank's own (see `rank_state`)."""
        state = {k: v for k, v in asdict(self).items() if k not in ("window_loss", "window_tokens", "best_step")}
        state["curve"] = [dict(r) for r in self.curve]
        if self.best_step is not None:
            state["best_step"] = self.best_step
        return state

    def rank_state(self) -> dict:
        return {"rng": rng_state(),
                "window": torch.tensor([float(self.window_loss), self.window_tokens], dtype=torch.float64)}

    def load_state_dict(self, state: dict, own: dict) -> None:
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        self.curve = [dict(r) for r in state["curve"]]
        self.best = state["best"]
        self.best_step = state.get("best_step")
        self.bad_validations = int(state["bad_validations"])
        # A run that already stopped early stays stopped: resuming must not train past that point.
        self.stopped_early = bool(state.get("stopped_early", False))
        set_rng_state(own["rng"])
        self.window_loss, self.window_tokens = (float(v) for v in own["window"])


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often the loop saves itself, and what run the checkpoints must belong to."""

    folder: Path
    every: int
    keep: int
    fingerprint: str
    resume: bool = True
    whole_history: bool = False  # averaging reads earlier checkpoints: never resume past a pruned one


@dataclass(frozen=True)
class Validation:
    """`measure()` -> (curve fields, metric; lower is better), run on rank 0 every `every` steps and
    after the last; `at_start` also before the first update. `keep_best` copies the best weights
    (adaptation's dev selection); `patience` > 0 stops after that many validations without a gain."""

    measure: Callable[[], tuple[dict, float]]
    every: int
    patience: int = 0
    at_start: bool = False
    keep_best: bool = False


class Trainer:
    def __init__(self, update: Update, rt: Runtime, max_steps: int, *, log_every: int,
                 validation: Validation | None = None, checkpointing: Checkpointing | None = None,
                 plots_dir: Path | None = None, log: Callable[[str], None] = print, progress: bool = True,
                 label: str = "step", loss_name: str = "train_loss"):
        self.update, self.rt, self.max_steps = update, rt, max_steps
        self.log_every, self.validation, self.ckpt = log_every, validation, checkpointing
        self.plots_dir, self.log, self.label, self.loss_name = plots_dir, log, label, loss_name
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.progress = progress and rt.is_main

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> TrainState:
        """Train to `max_steps` (or early stopping). `stop_at` ends after that step as an interruption
        would, leaving only checkpoints (how the exact-resume tests stop a run)."""
        from babelflow.progress import meter

        self.resume()
        st = self.state
        self.start_step, self.tokens_at_resume = st.step, st.tokens_seen
        # A bar on a terminal, a plain line now and then in a log or under Prefect; other ranks print nothing.
        self.bar = meter(self.max_steps, self.label, initial=st.step, enabled=self.progress)
        self.t_window = time.monotonic()
        self.update.model.train()
        if self.validation is not None and self.validation.at_start and st.step == 0:
            self.validate({"step": 0})
        while st.step < self.max_steps and not st.stopped_early:
            self.step()
            row = self.validate(self.log_row())
            self.record(row)
            self.checkpoint()
            if st.stopped_early:
                self.log(f"early stopping at {self.label} {st.step}: {self.validation.patience} validations "
                         "without improvement")
            if stop_at is not None and st.step >= stop_at:
                break
        self.bar.close()
        close = getattr(self.update, "close", None)
        if close is not None:  # stop the data loader's thread now, not whenever the collector runs
            close()
        return st

    # -- its named calls ------------------------------------------------------------------------
    def resume(self) -> None:
        if self.ckpt is None:
            return
        # Rank 0 sorts the checkpoints first (it alone deletes those that are not this run's).
        with self.rt.main_first():
            found = resumable(self.ckpt.folder, self.ckpt.fingerprint, self.max_steps, self.log,
                              resume=self.ckpt.resume, whole_history=self.ckpt.whole_history)
        if not found:
            return
        saved = load_checkpoint(found[-1], self.update.model, self.rt.device)
        self.update.load_state_dict(saved)
        # Each rank draws its own dropout masks and sums its own loss: it resumes its own state.
        own = saved if self.rt.rank == 0 else saved["ranks"][self.rt.rank - 1]
        self.state.load_state_dict(saved, own)
        if self.rt.is_main:
            self.log(f"resumed from {found[-1]} at {self.label} {self.state.step}")

    def step(self) -> None:
        st = self.state
        st.step += 1
        done = self.update(st.step)
        st.tokens_seen += int(done.global_tokens)
        st.window_loss += done.loss
        st.window_tokens += done.tokens
        self.bar.update(1)

    def log_row(self) -> dict | None:
        """A curve row of the train loss since the last one, every `log_every` steps and at the end."""
        st = self.state
        if st.step % self.log_every and st.step != self.max_steps:
            return None
        # Under DDP: the loss of the steps' global batches, not of this rank's share.
        loss, tokens = self.rt.sum(st.window_loss, st.window_tokens)
        now = time.monotonic()
        row = {"step": st.step, self.loss_name: round(loss / max(tokens, 1), 5)}
        postfix = {"loss": f"{row[self.loss_name]:.3f}"}
        lr = self.update.lr(st.step)
        if lr is not None:
            row["lr"] = float(f"{lr:.6g}")
            postfix["lr"] = f"{lr:.2e}"
        if getattr(self.update, "counts_tokens", True):
            postfix["tok/s"] = f"{tokens / max(now - self.t_window, 1e-9):.0f}"
        self.bar.set_postfix(**postfix)
        st.window_loss = st.window_tokens = 0.0
        self.t_window = now
        return row

    def validate(self, row: dict | None) -> dict | None:
        """Measure on dev every `validation.every` steps and at the end; track the best; decide early
        stopping on rank 0 for every rank."""
        v, st = self.validation, self.state
        if v is None or (st.step % v.every and st.step != self.max_steps):
            return row
        row = row or {"step": st.step}
        if self.rt.is_main:
            fields, metric = v.measure()
            self.update.model.train()  # whatever mode the measure left: dropout stays on for the updates
            row.update(fields)
            self.log(f"{self.label} {st.step}: " + " ".join(f"{k} {val}" for k, val in fields.items()))
            if st.best is None or metric < st.best:  # the first of equal scores wins
                st.best, st.best_step, st.bad_validations = metric, st.step, 0
                if v.keep_best:
                    self.best_weights = {k: t.detach().clone() for k, t in self.update.model.state_dict().items()}
            else:
                st.bad_validations += 1
        st.bad_validations = self.rt.from_main(st.bad_validations)
        if v.patience and st.bad_validations >= v.patience:
            st.stopped_early = True
        return row

    def record(self, row: dict | None) -> None:
        if row is not None:
            self.state.curve.append(row)
            if self.rt.is_main and self.plots_dir is not None:
                write_curve(self.plots_dir, self.state.curve)

    def checkpoint(self) -> None:
        c, st = self.ckpt, self.state
        if c is None or not (st.step % c.every == 0 or st.step == self.max_steps or st.stopped_early):
            return
        ranks = self.rt.gather(st.rank_state())
        if self.rt.is_main:
            v = self.validation
            save_checkpoint(c.folder, st.step, self.update.model, {
                **st.state_dict(), **self.update.state_dict(), **ranks[0],
                **({"ranks": ranks[1:]} if self.rt.distributed else {}),
                "fingerprint": c.fingerprint,
                # Ending here added a log row, validation or checkpoint that a longer run does not make
                # at this step: this state serves only a run of this length (see resumable).
                "run_end": st.step == self.max_steps and not (
                    st.step % self.log_every == 0 and st.step % c.every == 0
                    and (v is None or st.step % v.every == 0)),
            }, c.keep)
        self.rt.barrier()

    def last(self, key: str) -> Any:
        """The last value of a curve column (None when never measured)."""
        return next((r[key] for r in reversed(self.state.curve) if r.get(key) is not None), None)
