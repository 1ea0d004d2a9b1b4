"""Pre-norm Transformer encoder-decoder (Vaswani et al. 2017, with the pre-norm layout of Wang et al.
2019, which trains stably without a long warm-up).

One embedding serves source, target and (when `tie_embeddings`) the output projection: the vocabulary
is a joint SentencePiece model, so sharing cuts parameters and helps low-resource targets.
Incremental decoding keeps a per-layer key/value cache so each step costs O(t), not O(t^2).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babelflow.config import TransformerConfig
from babelflow.models.base import EncoderOutput, Seq2Seq
from babelflow.specials import PAD_ID


def sinusoidal_table(length: int, dim: int, offset: int = 0) -> Tensor:
    pos = torch.arange(offset, offset + length, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return table


class MultiheadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def split(self, x: Tensor) -> Tensor:  # [B, T, D] -> [B, h, T, d]
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.split(self.k_proj(x)), self.split(self.v_proj(x))

    def forward(
        self,
        query: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        q = self.split(self.q_proj(query))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        b, _, t, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_norm = nn.LayerNorm(cfg.d_model)
        self.self_attn = MultiheadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.self_norm(x)
        k, v = self.self_attn.project_kv(h)
        x = x + self.dropout(self.self_attn(h, k, v, attn_mask=mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_norm = nn.LayerNorm(cfg.d_model)
        self.self_attn = MultiheadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.cross_norm = nn.LayerNorm(cfg.d_model)
        self.cross_attn = MultiheadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        cross_kv: tuple[Tensor, Tensor],
        mem_mask: Tensor,
        cache: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Full sequence when `cache` is None (causal); otherwise x is one new step appended to it."""
        h = self.self_norm(x)
        k, v = self.self_attn.project_kv(h)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        # A single new query may see every cached key, so only the full pass needs the causal mask.
        # (No test of the length: under torch.compile's dynamic shapes it is symbolic, which SDPA
        # refuses, and the graph broke at every decoder layer.)
        x = x + self.dropout(self.self_attn(h, k, v, is_causal=cache is None))
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), *cross_kv, attn_mask=mem_mask))
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, (k, v)


class Transformer(Seq2Seq):
    arch = "transformer"

    def __init__(self, cfg: TransformerConfig, vocab_size: int, pad_id: int = PAD_ID):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        d = cfg.d_model
        self.embed = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        # fairseq's N(0, d^-1/2) ("normal") learns fast, but in this pre-norm stack the residual stream
        # at init is mostly the input token's own embedding (times sqrt(d)), so the tied projection
        # scores that token at ~0.8 sqrt(d): the untrained model is sure the previous token repeats
        # and starts at ~12.5 nats (d 256, V 8000) instead of ln V = 9.0. Sockeye's Xavier scale
        # ("xavier") makes that logit ~1 and the first loss ln V (tests/models/test_models_init.py).
        self._init_embedding(self.embed.weight, cfg.embed_init)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.embed_scale = math.sqrt(d)
        # Learned positions cap the length; sinusoidal ones are computed past the table when needed.
        self.max_positions = cfg.max_positions if cfg.positions == "learned" else None
        if cfg.positions == "learned":
            self.pos_embed = nn.Embedding(cfg.max_positions, d)
            nn.init.normal_(self.pos_embed.weight, 0.0, d**-0.5)
        else:
            self.register_buffer("pos_table", sinusoidal_table(cfg.max_positions, d), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.output_proj = None if cfg.tie_embeddings else nn.Linear(d, vocab_size, bias=False)
        if self.output_proj is not None:
            self._init_embedding(self.output_proj.weight, cfg.embed_init)  # the same scale as the tied case

    @staticmethod
    def _init_embedding(weight: Tensor, how: str) -> None:
        if how == "xavier":
            nn.init.xavier_normal_(weight)
        else:
            nn.init.normal_(weight, 0.0, weight.size(1) ** -0.5)

    # ------------------------------------------------------------------------------------------ pieces
    def _positions(self, length: int, offset: int, device: torch.device) -> Tensor:
        if self.cfg.positions == "learned":
            if offset + length > self.cfg.max_positions:
                raise ValueError(
                    f"sequence of length {offset + length} exceeds max_positions={self.cfg.max_positions}"
                )
            return self.pos_embed(torch.arange(offset, offset + length, device=device))
        if offset + length <= self.pos_table.size(0):
            return self.pos_table[offset : offset + length]
        return sinusoidal_table(length, self.cfg.d_model, offset).to(device)

    def _embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        x = self.embed(tokens) * self.embed_scale
        x = x + self._positions(tokens.size(1), offset, tokens.device).to(x.dtype)
        return self.dropout(x)

    def _logits(self, h: Tensor) -> Tensor:
        h = self.decoder_norm(h)
        if self.output_proj is None:
            return F.linear(h, self.embed.weight)
        return self.output_proj(h)

    @staticmethod
    def _mem_mask(src_pad_mask: Tensor) -> Tensor:
        # SDPA's boolean masks mean "may attend"; broadcast over heads and query positions.
        return (~src_pad_mask)[:, None, None, :]

    # --------------------------------------------------------------------------------------- interface
    def encode(self, src: Tensor) -> EncoderOutput:
        pad = src.eq(self.pad_id)
        mask = self._mem_mask(pad)
        x = self._embed(src)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return EncoderOutput(self.encoder_norm(x), pad)

    def _cross_kv(self, enc: EncoderOutput) -> list[tuple[Tensor, Tensor]]:
        return [layer.cross_attn.project_kv(enc.memory) for layer in self.decoder_layers]

    def decode(self, tgt_in: Tensor, enc: EncoderOutput) -> Tensor:
        mask = self._mem_mask(enc.src_pad_mask)
        x = self._embed(tgt_in)
        for layer, kv in zip(self.decoder_layers, self._cross_kv(enc)):
            x, _ = layer(x, kv, mask)
        return self._logits(x)

    def init_state(self, enc: EncoderOutput) -> dict[str, Any]:
        return {"step": 0, "self": [None] * len(self.decoder_layers), "cross": self._cross_kv(enc)}

    def decode_step(self, prev_tokens: Tensor, state: dict[str, Any], enc: EncoderOutput) -> tuple[Tensor, Any]:
        mask = self._mem_mask(enc.src_pad_mask)
        x = self._embed(prev_tokens[:, None], offset=state["step"])
        caches = []
        for layer, kv, cache in zip(self.decoder_layers, state["cross"], state["self"]):
            x, new_cache = layer(x, kv, mask, cache=cache if cache is not None else _empty_cache(x, layer))
            caches.append(new_cache)
        logp = F.log_softmax(self._logits(x[:, 0]).float(), dim=-1)
        return logp, {"step": state["step"] + 1, "self": caches, "cross": state["cross"]}

    def reorder_state(self, state: dict[str, Any], index: Tensor, same_source: bool = False) -> dict[str, Any]:
        def pick(kv):
            return None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))

        return {
            "step": state["step"],
            "self": [pick(kv) for kv in state["self"]],
            # Beams of one sentence share identical cross-attention keys/values: copying them on
            # every beam-search step would cost as much as the self-attention cache, for nothing.
            "cross": state["cross"] if same_source else [pick(kv) for kv in state["cross"]],
        }

    def config_dict(self) -> dict:
        return {"arch": self.arch, "config": self.cfg.model_dump(mode="json"), "vocab_size": self.vocab_size}


def _empty_cache(x: Tensor, layer: DecoderLayer) -> tuple[Tensor, Tensor]:
    attn = layer.self_attn
    empty = x.new_zeros(x.size(0), attn.heads, 0, attn.head_dim)
    return empty, empty
