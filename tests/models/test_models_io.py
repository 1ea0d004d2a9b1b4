"""save_model/load_model: exact round trip, and clear errors for damaged or mismatched files."""
from __future__ import annotations

import json

import pytest
import torch

from babelflow.errors import InputError, IntegrityError
from babelflow.models import build_model, load_model, save_model
from tests.models.toy import WordTokenizer, make_batch, make_pairs, tiny_config, single_thread  # noqa: F401 (autouse)




@pytest.fixture(params=["transformer", "rnn"])
def saved(request, tmp_path):
    tok = WordTokenizer()
    torch.manual_seed(0)
    model = build_model(tiny_config(request.param), tok.vocab_size).eval()
    save_model(model, tmp_path / "m")
    return model, tok, tmp_path / "m"


def test_round_trip_identical_outputs(saved):
    model, tok, path = saved
    meta = json.loads((path / "model.json").read_text())
    assert meta["arch"] == model.arch and meta["vocab_size"] == tok.vocab_size
    loaded = load_model(path)
    assert not loaded.training
    src, tgt_in, _ = make_batch(tok, make_pairs(4))
    with torch.no_grad():
        assert torch.equal(model(src, tgt_in), loaded(src, tgt_in))
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_tied_weights_stay_tied_after_load(saved):
    _, _, path = saved
    loaded = load_model(path)
    names = [n for n, _ in loaded.named_parameters()]
    assert not any("output_proj" in n for n in names)  # the output layer is the embedding itself


def test_tampered_weights_are_refused(saved):
    _, _, path = saved
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.safetensors"):
        load_model(path)


def test_corrupt_file_without_checksum_is_refused(saved):
    _, _, path = saved
    meta = json.loads((path / "model.json").read_text())
    del meta["weights_sha256"]
    (path / "model.json").write_text(json.dumps(meta))
    (path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(IntegrityError, match="model.safetensors"):
        load_model(path)


def test_shape_mismatch_is_refused(saved):
    _, _, path = saved
    meta = json.loads((path / "model.json").read_text())
    del meta["weights_sha256"]
    meta["vocab_size"] += 1
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="model expects"):
        load_model(path)


def test_missing_and_bad_description(tmp_path, saved):
    _, _, path = saved
    with pytest.raises(InputError, match="missing model file"):
        load_model(tmp_path / "nowhere")
    (path / "model.json").write_text('{"arch": "lstm9", "config": {}, "vocab_size": 5}')
    with pytest.raises(InputError, match="model.json"):
        load_model(path)
