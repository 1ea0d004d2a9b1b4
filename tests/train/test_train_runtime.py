"""Where a run executes: the CPU thread count that `train.threads: 0` means."""
from __future__ import annotations

import os

import pytest
import torch

from babelflow import runtime


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_threads_zero_means_the_cores_this_process_may_use_not_the_machines(monkeypatch):
    # `taskset -c 0 babelflow train ...` (or a container allowed 1 of 64 cores) must start one thread:
    # os.cpu_count() counts the machine's cores, and 64 threads on 1 core spend their time waiting.
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    before = torch.get_num_threads()
    try:
        runtime.configure(torch.device("cpu"), 0)
        assert torch.get_num_threads() == 1
        runtime.configure(torch.device("cpu"), 3)  # an explicit count is taken as given
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
