"""Where clean and encode run their chunks beyond this machine: a Dask distributed cluster
(`executor.address` in params.yaml). dask is imported only when an address is set. Chunks are
submitted a window at a time and their results taken in submission order, so the output bytes are
those of a local run and memory stays bounded by the chunks in flight. On this machine, `usable_cpus`
is how many cores "0 = all cores" means, for worker processes and torch threads alike."""
from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator


def usable_cpus() -> int:
    """The cores this process may run on: what "0 = all cores" means for worker processes and torch
    threads alike. The affinity mask, not os.cpu_count(): a container or `taskset` may see 64 cores and
    be allowed 2, and 64 workers or threads on 2 cores spend their time waiting on each other."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity API on this platform (macOS)
        return os.cpu_count() or 1


class DaskCluster:
    """The workers of the Dask scheduler at `address`; `share(value)` sends a value to each once."""

    def __init__(self, address: str):
        from distributed import Client

        self.client = Client(address)
        self.window = 2 * max(1, sum(self.client.nthreads().values()))

    def share(self, value: Any) -> Any:
        return self.client.scatter(value, broadcast=True)

    def submit(self, fn: Callable, *args) -> Any:
        # pure=False: every chunk is its own task, even two with equal arguments.
        return self.client.submit(fn, *args, pure=False)

    def close(self) -> None:
        self.client.close()


def ordered_map(submit: Callable, fn: Callable, jobs: Iterable[tuple], window: int) -> Iterator:
    """fn(*job) for each job through `submit` (returning futures), results in job order, at most
    `window` in flight."""
    pending: deque = deque()
    for job in jobs:
        pending.append(submit(fn, *job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
