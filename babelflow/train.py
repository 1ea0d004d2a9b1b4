"""The trainer: token batches, AdamW with warm-up, gradient accumulation, checkpoints that resume
exactly, validation with early stopping, learning-curve file; CPU, one GPU or DDP under torchrun.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from babelflow.checkpoint import (average_weights, checkpoints, load_checkpoint, resumable, rng_state, run_fingerprint,
                                  save_checkpoint, set_rng_state)
from babelflow.config import Params, TrainConfig
from babelflow.curve import write_curve
from babelflow.data import TokenBatcher, encoded_for, load_encoded, read_parallel
from babelflow.errors import InputError
from babelflow.io import write_json
from babelflow.loss import token_cross_entropy


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for the update numbered `step` (1-based): linear warm-up, then the schedule."""
    warm = cfg.warmup_steps
    if warm and step <= warm:
        return cfg.lr * step / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "inverse_sqrt":
        return cfg.lr * math.sqrt(max(warm, 1) / step)
    progress = (step - warm) / max(1, cfg.max_steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _setup_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise InputError("params.yaml", "train.device is cuda but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", local_rank)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    # CPU promises bit-for-bit reproducibility: same params, same weights hash.
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device("cpu")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def dev_loss(model: nn.Module, batcher: TokenBatcher, device, autocast) -> float:
    """Per-token NLL (no label smoothing) over the whole dev set."""
    was_training = model.training
    model.eval()
    total = tokens = 0.0
    batcher.load_state_dict({"epoch": 0, "index": 0})
    for batch in batcher:
        batch = batch.to(device)
        with autocast():
            logits = model(batch.src, batch.tgt_in)
        total += float(token_cross_entropy(logits, batch.tgt_out, 0.0))
        tokens += batch.ntokens
    model.train(was_training)
    return total / max(tokens, 1)


def dev_bleu(model: nn.Module, tokenizer, dev_text: dict[str, list[tuple[str, str]]], n: int) -> float | None:
    """Mean greedy BLEU over the target languages on the first sentences of each dev split."""
    try:
        import sacrebleu

        from babelflow.decode import decoding_workers, translate
    except ImportError:
        return None
    if n <= 0 or not dev_text:
        return None
    per_lang = max(1, n // len(dev_text))
    scores = []
    # translate() switches to eval mode and back itself.
    with decoding_workers(next(model.parameters()).device) as workers:
        for lang, pairs in sorted(dev_text.items()):
            pairs = pairs[:per_lang]
            if not pairs:
                continue
            hyps = translate(model, tokenizer, [s for s, _ in pairs], lang, beam_size=1, workers=workers)
            scores.append(sacrebleu.corpus_bleu(hyps, [[t for _, t in pairs]]).score)
    return sum(scores) / len(scores) if scores else None


# Knobs that change how a run is operated, not what it computes: a checkpoint made under other values
# of these is still this run's and may be resumed.
_OPERATIONAL = {"resume", "checkpoint_every", "keep_checkpoints", "threads", "device", "compile"}


def _fingerprint(params: Params, clean_dir: Path, tokenizer, world: int) -> str:
    # Averaging reads the last checkpoints, so which steps have one is part of the result then.
    operational = _OPERATIONAL - ({"checkpoint_every", "keep_checkpoints"} if params.train.average_last > 1 else set())
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

    The examples come from `encoded_dir` (the encode stage's arrays; see `data.encoded_for`), the dev
    text for BLEU from `clean_dir`.
    `build`/`save` replace `babelflow.models.build_model`/`save_model` (tests use tiny models).
    `stop_at` ends the run after that step as an interruption would (nothing final is written),
    which is how the exact-resume test stops a run.
    """
    cfg = params.train
    out_dir, ckpt_dir, plots_dir = Path(out_dir), Path(ckpt_dir), Path(plots_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _setup_device(cfg, local_rank)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0

    langs = params.languages
    pairs = {lang: langs.pair(lang) for lang in langs.targets}
    encoded = encoded_for(clean_dir, tokenizer, list(pairs.values()), encoded_dir)
    train_ex = {lang: load_encoded(encoded, pair, "train", cfg.max_len) for lang, pair in pairs.items()}
    if not any(train_ex.values()):
        raise InputError(clean_dir, "no training pairs within train.max_len for " + ", ".join(pairs.values()))
    dev_ex = {}
    dev_text = {}
    for lang, pair in pairs.items():
        folder = Path(clean_dir) / pair
        if (folder / "dev.src").is_file():
            dev_ex[lang] = load_encoded(encoded, pair, "dev", cfg.max_len)
            dev_text[lang] = read_parallel(folder / "dev.src", folder / "dev.tgt")
    dev_all = [dev_ex[lang] for lang in sorted(dev_ex) if len(dev_ex[lang])]  # one pool

    _seed_all(params.seed)
    model = (build or _default_build)(params, tokenizer.vocab_size).to(device)
    save = save or _default_save
    use_cuda = device.type == "cuda"
    optim = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
        **({"fused": True} if use_cuda else {"foreach": False}),
    )
    batcher = TokenBatcher(train_ex, cfg.max_tokens, shuffle=True, seed=params.seed, temperature=cfg.temperature,
                           infinite=True, rank=rank, world_size=world, pin_memory=device.type == "cuda")
    dev_batcher = TokenBatcher(dev_all, cfg.max_tokens, shuffle=False, seed=0) if dev_all else None

    step = 0
    tokens_seen = 0
    window_loss = window_tokens = 0.0  # the train loss since the last curve row
    curve: list[dict] = []
    best: float | None = None
    bad_validations = 0
    stopped_early = False
    fingerprint = _fingerprint(params, clean_dir, tokenizer, world)
    # Rank 0 sorts the checkpoints first (it alone deletes those that are not this run's); the other
    # ranks look once it is done, so no rank reads a folder another is deleting.
    if distributed and not is_main:
        dist.barrier()
    found = resumable(ckpt_dir, fingerprint, cfg.max_steps, log, resume=cfg.resume,
                      whole_history=cfg.average_last > 1)
    if distributed and is_main:
        dist.barrier()
    if found:
        state = load_checkpoint(found[-1], model, device)
        optim.load_state_dict(state["optimizer"])
        batcher.load_state_dict(state["batcher"])
        # Each rank draws its own dropout masks and sums its own loss: it resumes its own state.
        own = state if rank == 0 else state["ranks"][rank - 1]
        set_rng_state(own["rng"])
        step, tokens_seen = int(state["step"]), int(state["tokens_seen"])
        curve = [dict(r) for r in state["curve"]]
        best = state["best"]
        bad_validations = int(state["bad_validations"])
        # A run that already stopped early stays stopped; resuming must not train past that point.
        stopped_early = bool(state.get("stopped_early", False))
        window_loss, window_tokens = (float(v) for v in own["window"])
        if is_main:
            log(f"resumed from {found[-1]} at step {step}")

    train_model_ = model
    if cfg.compile:  # on CPU too (inductor needs a C++ compiler there)
        train_model_ = torch.compile(model)
    if distributed:
        train_model_ = nn.parallel.DistributedDataParallel(
            train_model_, device_ids=[local_rank] if use_cuda else None
        )
    # bf16 on CPU only when asked: the default CPU run stays fp32, bit for bit.
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if (cfg.bf16 if use_cuda else cfg.bf16_cpu) else contextlib.nullcontext
    )

    from babelflow.progress import meter

    # A bar on a terminal, a plain line now and then in a log or under Prefect; other ranks print nothing.
    bar = meter(cfg.max_steps, "step", initial=step, enabled=is_main)
    # Curve rows: 20 per warm-up and per validation interval, so the warm-up shows. Not derived from
    # max_steps, so a longer run logs the same rows (exact resume), and logging only reads values.
    log_every = max(1, min(cfg.validate_every, cfg.warmup_steps or cfg.validate_every) // 20)
    t_start = time.monotonic()
    t_window = t_start
    last_dev_loss = last_dev_bleu = None
    tokens_at_start = tokens_seen
    it = iter(batcher)
    model.train()
    while step < cfg.max_steps and not stopped_early:
        micro = [next(it) for _ in range(cfg.accumulate)]
        ntok = sum(b.ntokens for b in micro)
        if distributed:
            t = torch.tensor([ntok], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            ntok_global = float(t.item())
        else:
            ntok_global = float(ntok)
        step_loss = 0.0
        for i, batch in enumerate(micro):
            batch = batch.to(device, non_blocking=True)
            sync = (not distributed) or i == len(micro) - 1
            ctx = contextlib.nullcontext() if sync else train_model_.no_sync()
            with ctx:
                with autocast():
                    logits = train_model_(batch.src, batch.tgt_in)
                loss = token_cross_entropy(logits, batch.tgt_out, cfg.label_smoothing)
                # DDP averages gradients over ranks; scaling by world turns that into a global sum.
                (loss * (world / ntok_global)).backward()
            # Kept as a tensor: a float() here would stall the GPU on every micro-batch.
            step_loss = step_loss + loss.detach()
        if cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        step += 1
        for group in optim.param_groups:
            group["lr"] = lr_at(step, cfg)
        optim.step()
        optim.zero_grad(set_to_none=True)
        tokens_seen += int(ntok_global)
        window_loss += step_loss
        window_tokens += ntok
        bar.update(1)

        row = None
        if step % log_every == 0 or step == cfg.max_steps:
            if distributed:  # the loss of the step's global batches, not of this rank's share
                t = torch.tensor([float(window_loss), window_tokens], dtype=torch.float64, device=device)
                dist.all_reduce(t)
                window_loss, window_tokens = float(t[0]), float(t[1])
            now = time.monotonic()
            row = {"step": step, "train_loss": round(float(window_loss) / max(window_tokens, 1), 5),
                   "lr": float(f"{lr_at(step, cfg):.6g}")}
            bar.set_postfix(**{"loss": f"{row['train_loss']:.3f}", "lr": f"{lr_at(step, cfg):.2e}",
                               "tok/s": f"{window_tokens / max(now - t_window, 1e-9):.0f}"})
            window_loss = window_tokens = 0.0
            t_window = now
        if dev_batcher is not None and (step % cfg.validate_every == 0 or step == cfg.max_steps):
            row = row or {"step": step}
            if is_main:
                last_dev_loss = round(dev_loss(model, dev_batcher, device, autocast), 5)
                last_dev_bleu = dev_bleu(model, tokenizer, dev_text, cfg.dev_bleu_sentences)
                row["dev_loss"] = last_dev_loss
                row["dev_bleu"] = None if last_dev_bleu is None else round(last_dev_bleu, 3)
                log(f"step {step}: dev_loss {last_dev_loss} dev_bleu {row['dev_bleu']}")
                metric = last_dev_loss if cfg.early_stopping_metric == "dev_loss" else -(last_dev_bleu or 0.0)
                if best is None or metric < best:
                    best, bad_validations = metric, 0
                else:
                    bad_validations += 1
            if distributed:
                flag = torch.tensor([bad_validations], device=device)
                dist.broadcast(flag, 0)
                bad_validations = int(flag.item())
            if cfg.early_stopping_patience and bad_validations >= cfg.early_stopping_patience:
                stopped_early = True
        if row is not None:
            curve.append(row)
            if is_main:
                write_curve(plots_dir, curve)
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stopped_early:
            own = {"rng": rng_state(), "window": torch.tensor([float(window_loss), window_tokens], dtype=torch.float64)}
            ranks = [None] * world if is_main else None
            if distributed:
                dist.gather_object(own, ranks, dst=0)
            if is_main:
                save_checkpoint(ckpt_dir, step, model, {
                    "step": step,
                    "tokens_seen": tokens_seen,
                    "optimizer": optim.state_dict(),
                    "batcher": batcher.state_dict(),
                    "rng": own["rng"],
                    "curve": curve,
                    "best": best,
                    "bad_validations": bad_validations,
                    "stopped_early": stopped_early,
                    "window": own["window"],
                    **({"ranks": ranks[1:]} if distributed else {}),
                    "fingerprint": fingerprint,
                    # Ending here added a log row, validation or checkpoint that a longer run does not
                    # make at this step: this state serves only a run of this length (see resumable).
                    "run_end": step == cfg.max_steps and not (
                        step % log_every == 0 and step % cfg.checkpoint_every == 0
                        and (dev_batcher is None or step % cfg.validate_every == 0)),
                }, cfg.keep_checkpoints)
            if distributed:
                dist.barrier()
        if stopped_early:
            log(f"early stopping at step {step}: {cfg.early_stopping_patience} validations without improvement")
            break
        if stop_at is not None and step >= stop_at:
            bar.close()
            return {"steps": step, "interrupted": True}
    bar.close()

    if last_dev_loss is None:  # resumed after the last validation: report the recorded one
        last_dev = next((r for r in reversed(curve) if r.get("dev_loss") is not None), {})
        last_dev_loss, last_dev_bleu = last_dev.get("dev_loss"), last_dev.get("dev_bleu")
    # Everything below lands in hashed outputs (data/train, DVC lock): no clock readings in it, so
    # identical runs give identical bytes. Timings go only into the returned metrics.
    metrics = {
        "steps": step,
        "tokens_seen": tokens_seen,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_loss": next((r["train_loss"] for r in reversed(curve) if "train_loss" in r), None),
        "dev_loss": last_dev_loss,
        "dev_bleu": None if last_dev_bleu is None else round(last_dev_bleu, 3),
        "stopped_early": stopped_early,
        "device": str(device),
        "world_size": world,
    }
    if is_main:
        write_curve(plots_dir, curve)
        if cfg.average_last > 1:
            last = checkpoints(ckpt_dir)[-cfg.average_last :]
            average_weights(last, model)
            metrics["averaged_checkpoints"] = len(last)
        save(model, out_dir)
        write_json(out_dir / "train_state.json", metrics)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    wall = time.monotonic() - t_start
    trained = tokens_seen - tokens_at_start
    return {**metrics, "wall_time_s": round(wall, 2), "tokens_per_s": round(trained / max(wall, 1e-9), 1)}
