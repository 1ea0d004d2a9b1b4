"""tokenize and train stages end to end, with the project's real model families."""
from __future__ import annotations

import shutil

import pytest
import torch

from babelflow.config import parse_params
from babelflow.io import read_json
from tasks._common import Paths

torch.set_num_threads(1)


def _params(arch: str):
    return parse_params({
        "seed": 5,
        "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["ga"]},
        "collect": {"sources": [{"type": "aligned", "name": "t", "path": "x"}]},
        "tokenizer": {"vocab_size": 400, "sample_sentences": 2000},
        "model": {"arch": arch,
                  "transformer": {"d_model": 32, "ffn_dim": 64, "heads": 2, "encoder_layers": 1,
                                  "decoder_layers": 1, "dropout": 0.0},
                  "rnn": {"embed_dim": 32, "hidden_dim": 32, "dropout": 0.0}},
        "train": {"max_tokens": 256, "max_steps": 8, "lr": 3e-3, "warmup_steps": 2, "checkpoint_every": 4,
                  "validate_every": 4, "dev_bleu_sentences": 4, "threads": 1, "max_len": 40,
                  "device": "cpu"},
    })


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
def test_tokenize_then_train(arch, clean_dir, tmp_path):
    models = pytest.importorskip("babelflow.models")
    from tasks import encode, tokenize, train

    shutil.copytree(clean_dir, tmp_path / "data" / "clean")
    paths = Paths(tmp_path)
    params = _params(arch)
    tok_metrics = tokenize.run(params, paths)
    encode.run(params, paths)
    report = read_json(paths.tokenizer / "report.json")
    assert set(report["languages"]) == {"en", "de", "fr", "ga"} and tok_metrics["vocab_size"] > 0
    metrics = train.run(params, paths)
    assert metrics["steps"] == 8 and metrics["dev_loss"] is not None and metrics["dev_bleu"] is not None
    assert read_json(paths.train / "train_state.json")["steps"] == 8
    assert read_json(paths.metrics("train")) == {"dev_loss": metrics["dev_loss"]}  # the headline DVC compares
    assert (paths.train / "train_state.json").is_file()
    assert (paths.plots("train") / "learning_curve.csv").is_file()
    model = models.load_model(paths.train)
    from babelflow.decode import translate
    from babelflow.tokenizer import Tokenizer

    out = translate(model, Tokenizer(paths.tokenizer / "spm.model"), ["open the file"], "de", beam_size=1)
    assert len(out) == 1 and isinstance(out[0], str)


def test_real_transformer_resumes_exactly(clean_dir, tmp_path):
    pytest.importorskip("babelflow.models")
    from safetensors.torch import load_file

    from babelflow.train import train_model
    from babelflow.config import TokenizerConfig
    from babelflow.tokenizer import Tokenizer, train_tokenizer

    params = parse_params({**_params("transformer").model_dump(), "model": {
        "arch": "transformer", "transformer": {"d_model": 32, "ffn_dim": 64, "heads": 2, "encoder_layers": 1,
                                               "decoder_layers": 1, "dropout": 0.3}}})
    params = params.model_copy(update={"train": params.train.model_copy(update={"dev_bleu_sentences": 0})})
    texts = {"en": clean_dir / "en-de" / "train.src", "de": clean_dir / "en-de" / "train.tgt",
             "fr": clean_dir / "en-fr" / "train.tgt"}
    train_tokenizer(texts, tmp_path / "tok", TokenizerConfig(vocab_size=400), ["de", "fr", "ga"], 1)
    tok = Tokenizer(tmp_path / "tok" / "spm.model")

    def go(root, **kw):
        return train_model(params, clean_dir, tok, root / "out", root / "ckpt", root / "plots", log=lambda s: None, **kw)

    go(tmp_path / "full")
    go(tmp_path / "split", stop_at=4)
    go(tmp_path / "split")
    a = load_file(str(tmp_path / "full" / "out" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "out" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
