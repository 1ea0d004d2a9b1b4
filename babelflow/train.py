"""Stage logic of train: the multilingual model over `languages.targets` of the clean data, trained by
the shared `Trainer` with a seq2seq update (token batches, AdamW with warm-up, gradient accumulation,
DDP under torchrun), validated on dev, and saved as its last weights, an average of the last
checkpoints, or the candidate that scores best on dev.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from babelflow.checkpoint import run_fingerprint, select_average
from babelflow.curve import write_curve
from babelflow.config import Params, TrainConfig
from babelflow.data import TokenBatcher, encoded_for, load_encoded, read_parallel
from babelflow.errors import InputError
from babelflow.io import write_json
from babelflow.loss import token_cross_entropy
from babelflow.runtime import Runtime, seed_all, start
from babelflow.trainer import Checkpointing, Stepped, Trainer, Validation, lr_at
from babelflow.validation import dev_bleu, dev_loss


class Seq2SeqUpdate:
    """One optimizer update of a seq2seq model from `accumulate` token batches of this rank. Losses
    are summed over tokens and divided by the update's tokens on all ranks, so an update is the same
    whether its batches ran on one rank in turn or on several at once."""

    def __init__(self, model: nn.Module, rt: Runtime, batcher: TokenBatcher, cfg: TrainConfig):
        self.model, self.rt, self.batcher, self.cfg = model, rt, batcher, cfg
        self.optim = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
            **({"fused": True} if rt.device.type == "cuda" else {"foreach": False}))
        self.wrapped: nn.Module | None = None
        self.batches = None

    def lr(self, step: int) -> float:
        return lr_at(step, self.cfg)

    def __call__(self, step: int) -> Stepped:
        if self.wrapped is None:  # after a resume loaded the weights and the data position
            self.wrapped = self.rt.wrap(self.model, self.cfg.compile)
            self.batches = iter(self.batcher)
        micro = [next(self.batches) for _ in range(self.cfg.accumulate)]
        ntok = sum(b.ntokens for b in micro)
        (ntok_global,) = self.rt.sum(ntok)
        loss_sum = 0.0
        for i, batch in enumerate(micro):
            batch = batch.to(self.rt.device, non_blocking=True)
            with self.rt.no_sync(self.wrapped, sync=i == len(micro) - 1):
                with self.rt.autocast():
                    logits = self.wrapped(batch.src, batch.tgt_in)
                loss = token_cross_entropy(logits, batch.tgt_out, self.cfg.label_smoothing)
                # DDP averages gradients over ranks; scaling by world turns that into a global sum.
                (loss * (self.rt.world / ntok_global)).backward()
            loss_sum = loss_sum + loss.detach()  # a tensor: float() would stall a GPU every micro-batch
        if self.cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        for group in self.optim.param_groups:
            group["lr"] = self.lr(step)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        return Stepped(loss_sum, ntok, ntok_global)

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()

    def state_dict(self) -> dict:
        return {"optimizer": self.optim.state_dict(), "batcher": self.batcher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optim.load_state_dict(state["optimizer"])
        self.batcher.load_state_dict(state["batcher"])


# Knobs that change how a run is operated, not what it computes: a checkpoint made under other values
# of these is still this run's and may be resumed.
_OPERATIONAL = {"resume", "checkpoint_every", "keep_checkpoints", "threads", "device", "compile"}


def _fingerprint(params: Params, clean_dir: Path, tokenizer, world: int) -> str:
    # Averaging reads the last checkpoints, so which steps have one is part of the result then.
    operational = _OPERATIONAL - ({"checkpoint_every", "keep_checkpoints"}
                                  if max(params.train.average_candidates) > 1 else set())
    train = {k: v for k, v in params.train.model_dump().items() if k not in operational}
    if train["schedule"] != "cosine":
        train.pop("max_steps")  # extending a run continues it; only cosine's curve depends on the end
    pairs = [params.languages.pair(lang) for lang in params.languages.targets]
    # The number of ranks changes the batch of a step and which random streams exist (one a rank).
    return run_fingerprint(clean_dir, pairs, tokenizer, params.seed, params.languages.model_dump(),
                           params.model.model_dump(), train, world)


def _default_save(model: nn.Module, out_dir: Path) -> None:
    from babelflow.models import save_model

    save_model(model, out_dir)


def _default_build(params: Params, vocab_size: int) -> nn.Module:
    from babelflow.models import build_model

    return build_model(params.model, vocab_size)


def train_model(
    params: Params,
    clean_dir,
    tokenizer,
    out_dir,
    ckpt_dir,
    plots_dir,
    log: Callable[[str], None] = print,
    *,
    build: Callable[[Params, int], nn.Module] | None = None,
    save: Callable[[nn.Module, Path], None] | None = None,
    stop_at: int | None = None,
    encoded_dir: str | Path | None = None,
) -> dict:
    """Train multilingually on `languages.targets` of `clean_dir`; returns the stage metrics.

    `build`/`save` replace `babelflow.models.build_model`/`save_model` (tests use tiny models).
    `stop_at` ends the run after that step as an interruption would (nothing final is written),
    which is how the exact-resume test stops a run.
    The examples come from `encoded_dir` (the encode stage's arrays; see `data.encoded_for`), the dev
    text for BLEU from `clean_dir`.
    """

    cfg = params.train
    out_dir, ckpt_dir, plots_dir = Path(out_dir), Path(ckpt_dir), Path(plots_dir)
    rt = start(cfg.device, cfg.threads, bf16=cfg.bf16, bf16_cpu=cfg.bf16_cpu, distributed=True)
    langs = params.languages
    pairs = {lang: langs.pair(lang) for lang in langs.targets}
    encoded = encoded_for(clean_dir, tokenizer, list(pairs.values()), encoded_dir)
    train_ex = {lang: load_encoded(encoded, pair, "train", cfg.max_len) for lang, pair in pairs.items()}
    if not any(train_ex.values()):
        raise InputError(clean_dir, "no training pairs within train.max_len for " + ", ".join(pairs.values()))
    dev_ex, dev_text = {}, {}
    for lang, pair in pairs.items():
        folder = Path(clean_dir) / pair
        if (folder / "dev.src").is_file():
            dev_ex[lang] = load_encoded(encoded, pair, "dev", cfg.max_len)
            dev_text[lang] = read_parallel(folder / "dev.src", folder / "dev.tgt")
    dev_all = [dev_ex[lang] for lang in sorted(dev_ex) if len(dev_ex[lang])]  # one pool
    if len(cfg.average_candidates) > 1 and not dev_text:
        raise InputError(clean_dir, "train.average_last lists candidates to choose on dev BLEU, but no pair has a dev split")

    seed_all(params.seed)
    model = (build or _default_build)(params, tokenizer.vocab_size).to(rt.device)
    batcher = TokenBatcher(train_ex, cfg.max_tokens, shuffle=True, seed=params.seed, temperature=cfg.temperature,
                           infinite=True, rank=rt.rank, world_size=rt.world, pin_memory=rt.device.type == "cuda")
    validation = None
    if dev_all:
        dev_batcher = TokenBatcher(dev_all, cfg.max_tokens, shuffle=False, seed=0)

        def measure() -> tuple[dict, float]:
            loss = round(dev_loss(model, dev_batcher, rt.autocast), 5)
            bleu = dev_bleu(model, tokenizer, dev_text, cfg.dev_bleu_sentences)
            fields = {"dev_loss": loss, "dev_bleu": None if bleu is None else round(bleu, 3)}
            return fields, loss if cfg.early_stopping_metric == "dev_loss" else -(bleu or 0.0)

        validation = Validation(measure, cfg.validate_every, cfg.early_stopping_patience)
    trainer = Trainer(
        Seq2SeqUpdate(model, rt, batcher, cfg), rt, cfg.max_steps,
        # Curve rows: 20 per warm-up and per validation interval, so the warm-up shows. Not derived
        # from max_steps, so a longer run logs the same rows (exact resume).
        log_every=max(1, min(cfg.validate_every, cfg.warmup_steps or cfg.validate_every) // 20),
        validation=validation,
        checkpointing=Checkpointing(ckpt_dir, cfg.checkpoint_every, cfg.keep_checkpoints,
                                    _fingerprint(params, clean_dir, tokenizer, rt.world), cfg.resume,
                                    whole_history=max(cfg.average_candidates) > 1),
        plots_dir=plots_dir, log=log)
    t_start = time.monotonic()
    st = trainer.fit(stop_at=stop_at)
    if stop_at is not None and st.step >= stop_at and not st.stopped_early:
        return {"steps": st.step, "interrupted": True}

    last_dev = next((r for r in reversed(st.curve) if r.get("dev_loss") is not None), {})
    # Everything below lands in hashed outputs (data/train, DVC lock): no clock readings in it, so
    # identical runs give identical bytes. Timings go only into the returned metrics.
    metrics = {
        "steps": st.step,
        "tokens_seen": st.tokens_seen,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_loss": trainer.last("train_loss"),
        "dev_loss": last_dev.get("dev_loss"),
        "dev_bleu": last_dev.get("dev_bleu"),
        "stopped_early": st.stopped_early,
        "device": str(rt.device),
        "world_size": rt.world,
    }
    if rt.is_main:
        write_curve(plots_dir, st.curve)
        # The last weights, an average of the last checkpoints, or the candidate best on dev (never test).
        metrics.update(select_average(ckpt_dir, model, cfg.average_candidates, lambda m: dev_bleu(
            m, tokenizer, dev_text, (cfg.select_sentences or 10**9) * len(dev_text)), log))  # n: over all targets
        (save or _default_save)(model, out_dir)
        write_json(out_dir / "train_state.json", metrics)
    rt.close()
    wall = time.monotonic() - t_start
    trained = st.tokens_seen - trainer.tokens_at_resume
    return {**metrics, "wall_time_s": round(wall, 2), "tokens_per_s": round(trained / max(wall, 1e-9), 1)}
