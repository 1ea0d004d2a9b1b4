"""What a benchmark ran on, read from the machine instead of written by hand (the RESULTS sections
outlive the host they were measured on): one line describing the CPU, and the commit of the code."""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path


def _cpuinfo() -> tuple[str, set[str]]:
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or "unknown CPU", flags


def cpu_name() -> str:
    return _cpuinfo()[0]


def cpu_description() -> str:
    """E.g. '2-core AMD EPYC 7B13 x86_64 (AVX2, no AVX-512)': cores, model, and the vector units that
    decide which GEMM kernels torch and CTranslate2 pick."""
    name, flags = _cpuinfo()
    vector = ""
    if flags:
        vector = " (" + ", ".join([u for u, f in (("AVX2", "avx2"),) if f in flags]
                                  + ["AVX-512" if "avx512f" in flags else "no AVX-512"]) + ")"
    return f"{os.cpu_count()}-core {name} {platform.machine()}{vector}"


def git_commit(folder: Path) -> str | None:
    """The short commit checked out in `folder`, or None where there is no git or no repository (a
    device machine may get the tree without its .git)."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    return None
