"""Meta-learning tasks: one task = one language pair; each draw gives a support and a query batch.

Which pairs are drawn follows p(pair) ∝ n^(1/T) (T=1: proportional to size, T→∞: uniform), and
every draw is a pure function of (seed, step), so a resumed meta-training sees exactly the tasks an
uninterrupted run would.
"""
from __future__ import annotations

from typing import Sequence

from babelflow.data import Batch, Examples, generator


def task_probabilities(sizes: dict[str, int], temperature: float) -> dict[str, float]:
    weights = {k: n ** (1.0 / temperature) for k, n in sorted(sizes.items()) if n > 0}
    if not weights:
        raise ValueError("no task has any example")
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}


def pack(examples: Examples, order: Sequence[int], max_tokens: int, start: int = 0) -> tuple[list[int], int]:
    """Greedily take examples in `order` from `start` while the padded batch fits `max_tokens`
    (at least one); returns (their positions, next position in `order`)."""
    out: list[int] = []
    longest = 0
    i = start
    while i < len(order):
        j = order[i]
        size = max(int(examples.src_len[j]), int(examples.tgt_len[j]))
        if out and (len(out) + 1) * max(longest, size) > max_tokens:
            break
        out.append(j)
        longest = max(longest, size)
        i += 1
    return out, i


class TaskSampler:
    """Draws `tasks_per_step` (pair, support Batch, query Batch) per meta-step.

    Support and query come from disjoint examples of the same pair, so the query loss measures
    generalisation of the adapted parameters, not memorisation of the support batch.
    """

    def __init__(
        self,
        examples_by_pair: dict[str, Examples],
        support_tokens: int,
        query_tokens: int,
        temperature: float = 1.0,
        seed: int = 0,
    ):
        self.examples = {k: v for k, v in sorted(examples_by_pair.items()) if len(v) > 0}
        if not self.examples:
            raise ValueError("meta-learning needs at least one language pair with examples")
        self.probs = task_probabilities({k: len(v) for k, v in self.examples.items()}, temperature)
        self.support_tokens = support_tokens
        self.query_tokens = query_tokens
        self.seed = seed

    def pairs_for_step(self, step: int, tasks_per_step: int) -> list[str]:
        names = list(self.probs)
        picks = generator(self.seed, "tasks", step).choice(len(names), size=tasks_per_step,
                                                            p=[self.probs[k] for k in names])
        return [names[i] for i in picks]

    def sample(self, step: int, tasks_per_step: int) -> list[tuple[str, Batch, Batch]]:
        out = []
        for j, pair in enumerate(self.pairs_for_step(step, tasks_per_step)):
            exs = self.examples[pair]
            # Every example has >= 1 token, so this many candidates always fill both budgets; numpy
            # draws them in time of their number, whatever the pair's size.
            order = generator(self.seed, "batch", step, j).choice(
                len(exs), size=min(len(exs), self.support_tokens + self.query_tokens), replace=False)
            support, nxt = pack(exs, order, self.support_tokens)
            if nxt >= len(order):
                # A pair too small to split: reuse the support draw rather than fail.
                query = support
            else:
                query, _ = pack(exs, order, self.query_tokens, start=nxt)
            out.append((pair, exs.collate(support), exs.collate(query)))
        return out
