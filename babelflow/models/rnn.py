"""The classic attentional encoder-decoder (Bahdanau et al. 2015; Luong et al. 2015).

A bidirectional GRU/LSTM reads the packed source. The decoder follows Luong's layout for every score
function: the RNN step yields h_t, attention over the encoder states gives the context c_t, and the
attentional state h~_t = tanh(W_c [c_t; h_t]) predicts the next token and, with input feeding, is fed
to the next step so the model knows what it attended to before. The score function is selectable:
Bahdanau's additive v^T tanh(W_q h + W_k m), Luong's dot h^T m and general h^T W m.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from babelflow.config import RNNConfig
from babelflow.errors import ConfigError
from babelflow.models.base import EncoderOutput, Seq2Seq
from babelflow.specials import PAD_ID


class Attention(nn.Module):
    def __init__(self, kind: str, dim: int):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.key_proj = nn.Linear(dim, dim, bias=False)
            self.query_proj = nn.Linear(dim, dim)
            self.v = nn.Linear(dim, 1, bias=False)
        elif kind == "luong-general":
            self.key_proj = nn.Linear(dim, dim, bias=False)
        elif kind != "luong-dot":
            raise ConfigError(f"model.rnn.attention: unknown attention {kind!r}")

    def keys(self, memory: Tensor) -> Tensor:
        """Query-independent part of the score, computed once per source rather than once per step."""
        return memory if self.kind == "luong-dot" else self.key_proj(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, pad: Tensor) -> Tensor:
        """query [B, T, H], keys/memory [B, S, H], pad [B, S] -> context [B, T, H]."""
        if self.kind == "bahdanau":
            scores = self.v(torch.tanh(self.query_proj(query)[:, :, None] + keys[:, None])).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
        scores = scores.masked_fill(pad[:, None, :], float("-inf"))
        return torch.bmm(torch.softmax(scores, dim=-1), memory)


class RNNSeq2Seq(Seq2Seq):
    arch = "rnn"

    def __init__(self, cfg: RNNConfig, vocab_size: int, pad_id: int = PAD_ID):
        super().__init__()
        if cfg.hidden_dim % 2:
            # Each encoder direction gets half, so encoder states and decoder states share one size
            # and the dot score is defined.
            raise ConfigError(f"model.rnn.hidden_dim must be even, got {cfg.hidden_dim}")
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.max_positions = None
        E, H = cfg.embed_dim, cfg.hidden_dim
        rnn = nn.GRU if cfg.cell == "gru" else nn.LSTM
        self.src_embed = nn.Embedding(vocab_size, E, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(vocab_size, E, padding_idx=pad_id)
        self.encoder = rnn(
            E, H // 2, num_layers=cfg.encoder_layers, batch_first=True, bidirectional=True,
            dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0,
        )
        self.bridge = nn.Linear(H, H)
        self.bridge_c = nn.Linear(H, H) if cfg.cell == "lstm" else None
        self.decoder = rnn(
            E + (H if cfg.input_feeding else 0), H, num_layers=cfg.decoder_layers, batch_first=True,
            dropout=cfg.dropout if cfg.decoder_layers > 1 else 0.0,
        )
        self.attention = Attention(cfg.attention, H)
        self.combine = nn.Linear(2 * H, H, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.tie_embeddings:
            self.pre_output = nn.Linear(H, E, bias=False) if H != E else None
            self.output_proj = None
        else:
            self.pre_output = None
            self.output_proj = nn.Linear(H, vocab_size)

    # --------------------------------------------------------------------------------------- interface
    def encode(self, src: Tensor) -> EncoderOutput:
        pad = src.eq(self.pad_id)
        lengths = (~pad).sum(1).clamp(min=1).cpu()
        x = self.dropout(self.src_embed(src))
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        L = self.cfg.decoder_layers
        if self.cfg.cell == "lstm":
            h, c = final
            extra = (self._bridge(h, self.bridge, L), self._bridge(c, self.bridge_c, L))
        else:
            extra = self._bridge(final, self.bridge, L)
        return EncoderOutput(memory, pad, extra)

    @staticmethod
    def _bridge(final: Tensor, layer: nn.Linear, decoder_layers: int) -> Tensor:
        # The top encoder layer's forward and backward summaries start every decoder layer.
        top = torch.cat([final[-2], final[-1]], dim=-1)
        return torch.tanh(layer(top))[None].expand(decoder_layers, -1, -1).contiguous()

    def _output(self, attn_h: Tensor) -> Tensor:
        h = self.dropout(attn_h)
        if self.output_proj is not None:
            return self.output_proj(h)
        if self.pre_output is not None:
            h = self.pre_output(h)
        return F.linear(h, self.tgt_embed.weight)

    def _attend(self, out: Tensor, keys: Tensor, enc: EncoderOutput) -> Tensor:
        ctx = self.attention(out, keys, enc.memory, enc.src_pad_mask)
        return torch.tanh(self.combine(torch.cat([ctx, out], dim=-1)))

    def init_state(self, enc: EncoderOutput) -> dict[str, Any]:
        B = enc.memory.size(0)
        feed = enc.memory.new_zeros(B, self.cfg.hidden_dim) if self.cfg.input_feeding else None
        return {"hidden": enc.extra, "feed": feed, "keys": self.attention.keys(enc.memory)}

    def _step(self, emb: Tensor, state: dict[str, Any], enc: EncoderOutput) -> tuple[Tensor, dict[str, Any]]:
        """emb [B, E] -> attentional state [B, H]."""
        inp = emb if state["feed"] is None else torch.cat([emb, state["feed"]], dim=-1)
        out, hidden = self.decoder(inp[:, None], state["hidden"])
        attn_h = self._attend(out, state["keys"], enc)[:, 0]
        feed = attn_h if state["feed"] is not None else None
        return attn_h, {"hidden": hidden, "feed": feed, "keys": state["keys"]}

    def decode(self, tgt_in: Tensor, enc: EncoderOutput) -> Tensor:
        emb = self.dropout(self.tgt_embed(tgt_in))
        state = self.init_state(enc)
        if not self.cfg.input_feeding:
            # Without input feeding the recurrence does not depend on attention: one cuDNN call.
            out, _ = self.decoder(emb, state["hidden"])
            return self._output(self._attend(out, state["keys"], enc))
        outs = []
        for t in range(tgt_in.size(1)):
            attn_h, state = self._step(emb[:, t], state, enc)
            outs.append(attn_h)
        return self._output(torch.stack(outs, dim=1))

    def decode_step(self, prev_tokens: Tensor, state: dict[str, Any], enc: EncoderOutput) -> tuple[Tensor, Any]:
        emb = self.dropout(self.tgt_embed(prev_tokens))
        attn_h, state = self._step(emb, state, enc)
        return F.log_softmax(self._output(attn_h).float(), dim=-1), state

    def reorder_state(self, state: dict[str, Any], index: Tensor, same_source: bool = False) -> dict[str, Any]:
        hidden = state["hidden"]
        if isinstance(hidden, tuple):
            hidden = tuple(h.index_select(1, index) for h in hidden)
        else:
            hidden = hidden.index_select(1, index)
        feed = None if state["feed"] is None else state["feed"].index_select(0, index)
        keys = state["keys"] if same_source else state["keys"].index_select(0, index)  # encoder-derived
        return {"hidden": hidden, "feed": feed, "keys": keys}

    def config_dict(self) -> dict:
        return {"arch": self.arch, "config": self.cfg.model_dump(mode="json"), "vocab_size": self.vocab_size}
