"""Gradient-based meta-learning over a functional view of one model: first-order MAML, Reptile and
full second-order MAML.

The inner loop never copies the model: it runs `torch.func.functional_call` with a dict of "fast"
tensors that start as the meta-parameters, so per-task adaptation costs one extra set of tensors,
not a module. The model's own parameters (the meta-parameters) change only in `MetaLearner.step`'s
outer update.

`loss_fn(model, params, batch) -> scalar` hides the model family: anything that can run
`functional_call(model, params, ...)` on its batch type works.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Literal, Sequence

import torch
from torch import Tensor, nn

LossFn = Callable[[nn.Module, dict[str, Tensor], Any], Tensor]
Algorithm = Literal["fomaml", "reptile", "maml"]


def meta_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters by name (tied weights appear once, as `named_parameters` gives them)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def inner_loop(
    model: nn.Module,
    params: dict[str, Tensor],
    support: Any,
    loss_fn: LossFn,
    steps: int,
    lr: float,
    optimizer: Literal["sgd", "adam"] = "sgd",
    create_graph: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[dict[str, Tensor], list[float]]:
    """`steps` SGD or Adam steps on `support` from `params`; returns (adapted tensors, support losses).

    With `create_graph=False` the result is detached from `params` (first-order); with True the
    adapted tensors stay differentiable functions of `params` (second-order MAML). `params` itself
    is never modified.
    """
    if create_graph:
        fast = dict(params)
    else:
        fast = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    m = {k: torch.zeros_like(v) for k, v in fast.items()} if optimizer == "adam" else {}
    s = {k: torch.zeros_like(v) for k, v in fast.items()} if optimizer == "adam" else {}
    losses: list[float] = []
    for t in range(1, steps + 1):
        with autocast():
            loss = loss_fn(model, fast, support)
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph, allow_unused=True)
        new: dict[str, Tensor] = {}
        for (name, p), g in zip(fast.items(), grads):
            if g is None:  # a parameter this batch does not reach (e.g. an unused language's rows)
                new[name] = p
                continue
            if optimizer == "adam":
                m[name] = betas[0] * m[name] + (1 - betas[0]) * g
                s[name] = betas[1] * s[name] + (1 - betas[1]) * g * g
                m_hat = m[name] / (1 - betas[0] ** t)
                s_hat = s[name] / (1 - betas[1] ** t)
                # sqrt'(0) is infinite: under create_graph, parameters with a zero gradient (unused
                # embedding rows) would turn the meta-gradient into NaN; eps**2 inside avoids it.
                denom = (s_hat + eps * eps).sqrt() if create_graph else s_hat.sqrt()
                update = m_hat / (denom + eps)
            else:
                update = g
            new[name] = p - lr * update
        if create_graph:
            fast = new
        else:
            fast = {k: v.detach().requires_grad_(True) for k, v in new.items()}
    return fast, losses


class MetaLearner:
    """Owns the outer update of `model`'s parameters from a batch of (support, query) tasks.

    - fomaml: meta-gradient = mean over tasks of d(query loss)/d(adapted params), applied by Adam.
    - maml: the same, differentiated through the inner loop (create_graph=True); small models only.
    - reptile: meta += outer_lr * mean(adapted - meta); the query batch is only evaluated (no grad),
      which keeps Reptile's cost at one inner loop per task.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        algorithm: Algorithm = "fomaml",
        inner_steps: int = 1,
        inner_lr: float = 1e-3,
        inner_optimizer: Literal["sgd", "adam"] = "sgd",
        outer_lr: float = 1e-3,
        outer_optimizer: Literal["adam", "sgd"] = "adam",
        clip_norm: float = 0.0,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ):
        if algorithm not in ("fomaml", "reptile", "maml"):
            raise ValueError(f"unknown meta-learning algorithm {algorithm!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.algorithm = algorithm
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.inner_optimizer = inner_optimizer
        self.outer_lr = outer_lr
        self.clip_norm = clip_norm
        self._autocast = autocast  # the runtime's precision (babelflow.runtime)
        self.outer_opt: torch.optim.Optimizer | None = None
        if algorithm != "reptile":
            opt_cls = torch.optim.Adam if outer_optimizer == "adam" else torch.optim.SGD
            self.outer_opt = opt_cls(list(meta_parameters(model).values()), lr=outer_lr)

    def adapt(self, support: Any, create_graph: bool = False) -> tuple[dict[str, Tensor], list[float]]:
        return inner_loop(
            self.model, meta_parameters(self.model), support, self.loss_fn, self.inner_steps,
            self.inner_lr, self.inner_optimizer, create_graph=create_graph, autocast=self._autocast,
        )

    def step(self, tasks: Sequence[tuple[Any, Any]]) -> dict[str, float]:
        """One meta-update from `tasks` = [(support, query), ...]; returns mean losses."""
        if not tasks:
            raise ValueError("a meta-step needs at least one task")
        if self.algorithm != "maml":
            return self._step(tasks)
        # Fused attention kernels (flash, memory-efficient) have no double backward; the math
        # kernel does, and second-order MAML is meant for small models anyway.
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            return self._step(tasks)

    def _step(self, tasks: Sequence[tuple[Any, Any]]) -> dict[str, float]:
        meta = meta_parameters(self.model)
        names = list(meta)
        acc = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in meta.items()}
        support_first, support_last, query_losses = [], [], []
        second_order = self.algorithm == "maml"
        for support, query in tasks:
            fast, losses = self.adapt(support, create_graph=second_order)
            support_first.append(losses[0])
            support_last.append(losses[-1])
            if self.algorithm == "reptile":
                with torch.no_grad(), self._autocast():
                    query_losses.append(float(self.loss_fn(self.model, fast, query)))
                for k in names:
                    acc[k] += (fast[k].detach() - meta[k].detach()).float()
                continue
            with self._autocast():
                q = self.loss_fn(self.model, fast, query)
            query_losses.append(float(q.detach()))
            wrt = [meta[k] for k in names] if second_order else [fast[k] for k in names]
            grads = torch.autograd.grad(q, wrt, allow_unused=True)
            for k, g in zip(names, grads):
                if g is not None:
                    acc[k] += g.float()
        n = len(tasks)
        with torch.no_grad():
            if self.algorithm == "reptile":
                for k, p in meta.items():
                    p.add_((acc[k] / n).to(p.dtype), alpha=self.outer_lr)
            else:
                for k, p in meta.items():
                    p.grad = (acc[k] / n).to(p.dtype)
        grad_norm = 0.0
        if self.outer_opt is not None:
            if self.clip_norm > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(list(meta.values()), self.clip_norm))
            self.outer_opt.step()
            self.outer_opt.zero_grad(set_to_none=True)
        return {
            "inner_loss_first": sum(support_first) / n,
            "inner_loss_last": sum(support_last) / n,
            "query_loss": sum(query_losses) / n,
            "grad_norm": grad_norm,
        }

    def state_dict(self) -> dict:
        return {"outer_opt": self.outer_opt.state_dict() if self.outer_opt is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        if self.outer_opt is not None and state.get("outer_opt"):
            self.outer_opt.load_state_dict(state["outer_opt"])
