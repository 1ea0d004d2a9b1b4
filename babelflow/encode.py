"""Encoded corpus: each clean split as memory-mapped token arrays plus a per-sentence lengths index.

For every pair and split, in `out_dir/<pair>/`:
  `<split>.src.bin`, `<split>.tgt.bin`  the ids of every sentence back to back (uint16 while the
                                        vocabulary fits, else uint32), exactly what
                                        `Tokenizer.encode_pair` gives (source: <2tgt> ... EOS,
                                        target: ... EOS);
  `<split>.len`                         [n, 2]: the source and target length of sentence i, in the
                                        smallest unsigned dtype that holds the split's longest
                                        (`len_dtype`: uint8 below 256 pieces), so the index costs
                                        ~2 bytes a pair, not 16; readers get offsets by one cumsum.
and `out_dir/manifest.json`: dtype, vocabulary size, tokenizer sha256, max_placeholders, and per split
the sentence and token counts, `len_dtype` and each file's sha256.

Nothing is filtered here: `train.max_len` is a training knob, applied by the reader on the index.
Lines are streamed in chunks to a process pool (or a Dask cluster, `executor.address`) and written
back in input order, so the bytes depend neither on the workers nor on the chunk size, and memory
is bounded by the chunks in flight.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from babelflow.errors import InputError
from babelflow.executor import DaskCluster, ordered_map, usable_cpus
from babelflow.io import write_json

log = logging.getLogger("babelflow.encode")

SPLITS = ("train", "dev", "test")
_LEN_BLOCK = 1 << 20  # lengths narrowed per block
FORMAT = 2  # 1 had an int64 offsets index (<split>.idx)


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def len_dtype_for(lengths: np.ndarray) -> np.dtype:
    longest = int(lengths.max()) if lengths.size else 0
    return np.dtype(next(t for t in (np.uint8, np.uint16, np.uint32) if longest <= np.iinfo(t).max))


# ---------------------------------------------------------------------------------------- reading
def _first_bad_line(path: Path) -> int:
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return n
    return 1


def _lines(path: Path) -> Iterator[str]:
    """The lines of `path` as `read_text().split("\\n")` gives them (universal newlines, no final
    empty line), streamed."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield line[:-1] if line.endswith("\n") else line
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8", line=_first_bad_line(path)) from None


def read_chunks(src_path: Path, tgt_path: Path, size: int) -> Iterator[tuple[list[str], list[str]]]:
    """Aligned (source lines, target lines) chunks of up to `size`; misaligned files name the shorter."""
    src_it, tgt_it = _lines(src_path), _lines(tgt_path)
    n = 0
    buf_s: list[str] = []
    buf_t: list[str] = []
    end = object()
    while True:
        s, t = next(src_it, end), next(tgt_it, end)
        if s is end or t is end:
            if s is not t:  # one file ended first: count the rest of the other for the message
                rest = 1 + sum(1 for _ in (tgt_it if s is end else src_it))
                n_src, n_tgt = (n, n + rest) if s is end else (n + rest, n)
                shorter = src_path if s is end else tgt_path
                raise InputError(shorter, f"not aligned: {n_src} source lines vs {n_tgt} target lines", line=n + 1)
            break
        buf_s.append(s)
        buf_t.append(t)
        n += 1
        if len(buf_s) >= size:
            yield buf_s, buf_t
            buf_s, buf_t = [], []
    if buf_s:
        yield buf_s, buf_t


# ------------------------------------------------------------------------------------- the workers
_TOKENIZERS: dict[tuple[str, int], Any] = {}


def _install(sha: str, model: bytes, max_placeholders: int) -> Any:
    """The tokenizer of `model` in this process, built once (pool initializer, or a Dask worker's
    first chunk): workers get the model's bytes, so they need no access to the project's files."""
    key = (sha, max_placeholders)
    if key not in _TOKENIZERS:
        from babelflow.tokenizer import Tokenizer

        fd, path = tempfile.mkstemp(suffix=".model")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(model)
            _TOKENIZERS[key] = Tokenizer(path, max_placeholders=max_placeholders)  # loaded whole
        finally:
            os.unlink(path)
    return _TOKENIZERS[key]


def encode_chunk(tok_key: tuple[str, int], model: bytes | None, dtype: str, tgt_lang: str,
                 src: list[str], tgt: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(source ids, source lengths, target ids, target lengths) of one chunk, ids as `dtype`."""
    tok = _TOKENIZERS.get(tok_key) if model is None else _install(tok_key[0], model, tok_key[1])
    ids_s: list[int] = []
    ids_t: list[int] = []
    len_s = np.empty(len(src), np.int64)
    len_t = np.empty(len(src), np.int64)
    for i, (s, t) in enumerate(zip(src, tgt)):
        a, b = tok.encode_pair(s, t, tgt_lang)
        ids_s += a
        ids_t += b
        len_s[i], len_t[i] = len(a), len(b)
    return np.asarray(ids_s, dtype), len_s, np.asarray(ids_t, dtype), len_t


# ------------------------------------------------------------------------------------- executors
class LocalExecutor:
    """`workers` local processes (1: this process), each with the tokenizer installed once."""

    def __init__(self, workers: int, tok_key: tuple[str, int], model: bytes):
        _install(tok_key[0], model, tok_key[1])
        self.pool = None
        if workers > 1:
            # spawn: no inherited locks or file handles from the parent (e.g. Prefect's threads).
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                            initializer=_install, initargs=(tok_key[0], model, tok_key[1]))
        self.window = 2 * max(1, workers)
        self.model = None  # installed already: chunks carry no model bytes

    def submit(self, fn: Callable, *args):
        if self.pool is None:
            return _Done(fn(*args))
        return self.pool.submit(fn, *args)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def make_executor(address: str | None, workers: int, tok_key: tuple[str, int], model: bytes):
    if not address:
        return LocalExecutor(workers, tok_key, model)
    cluster = DaskCluster(address)
    cluster.model = cluster.share(model)  # each worker gets the model once, then builds it once
    return cluster


# ------------------------------------------------------------------------------------------ writing
class _HashedFile:
    def __init__(self, path: Path):
        self.path = path
        self.f = open(path, "wb")
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.sha.update(data)

    def close(self) -> str:
        self.f.close()
        return self.sha.hexdigest()


def encode_split(executor, tok_key: tuple[str, int], dtype: np.dtype, folder: Path, out: Path, split: str,
                 tgt_lang: str, chunk_lines: int) -> dict:
    files = {name: _HashedFile(out / f"{split}.{name}") for name in ("src.bin", "tgt.bin")}
    # The lengths go to a uint32 scratch file first: their dtype is known only at the end.
    scratch = out / f"{split}.len.u32"
    n = n_src = n_tgt = 0
    try:
        with open(scratch, "wb") as lens_out:
            jobs = ((tok_key, executor.model, dtype.str, tgt_lang, s, t)
                    for s, t in read_chunks(folder / f"{split}.src", folder / f"{split}.tgt", chunk_lines))
            for ids_s, len_s, ids_t, len_t in ordered_map(executor.submit, encode_chunk, jobs, executor.window):
                files["src.bin"].write(ids_s.tobytes())
                files["tgt.bin"].write(ids_t.tobytes())
                lens_out.write(np.stack([len_s, len_t], axis=1).astype(np.uint32).tobytes())
                n += len(len_s)
                n_src += int(len_s.sum())
                n_tgt += int(len_t.sum())
    finally:
        sha = {f"{split}.{name}": f.close() for name, f in files.items()}
    # Two passes in blocks (memory stays bounded): the longest length, then the narrowed copy.
    def blocks() -> Iterator[np.ndarray]:
        with open(scratch, "rb") as f:
            while (block := np.fromfile(f, np.uint32, _LEN_BLOCK)).size:
                yield block

    len_dtype = max((len_dtype_for(b) for b in blocks()), default=np.dtype(np.uint8))
    files["len"] = _HashedFile(out / f"{split}.len")
    for block in blocks():
        files["len"].write(block.astype(len_dtype).tobytes())
    sha[f"{split}.len"] = files["len"].close()
    scratch.unlink()
    return {"sentences": n, "src_tokens": n_src, "tgt_tokens": n_tgt, "len_dtype": len_dtype.name, "sha256": sha}


def encode_corpus(clean_dir: str | Path, out_dir: str | Path, tokenizer_path: str | Path, max_placeholders: int,
                  pairs: list[str], *, workers: int = 1, chunk_lines: int = 2000, address: str | None = None) -> dict:
    """Encode every split of `pairs` found in `clean_dir` into `out_dir`; returns the manifest
    (also written as `out_dir/manifest.json`). `workers` 0: every usable core (the affinity mask, as
    clean counts them). `address`: a Dask scheduler to encode on instead."""
    from babelflow.tokenizer import Tokenizer

    clean_dir, out_dir = Path(clean_dir), Path(out_dir)
    tok = Tokenizer(tokenizer_path, max_placeholders=max_placeholders)  # checks the model and the tags
    for pair in pairs:
        tok.tag_id(pair.split("-", 1)[1])
    model = Path(tokenizer_path).read_bytes()
    sha = hashlib.sha256(model).hexdigest()
    tok_key = (sha, max_placeholders)
    dtype = dtype_for(tok.vocab_size)
    manifest: dict = {"format": FORMAT, "dtype": dtype.name, "vocab_size": tok.vocab_size, "tokenizer_sha256": sha,
                      "max_placeholders": max_placeholders, "pairs": {}}
    executor = make_executor(address, workers or usable_cpus(), tok_key, model)
    try:
        for pair in pairs:
            folder = clean_dir / pair
            if not (folder / "train.src").is_file():
                raise InputError(folder / "train.src", "file not found; run the clean stage first")
            (out_dir / pair).mkdir(parents=True, exist_ok=True)
            manifest["pairs"][pair] = {
                split: encode_split(executor, tok_key, dtype, folder, out_dir / pair, split,
                                    pair.split("-", 1)[1], chunk_lines)
                for split in SPLITS if (folder / f"{split}.src").is_file()
            }
            log.info("encoded %s: %s", pair, {s: r["sentences"] for s, r in manifest["pairs"][pair].items()})
    finally:
        executor.close()
    write_json(out_dir / "manifest.json", manifest)
    return manifest
