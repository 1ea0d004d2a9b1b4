"""Inner loop isolation, hand-computed FOMAML/Reptile updates, second-order MAML, exact resume."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from babelflow.checkpoint import checkpoints
from babelflow.meta.algorithms import MetaLearner, inner_loop, meta_parameters
from babelflow.meta.train import meta_loop

torch.set_num_threads(1)


class Line(nn.Module):
    """y = w*x + b, starting at w=1, b=0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.b = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        return self.w * x + self.b


def mse(model, params, batch):
    x, y = batch
    return ((functional_call(model, params, (x,)) - y) ** 2).mean()


def pt(x, y):
    return torch.tensor([x]), torch.tensor([y])


# Task 1: support (1 -> 3), query (2 -> 5). Task 2: support (1 -> 1), query (1 -> 2).
TASKS = [(pt(1.0, 3.0), pt(2.0, 5.0)), (pt(1.0, 1.0), pt(1.0, 2.0))]


def test_inner_loop_adapts_a_copy_and_leaves_meta_params_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    learner = MetaLearner(model, mse, "fomaml", inner_steps=3, inner_lr=0.1, inner_optimizer="adam",
                          outer_lr=0.01)
    fast, losses = learner.adapt((x, y))
    assert len(losses) == 3
    assert all(not torch.equal(fast[k], before[k]) for k in fast)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    learner.step([((x, y), (x, y))])
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_inner_sgd_step_matches_hand_computation():
    model = Line()
    fast, losses = inner_loop(model, meta_parameters(model), TASKS[0][0], mse, steps=1, lr=0.1)
    # L = (w + b - 3)^2 = 4; dL/dw = dL/db = 2 * (1 - 3) = -4 -> w' = 1.4, b' = 0.4
    assert losses == [pytest.approx(4.0)]
    assert float(fast["w"].detach()) == pytest.approx(1.4)
    assert float(fast["b"].detach()) == pytest.approx(0.4)


def test_fomaml_outer_update_matches_hand_computation():
    model = Line()
    learner = MetaLearner(model, mse, "fomaml", inner_steps=1, inner_lr=0.1, inner_optimizer="sgd",
                          outer_lr=0.1, outer_optimizer="sgd")
    m = learner.step(TASKS)
    # Task 1 adapted (1.4, 0.4); query pred 3.2, err -1.8: grad (2*-1.8*2, 2*-1.8) = (-7.2, -3.6).
    # Task 2 support err 0: adapted (1, 0); query pred 1, err -1: grad (-2, -2).
    # Mean meta-gradient (-4.6, -2.8); SGD lr 0.1 -> w = 1.46, b = 0.28.
    assert float(model.w.detach()) == pytest.approx(1.46)
    assert float(model.b.detach()) == pytest.approx(0.28)
    assert m["query_loss"] == pytest.approx((1.8**2 + 1.0) / 2)


def test_fomaml_with_outer_adam_takes_a_sign_step_of_outer_lr():
    model = Line()
    learner = MetaLearner(model, mse, "fomaml", inner_steps=1, inner_lr=0.1, outer_lr=0.01)
    learner.step(TASKS)
    # Adam's first step is lr * g / |g| (bias-corrected); both meta-gradients are negative.
    assert float(model.w.detach()) == pytest.approx(1.01, abs=1e-6)
    assert float(model.b.detach()) == pytest.approx(0.01, abs=1e-6)


def test_reptile_outer_update_matches_hand_computation():
    model = Line()
    learner = MetaLearner(model, mse, "reptile", inner_steps=1, inner_lr=0.1, outer_lr=0.5)
    learner.step(TASKS)
    # adapted - meta: task 1 (0.4, 0.4), task 2 (0, 0); mean (0.2, 0.2); * 0.5 -> (1.1, 0.1)
    assert float(model.w.detach()) == pytest.approx(1.1)
    assert float(model.b.detach()) == pytest.approx(0.1)


def test_second_order_maml_differs_from_fomaml_and_matches_unrolled_autograd():
    def make():
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1))

    torch.manual_seed(4)
    support = (torch.randn(6, 2), torch.randn(6, 1))
    query = (torch.randn(6, 2), torch.randn(6, 1))
    alpha = 0.3

    # Reference: d/dθ Q(θ - α ∇S(θ)) written out by hand with plain autograd.
    ref_model = make()
    theta = dict(ref_model.named_parameters())
    s_grads = torch.autograd.grad(mse(ref_model, theta, support), list(theta.values()), create_graph=True)
    adapted = {k: p - alpha * g for (k, p), g in zip(theta.items(), s_grads)}
    ref = torch.autograd.grad(mse(ref_model, adapted, query), list(theta.values()))

    updates = {}
    for algo in ("maml", "fomaml"):
        model = make()
        start = [p.detach().clone() for p in model.parameters()]
        learner = MetaLearner(model, mse, algo, inner_steps=1, inner_lr=alpha, inner_optimizer="sgd",
                              outer_lr=1.0, outer_optimizer="sgd")
        learner.step([(support, query)])
        # SGD with lr 1: the applied meta-gradient is start - new.
        updates[algo] = [s - p.detach() for s, p in zip(start, model.parameters())]
    for got, want in zip(updates["maml"], ref):
        assert torch.allclose(got, want, atol=1e-6)
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(updates["maml"], updates["fomaml"]))


class Noisy(nn.Module):
    """Dropout makes the result depend on the RNG state, which resume must restore."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


def tasks_at(step):
    g = torch.Generator().manual_seed(step)
    return [((torch.randn(5, 4, generator=g), torch.randn(5, 1, generator=g)),
             (torch.randn(5, 4, generator=g), torch.randn(5, 1, generator=g))) for _ in range(2)]


def _fresh(algo):
    torch.manual_seed(11)
    model = Noisy()
    return model, MetaLearner(model, mse, algo, inner_steps=2, inner_lr=0.05, inner_optimizer="adam",
                              outer_lr=0.01 if algo == "fomaml" else 0.5)


@pytest.mark.parametrize("algo", ["fomaml", "reptile"])
def test_meta_checkpoint_resume_is_exact(tmp_path, algo):
    model, learner = _fresh(algo)
    meta_loop(model, learner, tasks_at, steps=6, ckpt_dir=tmp_path / "a", checkpoint_every=2)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    model, learner = _fresh(algo)
    meta_loop(model, learner, tasks_at, steps=4, ckpt_dir=tmp_path / "b", checkpoint_every=2)
    torch.manual_seed(999)  # a resumed process starts from a different RNG state
    model, learner = _fresh(algo)
    out = meta_loop(model, learner, tasks_at, steps=6, ckpt_dir=tmp_path / "b", checkpoint_every=2)
    assert out["resumed_from"] == 4
    assert [h["step"] for h in out["history"]] == [1, 2, 3, 4, 5, 6]
    for k, v in model.state_dict().items():
        assert torch.equal(v, straight[k]), k


def test_meta_loop_never_resumes_a_step_beyond_its_end(tmp_path):
    """At the loop level (same fingerprint, fewer steps): the longer run's state is never shipped."""
    model, learner = _fresh("reptile")
    meta_loop(model, learner, tasks_at, steps=6, ckpt_dir=tmp_path / "a", checkpoint_every=2, keep=3)
    model, learner = _fresh("reptile")
    out = meta_loop(model, learner, tasks_at, steps=3, ckpt_dir=tmp_path / "a", checkpoint_every=2, keep=3)
    resumed = {k: v.clone() for k, v in model.state_dict().items()}
    model, learner = _fresh("reptile")
    meta_loop(model, learner, tasks_at, steps=3, ckpt_dir=tmp_path / "b", checkpoint_every=2, keep=3)
    assert all(torch.equal(v, resumed[k]) for k, v in model.state_dict().items())
    assert out["resumed_from"] == 2 and [p.name for p in checkpoints(tmp_path / "a")] == [
        "step_00000002", "step_00000003"]


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
@pytest.mark.parametrize("algo", ["fomaml", "reptile", "maml"])
def test_every_algorithm_updates_both_model_families(arch, algo):
    from babelflow.config import ModelConfig
    from babelflow.data import collate
    from babelflow.meta.train import seq2seq_loss
    from babelflow.models import build_model

    cfg = ModelConfig.model_validate({
        "arch": arch, "rnn": {"embed_dim": 8, "hidden_dim": 8, "cell": "lstm"},
        "transformer": {"d_model": 8, "ffn_dim": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1},
    })
    torch.manual_seed(0)
    model = build_model(cfg, 30)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = collate([((4, 5, 6, 3), (7, 8, 3)), ((4, 9, 3), (10, 11, 12, 3))])
    learner = MetaLearner(model, seq2seq_loss(0.1), algo, inner_steps=2, inner_lr=1e-2,
                          inner_optimizer="adam", outer_lr=1e-3 if algo != "reptile" else 0.5, clip_norm=1.0)
    m = learner.step([(batch, batch)])
    assert m["inner_loss_last"] < m["inner_loss_first"]
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(after[k], before[k]) for k in before)


def test_checkpoints_of_other_params_are_not_resumed(tmp_path):
    model, learner = _fresh("fomaml")
    meta_loop(model, learner, tasks_at, steps=4, ckpt_dir=tmp_path, checkpoint_every=2, fingerprint="a")
    model, learner = _fresh("fomaml")
    out = meta_loop(model, learner, tasks_at, steps=2, ckpt_dir=tmp_path, checkpoint_every=2, fingerprint="b")
    assert out["resumed_from"] == 0
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["step_00000002"]
