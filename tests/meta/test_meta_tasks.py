"""Task sampling: temperature shares, determinism in (seed, step), disjoint support/query."""
from __future__ import annotations

from collections import Counter

import pytest

from babelflow.data import Examples
from babelflow.meta.tasks import TaskSampler, task_probabilities


def exs(n: int, tag: int) -> Examples:
    return Examples.from_pairs([((tag, 10 + i % 7, i + 100, 3), (tag, i + 100, 3)) for i in range(n)])


def test_temperature_probabilities():
    assert task_probabilities({"a": 900, "b": 100}, 1.0) == pytest.approx({"a": 0.9, "b": 0.1})
    assert task_probabilities({"a": 900, "b": 100}, 2.0) == pytest.approx({"a": 30 / 40, "b": 10 / 40})
    flat = task_probabilities({"a": 900, "b": 100}, 1e9)
    assert flat["a"] == pytest.approx(0.5, abs=1e-6)


def test_sampling_is_deterministic_and_follows_the_shares():
    data = {"en-de": exs(900, 4), "en-fr": exs(100, 5)}
    a = TaskSampler(data, 64, 64, temperature=1.0, seed=3)
    b = TaskSampler(data, 64, 64, temperature=1.0, seed=3)
    for step in (1, 7, 50):
        sa, sb = a.sample(step, 3), b.sample(step, 3)
        assert [p for p, _, _ in sa] == [p for p, _, _ in sb]
        for (_, s1, q1), (_, s2, q2) in zip(sa, sb):
            assert s1.src.equal(s2.src) and q1.tgt_out.equal(q2.tgt_out)
    counts = Counter(p for step in range(400) for p in a.pairs_for_step(step, 5))
    assert 0.85 < counts["en-de"] / 2000 < 0.95
    other = TaskSampler(data, 64, 64, temperature=1.0, seed=4)
    assert [a.pairs_for_step(s, 5) for s in range(20)] != [other.pairs_for_step(s, 5) for s in range(20)]


def test_support_and_query_are_disjoint_and_within_budget():
    sampler = TaskSampler({"en-de": exs(300, 4)}, 40, 40, seed=1)
    for step in range(10):
        (_, support, query), = sampler.sample(step, 1)
        assert support.src.numel() <= 40 and query.src.numel() <= 40
        s_ids = {int(x) for x in support.src[:, 2]}
        q_ids = {int(x) for x in query.src[:, 2]}
        assert s_ids and q_ids and not (s_ids & q_ids)
