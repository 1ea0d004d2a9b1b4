"""Both model families: shapes, incremental decoding equal to teacher forcing, and learning."""
from __future__ import annotations

import pytest
import torch

from babelflow.config import ModelConfig, TransformerConfig
from babelflow.loss import token_cross_entropy
from babelflow.models import build_model
from babelflow.specials import BOS_ID
from tests.models.toy import WordTokenizer, make_batch, make_pairs, tiny_config, single_thread  # noqa: F401 (autouse)



VARIANTS = {
    "transformer": tiny_config("transformer"),
    "transformer-learned-untied": ModelConfig(
        arch="transformer",
        transformer=TransformerConfig(
            d_model=32, ffn_dim=64, heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0,
            positions="learned", max_positions=40, tie_embeddings=False,
        ),
    ),
    "rnn-gru-bahdanau": tiny_config("rnn"),
    "rnn-lstm-luong-dot": tiny_config("rnn", cell="lstm", attention="luong-dot", encoder_layers=2),
    "rnn-gru-luong-general": tiny_config("rnn", attention="luong-general", decoder_layers=2),
    "rnn-no-feeding-untied": tiny_config("rnn", input_feeding=False, tie_embeddings=False),
    "rnn-tied-same-size": tiny_config("rnn", embed_dim=64, hidden_dim=64),
}


@pytest.fixture(scope="module")
def data():
    tok = WordTokenizer()
    return tok, make_batch(tok, make_pairs(8, seed=3))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shapes(name, data):
    tok, (src, tgt_in, _) = data
    torch.manual_seed(0)
    model = build_model(VARIANTS[name], tok.vocab_size).eval()
    assert model.arch == VARIANTS[name].arch and model.vocab_size == tok.vocab_size
    enc = model.encode(src)
    assert enc.memory.shape[:2] == src.shape
    assert torch.equal(enc.src_pad_mask, src.eq(0))
    assert model(src, tgt_in).shape == (*tgt_in.shape, tok.vocab_size)
    logp, _ = model.decode_step(torch.full((src.size(0),), BOS_ID), model.init_state(enc), enc)
    assert logp.shape == (src.size(0), tok.vocab_size) and logp.dtype == torch.float32
    assert torch.allclose(logp.exp().sum(-1), torch.ones(src.size(0)), atol=1e-5)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_incremental_equals_teacher_forced(name, data):
    tok, (src, tgt_in, _) = data
    torch.manual_seed(1)
    model = build_model(VARIANTS[name], tok.vocab_size).eval()
    with torch.no_grad():
        enc = model.encode(src)
        full = torch.log_softmax(model.decode(tgt_in, enc).float(), -1)
        state = model.init_state(enc)
        # Reordering with the identity through the loop also exercises reorder_state.
        ident = torch.arange(src.size(0))
        for t in range(tgt_in.size(1)):
            logp, state = model.decode_step(tgt_in[:, t], state, enc)
            state = model.reorder_state(state, ident)
            torch.testing.assert_close(logp, full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_reorder_state_selects_rows(name, data):
    tok, (src, tgt_in, _) = data
    torch.manual_seed(2)
    model = build_model(VARIANTS[name], tok.vocab_size).eval()
    perm = torch.tensor([3, 1, 1, 0])
    with torch.no_grad():
        enc = model.encode(src)
        state = model.init_state(enc)
        for t in range(3):
            _, state = model.decode_step(tgt_in[:, t], state, enc)
        state = model.reorder_state(state, perm)
        got, _ = model.decode_step(tgt_in[perm, 3], state, enc.index_select(perm))
        sub = enc.index_select(perm)
        ref_state = model.init_state(sub)
        for t in range(4):
            ref, ref_state = model.decode_step(tgt_in[perm, t], ref_state, sub)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "rnn-lstm-luong-dot"])
def test_loss_goes_down_on_a_fixed_batch(name, data):
    tok, (src, tgt_in, tgt_out) = data
    torch.manual_seed(0)
    model = build_model(VARIANTS[name], tok.vocab_size).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        loss = token_cross_entropy(model(src, tgt_in), tgt_out, 0.1) / tgt_out.ne(0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_rnn_rejects_odd_hidden_size():
    from babelflow.errors import ConfigError

    with pytest.raises(ConfigError, match="hidden_dim"):
        build_model(tiny_config("rnn", hidden_dim=63), 40)
