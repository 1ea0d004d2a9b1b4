"""A freshly built model knows nothing, so its first loss must be that of a uniform guess, ln(V).

The default Transformer started at ~12.5 nats with V = 8000 (ln V = 9.0): with the shared embedding
at N(0, d^-1/2) times sqrt(d), the pre-norm residual stream at init is mostly the input token's own
embedding, and the tied projection scored that token at ~sqrt(d) * 0.8, i.e. the untrained model
predicted "repeat the previous token" almost surely.

The RNN is not held to this: its N(0, 1) tied embeddings start ~2 nats above ln V (logits of std ~2),
but fairseq's smaller U(-0.1, 0.1) made it learn a fixed toy batch 3x slower (loss 2.6 instead of 0.8
after 30 steps), a worse trade than a first loss of 11.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from babelflow.config import ModelConfig, TransformerConfig
from babelflow.models import build_model

VOCAB = 8000  # the default tokenizer.vocab_size


def initial_loss(model_cfg: ModelConfig, vocab: int = VOCAB) -> float:
    torch.manual_seed(0)
    model = build_model(model_cfg, vocab).eval()
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(4, vocab, (16, 20), generator=gen)
    tgt = torch.randint(4, vocab, (16, 21), generator=gen)
    with torch.no_grad():
        logits = model(src, tgt[:, :-1])
    return F.cross_entropy(logits.reshape(-1, vocab).float(), tgt[:, 1:].reshape(-1)).item()


def test_xavier_embedding_starts_at_the_uniform_loss():
    loss = initial_loss(ModelConfig(arch="transformer", transformer=TransformerConfig(embed_init="xavier")))
    assert abs(loss - math.log(VOCAB)) < 0.5, f"initial loss {loss:.2f}, ln V = {math.log(VOCAB):.2f}"


def test_fairseq_normal_embedding_starts_sure_the_previous_token_repeats():
    # Why `embed_init` exists: fairseq's scale starts ~3.5 nats above ln V in this pre-norm stack.
    loss = initial_loss(ModelConfig(arch="transformer", transformer=TransformerConfig(embed_init="normal")))
    assert loss > math.log(VOCAB) + 2.5


@pytest.mark.parametrize("cfg", [
    TransformerConfig(d_model=128, ffn_dim=256, heads=4, encoder_layers=4, decoder_layers=4,
                      embed_init="xavier"),  # Transformer-tiny
    TransformerConfig(d_model=512, ffn_dim=2048, heads=8, encoder_layers=1, decoder_layers=1, embed_init="xavier"),
    TransformerConfig(d_model=256, positions="learned", tie_embeddings=False, embed_init="xavier"),
])
def test_other_transformer_shapes_start_at_the_uniform_loss_with_xavier(cfg):
    loss = initial_loss(ModelConfig(arch="transformer", transformer=cfg))
    assert abs(loss - math.log(VOCAB)) < 0.5, f"initial loss {loss:.2f}, ln V = {math.log(VOCAB):.2f}"
