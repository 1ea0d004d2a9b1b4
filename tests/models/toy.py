"""A tiny, fully known translation task and a word-level stand-in tokenizer for the model tests.

The "target language" is a fixed word dictionary applied in reverse word order, so a model has to use
attention over the whole source (not copy position by position) to get it right.
"""
from __future__ import annotations

import random

import pytest
import torch

from babelflow.config import ModelConfig, RNNConfig, TransformerConfig
from babelflow.specials import BOS_ID, EOS_ID, PAD_ID

SRC_WORDS = "a big cat dog sees eats the red small fish bird runs green house tree blue".split()
LEXICON = {w: w.upper() + "x" for w in SRC_WORDS}


class WordTokenizer:
    """Honours the Tokenizer interface used by `babelflow.decode.translate`."""

    def __init__(self, tags=("de",)):
        specials = ["<pad>", "<unk>", "<s>", "</s>"] + [f"<2{t}>" for t in tags]
        self.itos = specials + SRC_WORDS + [LEXICON[w] for w in SRC_WORDS]
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    def encode_source(self, text: str, tgt_lang: str):
        return [self.stoi[f"<2{tgt_lang}>"]] + [self.stoi.get(w, 1) for w in text.split()] + [EOS_ID], ()

    def encode_target(self, text: str, mapping=()):
        return [self.stoi.get(w, 1) for w in text.split()] + [EOS_ID]

    def decode(self, ids, mapping=(), source_ids=None):
        words = []
        for i in ids:
            if i == EOS_ID:
                break
            if i >= 4 + 1:
                words.append(self.itos[i])
        return " ".join(words)


def make_pairs(n: int = 32, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs, seen = [], set()
    while len(pairs) < n:
        src = " ".join(rng.choice(SRC_WORDS) for _ in range(rng.randint(3, 7)))
        if src in seen:
            continue
        seen.add(src)
        pairs.append((src, " ".join(LEXICON[w] for w in reversed(src.split()))))
    return pairs


def make_batch(tok: WordTokenizer, pairs, tgt_lang: str = "de"):
    """(src, tgt_in, tgt_out) padded tensors, in the layout of babelflow.data.Batch."""
    srcs = [tok.encode_source(s, tgt_lang)[0] for s, _ in pairs]
    tgts = [tok.encode_target(t) for _, t in pairs]
    S, T = max(map(len, srcs)), max(map(len, tgts))
    src = torch.full((len(pairs), S), PAD_ID)
    tgt_in = torch.full((len(pairs), T), PAD_ID)
    tgt_out = torch.full((len(pairs), T), PAD_ID)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        src[i, : len(s)] = torch.tensor(s)
        tgt_in[i, : len(t)] = torch.tensor([BOS_ID] + t[:-1])
        tgt_out[i, : len(t)] = torch.tensor(t)
    return src, tgt_in, tgt_out


def tiny_config(arch: str, **rnn_kw) -> ModelConfig:
    return ModelConfig(
        arch=arch,
        transformer=TransformerConfig(
            d_model=64, ffn_dim=128, heads=4, encoder_layers=2, decoder_layers=2, dropout=0.0,
            max_positions=64,
        ),
        rnn=RNNConfig(**{"embed_dim": 48, "hidden_dim": 64, "dropout": 0.0, **rnn_kw}),
    )


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: on a shared 2-core machine, two threads per test process thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
