"""Measuring a model on held-out data: dev loss, dev BLEU, and translate-and-score with the evaluate
settings. One implementation, used by train (validation, early stopping, checkpoint selection),
adapt (dev selection, test scores), evaluate and the benchmarks, so a number means the same thing
wherever it is printed.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from babelflow.loss import token_cross_entropy


@torch.no_grad()
def dev_loss(model: nn.Module, batcher, autocast: Callable[[], contextlib.AbstractContextManager]
             = contextlib.nullcontext) -> float:
    """Per-token NLL (no label smoothing) over every batch of `batcher` (a non-shuffling TokenBatcher)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
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


@dataclass(frozen=True)
class Decoding:
    """How sentences are decoded for a score: the evaluate stage's settings, or greedy for a quick
    dev BLEU during training."""

    beam_size: int = 1
    length_penalty: float = 1.0
    max_length_ratio: float = 2.0
    batch_sentences: int = 64
    max_run: int = 0  # babelflow.decode.ban_runs; 0: off

    @classmethod
    def of(cls, evaluate: Any) -> "Decoding":
        """The settings of an `EvaluateConfig` (params.evaluate)."""
        return cls(evaluate.beam_size, evaluate.length_penalty, evaluate.max_length_ratio, evaluate.batch_sentences,
                   evaluate.max_run)


GREEDY = Decoding()


def translate_all(model: nn.Module, tokenizer, sentences: Sequence[str], lang: str, decoding: Decoding = GREEDY,
                  source: str | None = None) -> list[str]:
    """`sentences` translated into `lang`, on the model's device with its decoding workers. `source`
    names the file the sentences are the lines of, for the warning about a cut line."""
    from babelflow.decode import decoding_workers, translate

    with decoding_workers(next(model.parameters()).device) as workers:
        return translate(model, tokenizer, list(sentences), lang, beam_size=decoding.beam_size,
                         length_penalty=decoding.length_penalty, max_length_ratio=decoding.max_length_ratio,
                         batch_sentences=decoding.batch_sentences, workers=workers, source=source,
                         max_run=decoding.max_run)


def translate_and_score(model: nn.Module, tokenizer, srcs: Sequence[str], refs: Sequence[str], lang: str,
                        decoding: Decoding = GREEDY, source: str | None = None) -> tuple[list[str], dict]:
    """The translations of `srcs` and their sacrebleu scores against `refs` (babelflow.metrics.score)."""
    from babelflow.metrics import score

    hyps = translate_all(model, tokenizer, srcs, lang, decoding, source)
    return hyps, score(hyps, refs, lang)


def dev_bleu(model: nn.Module, tokenizer, dev_text: dict[str, list[tuple[str, str]]], n: int,
             decoding: Decoding = GREEDY) -> float | None:
    """Mean BLEU over the target languages on the first `n` dev sentences in all (split evenly between
    the languages; n <= 0: none, None)."""
    if n <= 0 or not dev_text:
        return None
    from babelflow.metrics import bleu

    per_lang = max(1, n // len(dev_text))
    scores = []
    for lang, pairs in sorted(dev_text.items()):
        pairs = pairs[:per_lang]
        if pairs:
            hyps = translate_all(model, tokenizer, [p[0] for p in pairs], lang, decoding)
            scores.append(bleu(hyps, [p[1] for p in pairs], lang))
    return sum(scores) / len(scores) if scores else None
