"""The contract every seq2seq model family implements, so training, meta-learning and decoding
work with any of them.

Shapes: B batch, S source length, T target length, V vocabulary. Token id tensors are int64 and
padded with `pad_id`; `src_pad_mask` is True where the source is padding.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class EncoderOutput:
    memory: Tensor  # [B, S, H]
    src_pad_mask: Tensor  # [B, S] bool, True = padding
    extra: Any = None  # family-specific (e.g. the RNN's final hidden state)

    def index_select(self, index: Tensor) -> "EncoderOutput":
        extra = self.extra
        if isinstance(extra, Tensor):
            extra = extra.index_select(-2 if extra.dim() == 3 else 0, index)
        elif isinstance(extra, tuple):
            extra = tuple(e.index_select(-2 if e.dim() == 3 else 0, index) for e in extra)
        return EncoderOutput(self.memory.index_select(0, index), self.src_pad_mask.index_select(0, index), extra)


class Seq2Seq(nn.Module, ABC):
    """Encoder-decoder with teacher-forced training and incremental decoding."""

    arch: str
    vocab_size: int
    pad_id: int

    @abstractmethod
    def encode(self, src: Tensor) -> EncoderOutput: ...

    @abstractmethod
    def decode(self, tgt_in: Tensor, enc: EncoderOutput) -> Tensor:
        """Teacher-forced decoder pass: logits [B, T, V]."""

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(tgt_in, self.encode(src))

    @abstractmethod
    def init_state(self, enc: EncoderOutput) -> Any:
        """Decoder state before the first step (caches, hidden states)."""

    @abstractmethod
    def decode_step(self, prev_tokens: Tensor, state: Any, enc: EncoderOutput) -> tuple[Tensor, Any]:
        """One step: prev_tokens [B] -> (log-probabilities [B, V] in float32, new state)."""

    @abstractmethod
    def reorder_state(self, state: Any, index: Tensor, same_source: bool = False) -> Any:
        """Select/reorder batch rows of the state (beam search); `index` is int64 [B'].

        `same_source`: the caller promises every row moves only among rows built from the same
        source (beams of one sentence), so state derived from the encoder alone may be kept as is.
        """

    def config_dict(self) -> dict:
        """Everything `babelflow.models.build_model_from_dict` needs to rebuild this model."""
        raise NotImplementedError

    @torch.no_grad()
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
