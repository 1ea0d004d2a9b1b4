"""Tiny synthetic corpora, tokenizer and model shared by the train-area tests."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from babelflow.config import TokenizerConfig, parse_params
from babelflow.tokenizer import Tokenizer, train_tokenizer

WORDS = "open save file folder close print the a new old window settings user name help about".split()
PH = ["%s", "{0}", "%(name)s", "%d", "$HOME"]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 7))]
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), rng.choice(PH))
    return " ".join(words)


def _fake_translate(text: str, lang: str) -> str:
    # A deterministic "translation" the tiny model can partly learn: reversed words, a suffix.
    suffix = {"de": "en", "fr": "é", "ga": "ú"}[lang]
    return " ".join(w if w in PH else w + suffix for w in reversed(text.split()))


@pytest.fixture(scope="session")
def clean_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    rng = random.Random(7)
    for lang in ("de", "fr", "ga"):
        folder = root / f"en-{lang}"
        folder.mkdir()
        for split, n in (("train", 120 if lang != "ga" else 40), ("dev", 12), ("test", 12)):
            src = [_sentence(rng) for _ in range(n)]
            (folder / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
            (folder / f"{split}.tgt").write_text("".join(_fake_translate(s, lang) + "\n" for s in src), encoding="utf-8")
    return root


# A real (tiny) Transformer project's params, less seed and train: the tests that need the decoder
# interface or run the stage code (curve, DDP, resume keys) start from this.
TINY_TRANSFORMER = {
    "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["ga"]},
    "collect": {"sources": [{"type": "aligned", "name": "t", "path": "x"}]},
    "tokenizer": {"vocab_size": 400, "sample_sentences": 2000},
    "model": {"arch": "transformer",
              "transformer": {"d_model": 16, "ffn_dim": 32, "heads": 2, "encoder_layers": 1,
                              "decoder_layers": 1, "max_positions": 64}},
}


def params_with(**train):
    base = dict(max_tokens=96, max_steps=6, lr=3e-3, warmup_steps=2, checkpoint_every=3, validate_every=3,
                keep_checkpoints=2, dev_bleu_sentences=0, threads=1, max_len=40, device="cpu", temperature=2.0,
                label_smoothing=0.1, accumulate=1)
    base.update(train)
    # The tiny project's data sections with the default model (these tests build their own tiny one).
    return parse_params({"seed": 11, **{k: TINY_TRANSFORMER[k] for k in ("languages", "collect", "tokenizer")},
                         "train": base})


@pytest.fixture(scope="session")
def tokenizer(clean_dir, tmp_path_factory) -> Tokenizer:
    out = tmp_path_factory.mktemp("tok")
    texts = {"en": clean_dir / "en-de" / "train.src", "de": clean_dir / "en-de" / "train.tgt",
             "fr": clean_dir / "en-fr" / "train.tgt"}
    train_tokenizer(texts, out, TokenizerConfig(vocab_size=400, sample_sentences=2000), ["de", "fr", "ga"], 3)
    return Tokenizer(out / "spm.model")


@pytest.fixture(scope="session")
def encoded_dir(clean_dir, tokenizer, tmp_path_factory) -> Path:
    """`clean_dir` through the encode step with `tokenizer`."""
    from babelflow.encode import encode_corpus

    out = tmp_path_factory.mktemp("encoded")
    encode_corpus(clean_dir, out, tokenizer.path, tokenizer.max_placeholders, ["en-de", "en-fr", "en-ga"], workers=1)
    return out


class TinySeq2Seq(nn.Module):
    """Just enough of babelflow.models.base.Seq2Seq (forward) to exercise the trainer."""

    def __init__(self, vocab: int, dim: int = 16):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.enc = nn.GRU(dim, dim, batch_first=True)
        self.dec = nn.GRU(dim, dim, batch_first=True)
        self.drop = nn.Dropout(0.2)  # so the RNG state matters for exact resume
        self.out = nn.Linear(dim, vocab)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        _, h = self.enc(self.drop(self.emb(src)))
        y, _ = self.dec(self.drop(self.emb(tgt_in)), h)
        return self.out(y)


def build_tiny(params, vocab_size):
    return TinySeq2Seq(vocab_size)


def save_tiny(model, out_dir):
    from safetensors.torch import save_model

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    save_model(model, str(Path(out_dir) / "model.safetensors"))


@pytest.fixture
def make_params():
    """make_params(**train): tiny params with these train knobs."""
    return params_with


@pytest.fixture
def run(clean_dir, tokenizer):
    """run(params, root, logs=None, **kw): train_model on the tiny model into root/{out,ckpt,plots}."""
    from babelflow.train import train_model

    def go(params, root, logs=None, **kw):
        return train_model(params, clean_dir, tokenizer, root / "out", root / "ckpt", root / "plots",
                           log=(logs if logs is not None else []).append, build=build_tiny, save=save_tiny, **kw)

    return go
