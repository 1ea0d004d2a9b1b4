"""Atomic writes: an interrupted stage never leaves a half-written artifact in place.

Every artifact is written to a temporary sibling and renamed over the target. On POSIX a rename
within one file system is atomic, so readers (and DVC) see either the old file or the new one.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from babelflow import failpoints

T = TypeVar("T")


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}

# The longest line (newline included) a corpus reader accepts, and the most it reads at once: no
# sentence is this long, and reading a line whole would let one small gzip (a 10 GB line is 10 MB)
# exhaust memory. collect and clean apply the same cap, so every line collect keeps, clean reads.
MAX_LINE_BYTES = 1 << 20


def _raise_naming(exc: BaseException, target: Path, tmp: Path | None = None) -> None:
    """Re-raise a disk-full OSError naming the artifact: write() errors carry no file name, a copy's
    names its source first (the destination is filename2), and the temporary `tmp` (or a file inside
    atomic_dir's temporary folder) is named where it was going to be, `target`."""
    if not (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS):
        return
    name = exc.filename2 or exc.filename
    if name and tmp is not None and Path(name).is_relative_to(tmp):
        name = target / Path(name).relative_to(tmp)
    if not name or exc.filename2 or str(name) != str(exc.filename):
        raise OSError(exc.errno, exc.strerror, str(name or target)) from exc


def disk_full_message(exc: BaseException) -> str | None:
    """The one-line message for a write that failed for want of space (disk, quota, file size limit),
    naming the file; None for any other error. The stages and the CLI then exit with code 3."""
    if not (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS):
        return None
    # Every artifact is written to a temporary sibling first, so nothing in place was damaged.
    return (f"no space left writing {exc.filename or 'an artifact'} ({os.strerror(exc.errno)}); "
            "earlier artifacts are intact: free space and run again")


def _umask() -> int:
    # mkstemp/mkdtemp create 0600/0700 for privacy while writing; the renamed artifact must get the
    # permissions any other file of the user would (a release others cannot read is no release).
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it over `target`.

    On any exception the temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # Again: a writer may have replaced the file with its own (safetensors renames a 0600 one in).
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        _raise_naming(exc, target, tmp_path)
        raise


@contextlib.contextmanager
def atomic_open(target: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file for writing; it replaces `target` only if the block completes."""
    if "b" in mode:
        encoding = None
    with atomic_path(target) as tmp:
        with open(tmp, mode, encoding=encoding, newline="\n" if encoding else None) as fh:
            yield fh


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter): a stream read a chunk at a time."""
    buf: list[T] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def write_text(target: str | Path, text: str) -> None:
    with atomic_open(target, "w") as fh:
        fh.write(text)


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def write_json(target: str | Path, obj: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indent) so identical content hashes identically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _remove_leftovers(target: Path) -> None:
    # A killed run leaves its temporary folder behind; one writer per target (DVC's repo lock, one
    # process per stage) makes any earlier one for this target garbage.
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a whole output folder in a temporary sibling, then swap it in.

    The old folder (if any) is moved aside and deleted only after the new one is in place, so an
    interruption leaves either the complete old folder or the complete new one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_naming(exc, target, tmp)
        raise
    failpoints.reach(f"before_rename:{target.name}")
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old.{os.getpid()}"
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_of(*parts) -> str:
    """A stable hash of JSON-able parts: what makes two runs (or two trainings) the same."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
