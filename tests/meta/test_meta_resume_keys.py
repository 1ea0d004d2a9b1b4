"""Resuming a meta checkpoint gives exactly what a checkpoint-free run gives (issue 16): with
`meta.init: scratch` a new corpus or tokenizer is not resumed, and a changed `meta_steps` continues
only from a state the new run would also have. (A change of code: tests/train/test_train_resume_keys.py.)"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from babelflow.checkpoint import checkpoints
from babelflow.config import TokenizerConfig, parse_params
from babelflow.meta.train import meta_train
from babelflow.tokenizer import Tokenizer, train_tokenizer

torch.set_num_threads(1)

WORDS = "open save file folder close print the a new old window settings user name help about".split()


def _corpus(root: Path, seed: int) -> Path:
    rng = random.Random(seed)
    for lang, suffix in (("de", "en"), ("fr", "é"), ("ga", "ú")):
        folder = root / f"en-{lang}"
        folder.mkdir(parents=True)
        src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))) for _ in range(60)]
        (folder / "train.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        (folder / "train.tgt").write_text("".join(" ".join(w + suffix for w in reversed(s.split())) + "\n"
                                                  for s in src), encoding="utf-8")
    return root


def _tokenizer(clean: Path, out: Path) -> Tokenizer:
    texts = {"en": clean / "en-de" / "train.src", "de": clean / "en-de" / "train.tgt",
             "fr": clean / "en-fr" / "train.tgt"}
    train_tokenizer(texts, out, TokenizerConfig(vocab_size=320, sample_sentences=500), ["de", "fr", "ga"], 3)
    return Tokenizer(out / "spm.model")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("metakeys")
    a, b = _corpus(root / "clean_a", 1), _corpus(root / "clean_b", 2)
    tok_a, tok_b = _tokenizer(a, root / "tok_a"), _tokenizer(b, root / "tok_b")
    # Same size, other pieces: the old checkpoint loads without a shape error, so only the key can stop it.
    assert tok_a.vocab_size == tok_b.vocab_size
    assert tok_a.path.read_bytes() != tok_b.path.read_bytes()
    return {"a": a, "b": b, "tok_a": tok_a, "tok_b": tok_b}


def _params(**meta):
    return parse_params({
        "seed": 5,
        "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["ga"]},
        "collect": {"sources": [{"type": "aligned", "name": "t", "path": "x"}]},
        "tokenizer": {"vocab_size": 320, "sample_sentences": 500},
        "model": {"arch": "transformer",
                  "transformer": {"d_model": 16, "ffn_dim": 32, "heads": 2, "encoder_layers": 1,
                                  "decoder_layers": 1, "max_positions": 64}},
        "train": {"max_len": 40, "threads": 1, "device": "cpu"},
        "meta": {"init": "scratch", "algorithm": "fomaml", "meta_steps": 3, "tasks_per_step": 2,
                 "inner_steps": 1, "inner_lr": 0.01, "outer_lr": 0.01, "support_tokens": 96,
                 "query_tokens": 96, "checkpoint_every": 2, **meta},
    })


def _run(params, clean, tok, root: Path) -> dict:
    return meta_train(params, clean, tok, None, root / "out", root / "ckpt", log=lambda m: None)


def _assert_same(got: Path, want: Path) -> None:
    for name in ("model.safetensors", "model.json"):
        assert (got / "out" / name).read_bytes() == (want / "out" / name).read_bytes(), name
    mine, theirs = checkpoints(got / "ckpt"), checkpoints(want / "ckpt")
    assert [p.name for p in mine] == [p.name for p in theirs]
    for p, q in zip(mine, theirs):
        for f in ("model.safetensors", "state.pt"):
            assert (p / f).read_bytes() == (q / f).read_bytes(), (p.name, f)


@pytest.mark.parametrize("change", ["corpus", "tokenizer"])
def test_scratch_meta_does_not_resume_another_corpus_or_tokenizer(data, tmp_path, change):
    params = _params()
    _run(params, data["a"], data["tok_a"], tmp_path / "run")
    clean, tok = (data["b"], data["tok_a"]) if change == "corpus" else (data["a"], data["tok_b"])
    again = _run(params, clean, tok, tmp_path / "run")
    _run(params, clean, tok, tmp_path / "fresh")
    _assert_same(tmp_path / "run", tmp_path / "fresh")
    assert again["resumed_from"] == 0


@pytest.mark.parametrize("lower, resumed_from", [(4, 4), (3, 0)])
def test_lowered_meta_steps_gives_the_shorter_runs_init(data, tmp_path, lower, resumed_from):
    # 6 steps keep step_4 and step_6: a 4-step run goes on from step_4 (a state it has too);
    # a 3-step run would need step_2, which is gone: it starts over.
    _run(_params(meta_steps=6), data["a"], data["tok_a"], tmp_path / "run")
    again = _run(_params(meta_steps=lower), data["a"], data["tok_a"], tmp_path / "run")
    fresh = _run(_params(meta_steps=lower), data["a"], data["tok_a"], tmp_path / "fresh")
    assert again["query_loss_last"] == fresh["query_loss_last"]
    out = tmp_path / "run" / "out" / "model.safetensors"
    assert out.read_bytes() == (tmp_path / "fresh" / "out" / "model.safetensors").read_bytes()
    assert all(int(p.name[5:]) <= lower for p in checkpoints(tmp_path / "run" / "ckpt"))
    assert again["resumed_from"] == resumed_from


@pytest.mark.parametrize("first, resumed_from", [(4, 4), (3, 2)])
def test_raised_meta_steps_continues_exactly(data, tmp_path, first, resumed_from):
    # step_3 ends a 3-step run off the checkpoint grid (a 6-step run keeps no step_3): go on from step_2.
    _run(_params(meta_steps=first), data["a"], data["tok_a"], tmp_path / "run")
    again = _run(_params(meta_steps=6), data["a"], data["tok_a"], tmp_path / "run")
    _run(_params(meta_steps=6), data["a"], data["tok_a"], tmp_path / "fresh")
    _assert_same(tmp_path / "run", tmp_path / "fresh")
    assert again["resumed_from"] == resumed_from

