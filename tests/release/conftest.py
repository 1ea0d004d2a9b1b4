"""A tiny but real project tree for the evaluate and release tests: a random 1-layer Transformer,
a SentencePiece model trained on a few sentences, two pairs with small test splits."""
from __future__ import annotations

from pathlib import Path

import pytest

from babelflow.config import parse_params
from babelflow.io import write_json, write_text

EN = ["a man is riding a bike", "two dogs play in the snow", "the girl reads a book",
      "a woman sings on a stage", "people walk along the beach", "the cat sleeps on the sofa"]
DE = ["ein mann fährt fahrrad", "zwei hunde spielen im schnee", "das mädchen liest ein buch",
      "eine frau singt auf einer bühne", "leute gehen am strand entlang", "die katze schläft auf dem sofa"]
FR = ["un homme fait du vélo", "deux chiens jouent dans la neige", "la fille lit un livre",
      "une femme chante sur scène", "des gens marchent sur la plage", "le chat dort sur le canapé"]

PARAMS = {
    "seed": 7,
    "languages": {"source": "en", "targets": ["de", "fr"]},
    "collect": {"sources": [{"type": "aligned", "name": "toy", "path": "toy", "licence": "CC0"}]},
    "tokenizer": {"vocab_size": 400, "max_placeholders": 2},
    "model": {"arch": "transformer", "transformer": {
        "d_model": 16, "ffn_dim": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1,
        "max_positions": 128}},
    "evaluate": {"beam_size": 2, "batch_sentences": 4, "examples": 2},
    "release": {"name": "toy-model", "version": "1.2.3"},
    "adapt": {"enabled": False},  # no held-out language in params (make_project fakes adapt's results)
}


def make_project(root: Path, with_adapt: bool = True):
    import torch

    from babelflow.models import build_model, save_model
    from babelflow.tokenizer import Tokenizer, train_tokenizer

    params = parse_params(PARAMS)
    data = root / "data"
    text = {"en": EN * 5, "de": DE * 5, "fr": FR * 5}
    train_tokenizer(text, data / "tokenizer", params.tokenizer, ["de", "fr"], seed=params.seed)
    tok = Tokenizer(data / "tokenizer" / "spm.model")
    torch.manual_seed(0)
    model = build_model(params.model, tok.vocab_size)
    save_model(model, data / "train")
    write_json(data / "train" / "train_state.json",
               {"steps": 10, "tokens_seen": 1234, "device": "cpu", "wall_time_s": 1.5})
    write_text(data / "plots" / "train" / "learning_curve.csv", "step,train_loss,lr\n5,6.1,0.0005\n10,5.2,0.001\n")
    write_text(data / "plots" / "train" / "dev_loss.csv", "step,dev_loss\n5,5.9\n10,5.0\n")
    write_text(data / "plots" / "train" / "dev_bleu.csv", "step,dev_bleu\n10,0.4\n")
    for tgt, ref in (("de", DE), ("fr", FR)):
        pair = data / "clean" / f"en-{tgt}"
        write_text(pair / "test.src", "".join(s + "\n" for s in EN[:4]))
        write_text(pair / "test.tgt", "".join(s + "\n" for s in ref[:4]))
    write_json(data / "raw" / "manifest.json", {"inputs": [
        {"source": "toy", "type": "aligned", "path": "toy/train.de", "lang": "de",
         "sha256": "ab" * 32, "read": 6, "kept": 6, "dropped": {}},
        {"source": "toy", "type": "aligned", "path": "toy/train.fr", "lang": "fr",
         "sha256": "cd" * 32, "read": 6, "kept": 6, "dropped": {}}]})
    if with_adapt:
        row = {"k_used": 100, "meta_minus_transfer_bleu": 0.5, **{
            init: {"bleu_mean": b, "bleu_std": 0.25, "chrfpp_mean": 10.0, "chrfpp_std": 0.0}
            for init, b in (("scratch", 1.0), ("transfer", 2.5), ("meta", 3.0))}}
        write_json(data / "adapt" / "results.json", {
            "enabled": True, "wall_s": 12.5, "budget": {"steps": 5, "device": "cpu"},
            "summary": ["en-ga K=100: meta 3.00 vs transfer 2.50 BLEU (+0.50): meta-learning helps"],
            "languages": {"ga": {"pair": "en-ga", "test_sentences": 3, "train_pool": 400,
                                 "k": {"100": row}}}})
        (data / "adapt" / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\nnot-a-real-picture")
    return params


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("proj")
    params = make_project(root)
    return root, params


@pytest.fixture(scope="session")
def evaluated_project(tiny_project):
    from tasks._common import Paths
    from tasks.evaluate import run

    root, params = tiny_project
    summary = run(params, Paths(root))
    return root, params, summary


@pytest.fixture(scope="session")
def release_dir(evaluated_project):
    from tasks._common import Paths
    from tasks.release import run

    root, params, _ = evaluated_project
    run(params, Paths(root))
    return root / "data" / "release"


@pytest.fixture
def project_factory():
    return make_project
