"""Checkpoint selection on dev (issue 18): `train.average_last: [1, 3]` scores the last weights and the
average of the last 3 checkpoints with greedy dev BLEU and keeps the better; test is never read."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from babelflow.checkpoint import average_weights, checkpoints
from babelflow.config import parse_params
from babelflow.errors import ConfigError
from babelflow.models import build_model, load_model
from babelflow.train import dev_bleu, train_model
from babelflow.data import read_parallel
from tests.train.conftest import TINY_TRANSFORMER

torch.set_num_threads(1)


def _params(**train):
    base = dict(max_tokens=256, max_steps=8, lr=3e-3, warmup_steps=2, checkpoint_every=2, validate_every=4,
                keep_checkpoints=4, dev_bleu_sentences=0, threads=1, max_len=40, device="cpu")
    return parse_params({"seed": 5, **TINY_TRANSFORMER, "train": {**base, **train}})


@pytest.mark.parametrize("value,message", [
    ([1, 0], "train.average_last"),
    ([1, 5], "train.average_last: 5 checkpoints to average"),  # keep_checkpoints is 4
    ([], "train.average_last"),
])
def test_candidates_are_checked_at_load(value, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _params(average_last=value)


def test_an_int_still_means_average_the_last_k():
    assert _params(average_last=3).train.average_last == 3
    assert _params(average_last=[3, 1]).train.average_last == [1, 3]


def test_the_best_dev_candidate_is_kept_and_test_is_never_read(clean_dir, tokenizer, tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(clean_dir, clean)
    for f in clean.glob("*/test.*"):
        f.unlink()  # a read of test would fail
    # Sized so the candidates differ and the average of the last 4 wins: not what the last weights give.
    params = _params(average_last=[1, 2, 4], max_steps=80, checkpoint_every=20, validate_every=40, lr=5e-3,
                     max_tokens=512, select_sentences=0)
    params = parse_params({**params.model_dump(), "model": {**params.model.model_dump(), "transformer": {
        **params.model.transformer.model_dump(), "d_model": 64, "ffn_dim": 128}}})
    metrics = train_model(params, clean, tokenizer, tmp_path / "out", tmp_path / "ckpt", tmp_path / "plots",
                          log=lambda _: None)
    state = json.loads((tmp_path / "out" / "train_state.json").read_text())
    assert state["selection"] == metrics["selection"]
    # Score every candidate again by hand: the record is right and the kept one is the best.
    dev = {lang: read_parallel(clean / f"en-{lang}" / "dev.src", clean / f"en-{lang}" / "dev.tgt")
           for lang in ("de", "fr")}
    kept = checkpoints(tmp_path / "ckpt")
    expected = {}
    for k in (1, 2, 4):
        model = build_model(params.model, tokenizer.vocab_size)
        average_weights(kept[-k:], model)
        expected[str(k)] = round(dev_bleu(model, tokenizer, dev, 10**9), 3)
    assert state["selection"]["dev_bleu"] == expected
    best = max(expected.values())
    chosen = state["selection"]["chosen"]
    assert expected[str(chosen)] == best and chosen == min(int(k) for k, v in expected.items() if v == best)
    assert chosen != 1 and len(set(expected.values())) == 3  # a real choice, not a tie
    model = build_model(params.model, tokenizer.vocab_size)
    average_weights(kept[-chosen:], model)
    saved = load_model(tmp_path / "out")
    for name, tensor in model.state_dict().items():
        assert torch.equal(saved.state_dict()[name], tensor), name


def test_candidates_need_a_dev_split(clean_dir, tokenizer, tmp_path):
    from babelflow.errors import InputError

    clean = tmp_path / "clean"
    shutil.copytree(clean_dir, clean)
    for f in clean.glob("*/dev.*"):
        f.unlink()
    with pytest.raises(InputError, match="average_last"):
        train_model(_params(average_last=[1, 2]), clean, tokenizer, tmp_path / "out", tmp_path / "ckpt",
                    tmp_path / "plots", log=lambda _: None)
    assert not (tmp_path / "ckpt").exists() or not checkpoints(tmp_path / "ckpt")  # refused before training
