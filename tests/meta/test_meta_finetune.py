"""Dev-based selection in the adapt stage's fine-tuning (`babelflow.adapt.finetune`)."""
from __future__ import annotations


import torch

from babelflow.config import ModelConfig
from babelflow.adapt import finetune
from babelflow.data import Examples, TokenBatcher
from babelflow.models import build_model
from babelflow.validation import dev_loss

torch.set_num_threads(1)
VOCAB = 40
MODEL = ModelConfig(arch="transformer", transformer={
    "d_model": 16, "ffn_dim": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0})


def examples(n: int, offset: int) -> Examples:
    # Token ids from 8 up stay clear of the special symbols; each pair maps a sequence to its reverse.
    out = []
    for i in range(n):
        src = tuple(8 + (offset + i * 7 + j * 3) % (VOCAB - 8) for j in range(5))
        out.append((src, tuple(reversed(src))))
    return Examples.from_pairs(out)


def fresh_model():
    torch.manual_seed(0)
    return build_model(MODEL, VOCAB)


def loss_on(model, data) -> float:
    return dev_loss(model, TokenBatcher(data, 200, shuffle=False, seed=0))


def test_selection_does_not_change_the_training_trajectory():
    train = examples(12, 0)
    plain = fresh_model()
    result = finetune(plain, train, 12, 3e-3, 200, seed=1)
    assert result.best_state is None and result.best_step is None
    watched = fresh_model()
    dev = examples(6, 100)
    selected = finetune(watched, train, 12, 3e-3, 200, seed=1, dev_score=lambda m: loss_on(m, dev), select_every=4)
    assert selected.best_step in (0, 4, 8, 12)
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), name
    assert selected.last_loss == result.last_loss


def test_the_kept_weights_are_those_of_the_lowest_dev_loss():
    train = examples(12, 0)
    # Dev = the training pairs: 20 updates lower its loss, so the last check must win over step 0.
    model = fresh_model()
    start = loss_on(model, train)
    result = finetune(model, train, 20, 3e-3, 200, seed=1, dev_score=lambda m: loss_on(m, train), select_every=20)
    assert result.best_step == 20
    assert result.best_score < start
    assert result.best_score == round(loss_on(model, train), 5)

    # lr 0: every check sees the same loss, and the first (the init, step 0) is kept.
    model = fresh_model()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    dev = examples(6, 100)
    result = finetune(model, train, 6, 0.0, 200, seed=1, dev_score=lambda m: loss_on(m, dev), select_every=2)
    assert result.best_step == 0
    for name, value in result.best_state.items():
        assert torch.equal(value, init[name]), name
    restored = fresh_model()
    restored.load_state_dict(result.best_state)
    assert round(loss_on(restored, dev), 5) == result.best_score


def test_a_scorer_that_leaves_eval_mode_does_not_turn_dropout_off():
    # Scoring must not change the updates: with dropout on, a run whose scorer switches the model
    # to eval mode and leaves it there must end with the same weights as a run without scoring.
    train = examples(12, 0)
    dropout_model = ModelConfig(arch="transformer", transformer={
        "d_model": 16, "ffn_dim": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.3})

    def fresh():
        torch.manual_seed(0)
        return build_model(dropout_model, VOCAB)

    plain = fresh()
    finetune(plain, train, 6, 3e-3, 200, seed=1)

    def rude_scorer(model):
        model.eval()
        return 1.0

    scored = fresh()
    finetune(scored, train, 6, 3e-3, 200, seed=1, dev_score=rude_scorer, select_every=2)
    for (name, a), b in zip(plain.state_dict().items(), scored.state_dict().values()):
        assert torch.equal(a, b), name


def test_pick_k_draws_nested_subsets():
    # The adapt curve compares K-shot runs: for one seed the K examples are a prefix of the 2K ones,
    # every draw is a function of the seed alone, and no example is drawn twice.
    from babelflow.adapt import pick_k

    pool = Examples.from_pairs([((8 + i % 30, 9 + i), (9 + i,)) for i in range(500)])
    ids = lambda ex: [int(ex[i][0][1]) for i in range(len(ex))]  # noqa: E731
    small, large = ids(pick_k(pool, 10, seed=3)), ids(pick_k(pool, 100, seed=3))
    assert large[:10] == small and len(set(large)) == 100
    assert ids(pick_k(pool, 100, seed=3)) == large and ids(pick_k(pool, 100, seed=4)) != large
    assert sorted(ids(pick_k(pool, 1000, seed=3))) == list(range(9, 509))
