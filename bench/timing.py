"""Wall-clock helpers shared by the benchmark scripts."""
from __future__ import annotations

import time


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    """The fastest of `repeats` calls of `fn` in seconds, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result
