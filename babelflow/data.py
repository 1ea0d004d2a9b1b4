"""Encoded examples and token-budget batches, on numpy index arrays.

`load_encoded` opens one split written by `babelflow.encode` as memory-mapped arrays: no Python object
per example, no start-up cost. `TokenBatcher` builds batches from length-sorted windows of a shuffled
example order so padding stays small while the order stays random at the scale of the corpus. Every
random choice is a numpy permutation from `generator(seed, epoch)` (tenths of a second for 10 M
examples, where Python's `random.shuffle` took seconds), and the iterator's position (epoch, index)
can be saved and restored, so a resumed run sees exactly the batches an uninterrupted one would.
A background thread collates the next batches while the model computes.
"""
from __future__ import annotations

import hashlib
import queue
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from babelflow.encode import FORMAT
from babelflow.errors import InputError
from babelflow.io import read_json
from babelflow.specials import BOS_ID, PAD_ID


@dataclass
class Batch:
    src: Tensor  # [B, S] int64
    tgt_in: Tensor  # [B, T] int64, BOS + target
    tgt_out: Tensor  # [B, T] int64, target ending in EOS
    ntokens: int  # non-pad tokens in tgt_out

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(
            self.src.to(device, non_blocking=non_blocking),
            self.tgt_in.to(device, non_blocking=non_blocking),
            self.tgt_out.to(device, non_blocking=non_blocking),
            self.ntokens,
        )

    def pin_memory(self) -> "Batch":
        return Batch(self.src.pin_memory(), self.tgt_in.pin_memory(), self.tgt_out.pin_memory(), self.ntokens)

    def __len__(self) -> int:
        return self.src.size(0)


def collate(rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> Batch:
    """One padded batch of (source ids, target ids) rows."""
    n = len(rows)
    s = max(len(r[0]) for r in rows)
    t = max(len(r[1]) for r in rows)
    src = np.full((n, s), PAD_ID, dtype=np.int64)
    tgt_in = np.full((n, t), PAD_ID, dtype=np.int64)
    tgt_out = np.full((n, t), PAD_ID, dtype=np.int64)
    ntokens = 0
    for i, (a, b) in enumerate(rows):
        src[i, : len(a)] = a
        tgt_out[i, : len(b)] = b
        tgt_in[i, 0] = BOS_ID
        tgt_in[i, 1 : len(b)] = b[:-1]
        ntokens += len(b)
    return Batch(torch.from_numpy(src), torch.from_numpy(tgt_in), torch.from_numpy(tgt_out), ntokens)


def index_dtype(n: int) -> np.dtype:
    """The narrowest of uint32/int64 for positions up to `n`: every per-example array of a 10M-pair
    corpus is held in RAM, and at 4 bytes instead of 8 the index costs half."""
    return np.dtype(np.uint32) if n < 2**32 else np.dtype(np.int64)


class Examples:
    """Sentence pairs as token arrays (memory-mapped or in memory): `offsets[i]` is where pair i
    starts in `src`/`tgt` (row n: the ends), `ids` the pairs kept, in order. Indexing with an int
    gives (source ids, target ids); with an index array, the subset. Per pair in RAM: the offsets
    (8 bytes while a side has under 2^32 tokens, shared by subsets), the id (4) and both lengths
    (uint16 while they fit: 4)."""

    def __init__(self, src: np.ndarray, tgt: np.ndarray, offsets: np.ndarray, ids: np.ndarray,
                 lens: np.ndarray | None = None):
        self.src, self.tgt, self.offsets = src, tgt, offsets
        self.ids = np.asarray(ids, dtype=index_dtype(len(offsets)))
        if lens is None:  # [len(ids), 2]; the reader has them already, else from the offsets
            lens = offsets[self.ids + 1] - offsets[self.ids]
        dtype = np.uint16 if not lens.size or lens.max() <= np.iinfo(np.uint16).max else np.int64
        self.src_len, self.tgt_len = lens[:, 0].astype(dtype), lens[:, 1].astype(dtype)

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> "Examples":
        """In-memory examples from id sequences (tests, synthetic data)."""
        lens = np.array([(len(s), len(t)) for s, t in pairs], dtype=np.int64).reshape(-1, 2)
        offsets = np.concatenate([np.zeros((1, 2), np.int64), np.cumsum(lens, axis=0)])
        src = np.array([i for s, _ in pairs for i in s], dtype=np.int64)
        tgt = np.array([i for _, t in pairs for i in t], dtype=np.int64)
        return cls(src, tgt, offsets, np.arange(len(pairs)))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            (s, t), (s_end, t_end) = self.offsets[self.ids[i]], self.offsets[self.ids[i] + 1]
            return self.src[s:s_end], self.tgt[t:t_end]
        i = np.asarray(i, dtype=np.int64)
        return Examples(self.src, self.tgt, self.offsets, self.ids[i], np.stack([self.src_len[i], self.tgt_len[i]], 1))

    def rows(self, positions: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self[int(i)] for i in positions]

    def collate(self, positions: Sequence[int]) -> Batch:
        return collate(self.rows(positions))


def read_parallel(src_path: Path, tgt_path: Path) -> list[tuple[str, str]]:
    for path in (src_path, tgt_path):
        if not path.is_file():
            raise InputError(path, "file not found")
    src = src_path.read_text(encoding="utf-8").split("\n")
    tgt = tgt_path.read_text(encoding="utf-8").split("\n")
    if src and src[-1] == "":
        src.pop()
    if tgt and tgt[-1] == "":
        tgt.pop()
    if len(src) != len(tgt):
        shorter = tgt_path if len(tgt) < len(src) else src_path
        raise InputError(shorter, f"not aligned: {len(src)} source lines vs {len(tgt)} target lines",
                         line=min(len(src), len(tgt)) + 1)
    return list(zip(src, tgt))


def encoded_for(clean_dir: str | Path, tokenizer, pairs: Sequence[str], encoded_dir: str | Path | None = None) -> Path:
    """Where the encoded `pairs` are: `encoded_dir` (the encode stage's output), checked to be made by
    `tokenizer`; or, for callers outside the pipeline that hold only the clean text (tests,
    benchmarks, notebooks), an encoding of `clean_dir` made once per process into a temporary folder."""
    from babelflow.encode import encode_corpus
    from babelflow.io import sha256_file

    sha = sha256_file(tokenizer.path)
    if encoded_dir is not None:
        manifest = Path(encoded_dir) / "manifest.json"
        if not manifest.is_file():
            raise InputError(manifest, "file not found; run the encode stage first")
        m = read_json(manifest)
        if (m.get("tokenizer_sha256"), m.get("max_placeholders")) != (sha, tokenizer.max_placeholders):
            raise InputError(manifest, f"encoded with another tokenizer than {tokenizer.path}; run the encode stage again")
        return Path(encoded_dir)
    files = [Path(clean_dir) / pair / f"{split}.{side}" for pair in pairs for split in ("train", "dev", "test")
             for side in ("src", "tgt")]
    key = (str(Path(clean_dir).resolve()), sha, tokenizer.max_placeholders, tuple(pairs),
           tuple((f.stat().st_size, f.stat().st_mtime_ns) if f.is_file() else None for f in files))
    if key not in _ENCODED:
        tmp = tempfile.TemporaryDirectory(prefix="babelflow-encoded-")  # removed when the process ends
        encode_corpus(clean_dir, tmp.name, tokenizer.path, tokenizer.max_placeholders, list(pairs), workers=1)
        _ENCODED[key] = tmp
    return Path(_ENCODED[key].name)


_ENCODED: dict[tuple, tempfile.TemporaryDirectory] = {}


def load_encoded(encoded_dir: str | Path, pair: str, split: str, max_len: int, limit: int | None = None) -> Examples:
    """`encoded_dir/<pair>/<split>`, memory-mapped; pairs with a side over `max_len` pieces are
    skipped, and `limit` keeps the first that many of the rest."""
    encoded_dir = Path(encoded_dir)
    manifest_path = encoded_dir / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(manifest_path, "file not found; run the encode stage first")
    manifest = read_json(manifest_path)
    if manifest.get("format") != FORMAT:
        raise InputError(manifest_path, f"encoded in format {manifest.get('format')}, not {FORMAT}; run the encode stage again")
    dtype = np.dtype(manifest["dtype"])
    folder = encoded_dir / pair
    for name in (f"{split}.len", f"{split}.src.bin", f"{split}.tgt.bin"):
        if not (folder / name).is_file():
            raise InputError(folder / name, "file not found; run the encode stage first")
    info = manifest["pairs"].get(pair, {}).get(split)
    if info is None:
        raise InputError(manifest_path, f"lists no {pair} {split} split; run the encode stage again")
    lens = _map(folder / f"{split}.len", np.dtype(info["len_dtype"])).reshape(-1, 2)
    total = int(lens.sum(axis=0, dtype=np.int64).max()) if len(lens) else 0
    offsets = np.zeros((len(lens) + 1, 2), index_dtype(total))  # 8 bytes a pair in RAM, ~2 on disk
    np.cumsum(lens, axis=0, out=offsets[1:])
    for side, data in enumerate((f"{split}.src.bin", f"{split}.tgt.bin")):
        if offsets[-1, side] * dtype.itemsize != (folder / data).stat().st_size:
            raise InputError(folder / data, "does not match the lengths in its .len file; run the encode stage again")
    keep = np.flatnonzero((lens[:, 0] <= max_len) & (lens[:, 1] <= max_len))
    if limit is not None:
        keep = keep[:limit]
    return Examples(_map(folder / f"{split}.src.bin", dtype), _map(folder / f"{split}.tgt.bin", dtype), offsets, keep,
                    lens[keep])


def _map(path: Path, dtype) -> np.ndarray:
    # np.memmap refuses an empty file: an empty split is an empty array.
    return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)


def temperature_counts(sizes: dict[str, int], temperature: float) -> dict[str, int]:
    """Examples per language per epoch: the epoch keeps its natural size, shares follow n^(1/T)."""
    total = sum(sizes.values())
    weights = {lang: n ** (1.0 / temperature) for lang, n in sizes.items() if n}
    norm = sum(weights.values())
    return {lang: max(1, round(total * w / norm)) for lang, w in weights.items()}


def generator(*key) -> np.random.Generator:
    """A numpy generator that is a pure function of `key` (e.g. seed and epoch) on every platform:
    PCG64 seeded with 128 bits of the key's sha256."""
    digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


@dataclass(frozen=True)
class _Plan:
    order: np.ndarray  # global example positions, batch after batch (unshuffled batches)
    starts: np.ndarray  # batch b of `order` is order[starts[b]:starts[b+1]]
    batches: np.ndarray  # the epoch's batch sequence (indices into starts)

    def __len__(self) -> int:
        return len(self.batches)

    def batch(self, i: int) -> np.ndarray:
        b = self.batches[i]
        return self.order[self.starts[b] : self.starts[b + 1]]


class TokenBatcher:
    """Iterates `Batch`es of at most `max_tokens` padded tokens (max of source and target side).

    `examples` is one `Examples`, a list of them (one pool, in that order), or a dict language ->
    `Examples` mixed by temperature sampling (each epoch re-draws which examples of an
    up/down-sampled language are used). With `infinite=True` the iterator runs epoch after epoch.
    `rank`/`world_size` shard the batches for DDP: rank r of W takes batches r, r+W, r+2W, ... of the
    one stream that runs across epochs, so W ranks drawing A micro-batches a step train on the same
    A*W consecutive batches as one process accumulating A*W (a per-epoch split would drop an epoch's
    odd batch and shift every step after it). The position is that of the stream, the same on every
    rank and for any W, and counts the batches handed out, not those `prefetch` collated ahead.
    """

    def __init__(
        self,
        examples: Examples | Sequence[Examples] | dict[str, Examples],
        max_tokens: int,
        shuffle: bool,
        seed: int,
        temperature: float = 1.0,
        infinite: bool = False,
        window: int = 4096,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 2,
        pin_memory: bool = False,
    ):
        if isinstance(examples, dict):
            by_lang = {k: [v] for k, v in sorted(examples.items())}
        else:
            by_lang = {"": [examples] if isinstance(examples, Examples) else list(examples)}
        self.parts = [part for parts in by_lang.values() for part in parts]
        sizes = np.array([len(p) for p in self.parts], dtype=np.int64)
        self.part_start = np.concatenate([[0], np.cumsum(sizes)])
        # Each language's [start, end) of the global example positions, in sorted language order.
        self.langs: dict[str, tuple[int, int]] = {}
        i = 0
        for lang, parts in by_lang.items():
            self.langs[lang] = (int(self.part_start[i]), int(self.part_start[i + len(parts)]))
            i += len(parts)
        if not self.part_start[-1]:
            raise ValueError("TokenBatcher needs at least one example")
        # One part's lengths are used as they are (a copy is 4 bytes a pair).
        self.src_len = self.parts[0].src_len if len(self.parts) == 1 else np.concatenate([p.src_len for p in self.parts])
        self.tgt_len = self.parts[0].tgt_len if len(self.parts) == 1 else np.concatenate([p.tgt_len for p in self.parts])
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.temperature = temperature
        self.infinite = infinite
        self.window = window
        self.rank = rank
        self.world_size = world_size
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self.epoch = 0
        self.index = 0  # next batch of the stream within the epoch
        self._plans: dict[int, _Plan] = {}
        self._lock = threading.Lock()  # the prefetch thread plans too

    # -- position ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])

    # -- planning ---------------------------------------------------------------------------
    def _order(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # Shuffling an arange in place is rng.permutation(n) (the same draws), in 4-byte positions.
        order = np.arange(n, dtype=index_dtype(int(self.part_start[-1])))
        if self.shuffle:
            rng.shuffle(order)
        return order

    def _epoch_examples(self, rng: np.random.Generator) -> np.ndarray:
        if len(self.langs) == 1:
            return self._order(rng, int(self.part_start[-1]))
        counts = temperature_counts({k: b - a for k, (a, b) in self.langs.items()}, self.temperature)
        picks = []
        for lang, (a, b) in self.langs.items():
            if lang not in counts:
                continue
            order = self._order(rng, b - a)
            picks.append(order[np.arange(counts[lang]) % (b - a)] + order.dtype.type(a))
        pool = np.concatenate(picks)
        return rng.permutation(pool) if self.shuffle else pool

    def _pack(self, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sort each window of `pool` by (target, source) length (stably) and cut it greedily into
        batches whose padded size stays within the budget; returns (order, batch starts)."""
        src, tgt = self.src_len[pool], self.tgt_len[pool]
        n, width = len(pool), self.window
        rows = -(-n // width)
        # One key per example, sorted stably within its window (a row): ties keep the pool's order.
        # 16-bit keys (lengths under 256) get numpy's radix sort, 4x faster than a lexsort.
        span = int(max(src.max(), tgt.max())) + 1
        key_type = np.uint16 if span * span < 65535 else np.int64
        keys = np.full(rows * width, np.iinfo(key_type).max, key_type)  # padding sorts last
        keys[:n] = tgt.astype(key_type) * key_type(span) + src.astype(key_type)
        sizes = np.zeros(rows * width, np.int32)
        sizes[:n] = np.maximum(src, tgt)
        del src, tgt
        idx = np.argsort(keys.reshape(rows, width), axis=1, kind="stable")
        del keys
        idx += width * np.arange(rows)[:, None]
        idx = idx.reshape(-1)[:n]
        order = pool[idx]
        # The greedy cut runs on every window at once, one position of each window a step, so the
        # Python loop is `window` long whatever the corpus size (columns made contiguous for it).
        sizes[:n] = sizes[idx]
        del idx
        columns = sizes.reshape(rows, width).T.copy()
        del sizes
        cut = np.zeros((width, rows), bool)  # True where a batch starts
        count = np.zeros(rows, np.int64)
        longest = np.zeros(rows, np.int64)  # int64: (count + 1) * longest must not overflow
        for j in range(min(width, n)):
            size = columns[j]
            full = (count > 0) & ((count + 1) * np.maximum(longest, size) > self.max_tokens)
            cut[j] = full | (count == 0)
            count = np.where(full, 0, count) + 1
            longest = np.where(full, size, np.maximum(longest, size))
        starts = np.flatnonzero(cut.T.reshape(-1)[:n])
        return order, np.append(starts, n)

    def _plan(self, epoch: int) -> _Plan:
        with self._lock:
            if epoch not in self._plans:
                rng = generator(self.seed, epoch)
                order, starts = self._pack(self._epoch_examples(rng))
                n = len(starts) - 1
                batches = rng.permutation(n) if self.shuffle else np.arange(n, dtype=np.int64)
                if len(self._plans) >= 2:  # the consumer's epoch and the prefetcher's next one
                    self._plans.pop(min(self._plans))
                self._plans[epoch] = _Plan(order, starts, batches)
            return self._plans[epoch]

    def plan(self, epoch: int) -> list[np.ndarray]:
        """All batches of `epoch` (every rank's), as arrays of example positions."""
        p = self._plan(epoch)
        return [p.batch(i) for i in range(len(p))]

    def __len__(self) -> int:
        return len(self._plan(self.epoch))

    def _collate(self, positions: np.ndarray) -> Batch:
        parts = np.searchsorted(self.part_start, positions, side="right") - 1
        rows = [self.parts[p][int(i - self.part_start[p])] for p, i in zip(parts.tolist(), positions.tolist())]
        batch = collate(rows)
        return batch.pin_memory() if self.pin_memory and torch.cuda.is_available() else batch

    def _stream(self, epoch: int, index: int) -> Iterator[tuple[Batch | None, tuple[int, int]]]:
        """(this rank's next batch, the stream position after its group), from position (epoch,
        index); a finite stream ends with (None, (epoch + 1, 0)), its last incomplete group left out."""
        while True:
            mine = None
            for r in range(self.world_size):
                if index == len(self._plan(epoch)):
                    if not self.infinite:
                        yield None, (epoch + 1, 0)
                        return
                    epoch, index = epoch + 1, 0
                if r == self.rank:
                    mine = self._plan(epoch).batch(index)
                index += 1
            yield self._collate(mine), (epoch, index)

    def __iter__(self) -> Iterator[Batch]:
        stream = self._stream(self.epoch, self.index) if self.prefetch <= 0 else self._prefetched()
        for batch, (self.epoch, self.index) in stream:
            if batch is None:
                return
            yield batch

    def _prefetched(self) -> Iterator[tuple[Batch | None, tuple[int, int]]]:
        """`_stream`, run `prefetch` batches ahead in a background thread (collation overlaps compute)."""
        q: queue.Queue = queue.Queue(self.prefetch)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def produce(epoch: int, index: int) -> None:
            try:
                for item in self._stream(epoch, index):
                    if not put(item) or item[0] is None:
                        return
            except BaseException as exc:  # handed to the consumer, raised there
                put((exc, None))

        thread = threading.Thread(target=produce, args=(self.epoch, self.index), daemon=True,
                                  name="babelflow-batches")
        thread.start()
        try:
            while True:
                item = q.get()
                if isinstance(item[0], BaseException):
                    raise item[0]
                yield item
                if item[0] is None:
                    return
        finally:
            stop.set()
            # A generator left to the garbage collector may be closed while the interpreter shuts
            # down, when daemon threads are frozen: joining one then never returns (a DDP rank hung so).
            if not sys.is_finalizing():
                thread.join()
