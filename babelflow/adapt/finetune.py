"""Fine-tuning one init on K examples of a held-out pair: the adapt experiment's unit of work.

The loop is the shared `Trainer`'s; the update is a plain AdamW step on token batches of the K
examples, and dev selection (`adapt.select_every`) is the Trainer's validation with the best weights
kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from babelflow.config import Params
from babelflow.data import Examples, generator
from babelflow.errors import InputError
from babelflow.runtime import Runtime, seed_all
from babelflow.trainer import Stepped, Trainer, Validation


def pick_k(examples: Examples, k: int, seed: int) -> Examples:
    """K examples drawn with `seed`; for one seed a smaller K is a prefix of a larger one."""
    return examples[generator("adapt", seed).permutation(len(examples))[:k]]


@dataclass
class Finetuned:
    """What `finetune` did: the model is left at its last step; `best_state` holds the weights with the
    lowest `dev_score` (None when nothing was selected: no `dev_score` or `select_every` = 0)."""

    last_loss: float
    best_step: int | None = None
    best_score: float | None = None
    best_state: dict[str, torch.Tensor] | None = None


class FinetuneUpdate:
    """One AdamW step (torch's defaults but `lr`) on the next token batch of `examples`, cycling epochs."""

    def __init__(self, model: nn.Module, examples: Sequence[Any], lr: float, max_tokens: int, seed: int,
                 label_smoothing: float, clip_norm: float, rt: Runtime):
        from babelflow.data import TokenBatcher

        self.model, self.rt, self.label_smoothing, self.clip_norm = model, rt, label_smoothing, clip_norm
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr)
        self.batches = iter(TokenBatcher(examples, max_tokens, shuffle=True, seed=seed, infinite=True))
        self.last_loss = float("nan")

    def __call__(self, step: int) -> Stepped:
        from babelflow.loss import token_cross_entropy

        batch = next(self.batches).to(self.rt.device)
        with self.rt.autocast():
            logits = self.model(batch.src, batch.tgt_in)
        loss = token_cross_entropy(logits, batch.tgt_out, self.label_smoothing) / max(1, batch.ntokens)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.opt.step()
        self.last_loss = float(loss.detach())
        return Stepped(self.last_loss, 1, batch.ntokens)

    def lr(self, step: int) -> None:
        return None

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()

    def state_dict(self) -> dict:  # fine-tuning runs are short and never checkpointed
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def finetune(
    model: nn.Module,
    examples: Sequence[Any],
    steps: int,
    lr: float,
    max_tokens: int,
    seed: int,
    label_smoothing: float = 0.0,
    clip_norm: float = 1.0,
    rt: Runtime | None = None,
    dev_score: Callable[[nn.Module], float] | None = None,
    select_every: int = 0,
) -> Finetuned:
    """`steps` AdamW updates on token batches of `examples` (cycling epochs).

    With `dev_score` (lower is better, e.g. dev loss or minus dev BLEU) and `select_every` > 0 the
    model is scored before the first update, every `select_every` steps and after the last; the
    best-scoring weights are copied into the result. The first of equal scores wins, so a flat dev
    curve keeps the earlier weights. Scoring draws no random numbers: the updates are the same
    with or without it.
    """
    rt = rt or Runtime(torch.device("cpu"))
    seed_all(seed)  # the dropout masks of this run, whatever ran before it
    model.to(rt.device).train()
    update = FinetuneUpdate(model, examples, lr, max_tokens, seed, label_smoothing, clip_norm, rt)
    validation = None
    if dev_score is not None and select_every > 0:
        def measure() -> tuple[dict, float]:
            # Rounded before comparing, so the choice is the one the reported scores show.
            score = round(float(dev_score(model)), 5)
            return {"dev": score}, score

        validation = Validation(measure, select_every, at_start=True, keep_best=True)
    trainer = Trainer(update, rt, steps, log_every=max(1, steps), validation=validation, log=lambda m: None,
                      progress=False)
    st = trainer.fit()
    model.eval()
    if validation is None:
        return Finetuned(last_loss=update.last_loss)
    return Finetuned(update.last_loss, st.best_step, st.best, trainer.best_weights)


def dev_scorer(params: Params, pair: str, lang: str, clean_dir: str | Path, tokenizer: Any,
               rt: Runtime, encoded_dir: str | Path | None = None) -> Callable[[nn.Module], float] | None:
    """What `adapt.select_metric` asks for on the held-out pair's dev split, lower is better:
    the per-token loss, or minus the greedy BLEU; None when `adapt.select_every` is 0."""
    from babelflow.data import TokenBatcher, encoded_for, load_encoded, read_parallel
    from babelflow.validation import dev_bleu, dev_loss

    cfg = params.adapt
    if not cfg.select_every:
        return None
    src = Path(clean_dir) / pair / "dev.src"
    limit = cfg.select_sentences or None
    if not src.is_file():  # named as the clean text: the encoded split is missing with it
        raise InputError(src, "file not found: adapt.select_every needs the dev split of the held-out pair")
    if cfg.select_metric == "dev_bleu":
        pairs = read_parallel(src, src.with_suffix(".tgt"))[:limit]
        if not pairs:
            raise InputError(src, "adapt.select_every needs a non-empty dev split of the held-out pair")
        return lambda model: -(dev_bleu(model, tokenizer, {lang: pairs}, len(pairs)) or 0.0)
    examples = load_encoded(encoded_for(clean_dir, tokenizer, [pair], encoded_dir), pair, "dev", params.train.max_len,
                            limit)
    if not examples:
        raise InputError(src, "adapt.select_every needs a non-empty dev split of the held-out pair")
    batcher = TokenBatcher(examples, cfg.max_tokens, shuffle=False, seed=0)
    return lambda model: dev_loss(model, batcher, rt.autocast)


def dev_reading(select_metric: str, ranked: float) -> float:
    """A `dev_scorer` score (lower is better) as its metric reads: BLEU back up, loss as is."""
    return -ranked if select_metric == "dev_bleu" else ranked


def finetune_init(params: Params, source: str | Path | None, tokenizer: Any, pool: Sequence[Any], k: int,
                  seed: int, rt: Runtime,
                  dev_score: Callable[[nn.Module], float] | None = None) -> tuple[nn.Module, Finetuned]:
    """One adaptation run: the init saved in `source` (None: a random init of `params.model`)
    fine-tuned on the seed's K examples of `pool` with the `adapt` budget of `params`."""
    from babelflow.models import build_model, load_model

    cfg = params.adapt
    seed_all(seed)
    model = build_model(params.model, tokenizer.vocab_size) if source is None else load_model(source, rt.device)
    tuned = finetune(
        model, pick_k(pool, k, seed), cfg.steps, cfg.lr, cfg.max_tokens, seed,
        params.train.label_smoothing, params.train.clip_norm, rt,
        dev_score=dev_score, select_every=cfg.select_every,
    )
    return model, tuned


