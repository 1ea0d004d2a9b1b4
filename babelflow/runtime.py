"""Where a run executes: device, threads, seeding, precision, compilation and DDP.

The only place these are decided: train, meta, adapt, evaluate, the CLI and the benchmarks ask this
module instead of setting torch globals themselves. DDP lives here too (JoeyNMT keeps it in one
helper): the trainer calls `Runtime` methods that are plain no-ops in a one-process run.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from babelflow.errors import BabelflowError
from babelflow.executor import usable_cpus


def seed_all(seed: int) -> None:
    """Seed every generator a run draws from (Python, NumPy, torch on all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str | None, local_rank: int = 0, *, where: str = "train.device") -> torch.device:
    """`auto`/None (CUDA when there is one), `cpu`, `cuda` or `cuda:N`, checked against this machine;
    `where` names the knob or flag in errors. Under torchrun `cuda` means this process's GPU."""
    name = name or "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise BabelflowError(f"{where} {name}: unknown device; use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise BabelflowError(f"{where} {name}: no CUDA device is available here (torch {torch.__version__}); "
                             f"use {where} cpu")
    index = local_rank if name == "cuda" else int(name[5:])
    if index >= count:
        raise BabelflowError(f"{where} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def configure(device: torch.device, threads: int = 0) -> None:
    """Process-wide torch settings for `device`. CPU: `threads` intra-op threads (0: all cores) and
    deterministic kernels, because a CPU run promises the same weights bit for bit from the same
    params. CUDA: TF32 matmuls (fp32 runs at tensor-core speed; bf16 autocast does the rest)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return
    torch.set_num_threads(threads or usable_cpus())
    torch.use_deterministic_algorithms(True, warn_only=True)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `bf16`, else nothing (fp32)."""
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Runtime:
    """One process's place in a run. `world` > 1 under torchrun; every collective is a no-op without it."""

    device: torch.device
    bf16: bool = False
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.bf16)

    def wrap(self, model: nn.Module, compile: bool = False) -> nn.Module:
        """The module the training step calls: compiled when asked (CPU too; inductor needs a C++
        compiler there), in DDP under torchrun. `model` itself stays the plain module to save."""
        if compile:
            model = torch.compile(model)
        if self.distributed:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.local_rank] if self.device.type == "cuda" else None)
        return model

    def no_sync(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """DDP's gradient all-reduce skipped on the micro-batches before an update's last one."""
        return contextlib.nullcontext() if sync or not self.distributed else wrapped.no_sync()

    def sum(self, *values: float) -> list[float]:
        """`values` summed over the ranks (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def from_main(self, value: int) -> int:
        """Rank 0's `value` on every rank (decisions such as early stopping are taken once)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], device=self.device)
        dist.broadcast(t, 0)
        return int(t.item())

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` on rank 0 (None elsewhere); `[obj]` in a one-process run."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block before the others do (e.g. it alone deletes stale checkpoints)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def start(device: str | None = "auto", threads: int = 0, *, bf16: bool = True, bf16_cpu: bool = False,
          seed: int | None = None, distributed: bool = False) -> Runtime:
    """The runtime of one process: device picked and configured, precision decided (bf16 autocast on
    CUDA when `bf16`, on CPU only when `bf16_cpu`: the default CPU run stays fp32, bit for bit),
    generators seeded when `seed` is given, and, with `distributed` under torchrun (WORLD_SIZE > 1),
    the process group joined (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if distributed else 1
    rank = int(os.environ.get("RANK", "0")) if distributed else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if distributed else 0
    dev = pick_device(device, local_rank)
    configure(dev, threads)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if seed is not None:
        seed_all(seed)
    return Runtime(dev, bf16=bf16 if dev.type == "cuda" else bf16_cpu, rank=rank, local_rank=local_rank,
                   world=world)
