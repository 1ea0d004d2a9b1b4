"""A set of 8-byte digests in ~8-16 bytes each, for deduplicating corpora that do not fit a Python
set of their lines (~190 bytes an entry): clean's exact and loose duplicates, tokenize's English side."""
from __future__ import annotations

import hashlib

import numpy as np


def digest(*parts: str) -> bytes:
    """8 bytes of blake2b over the parts, joined by a separator no sentence contains."""
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()


class DigestSet:
    """A set of 8-byte digests at ~8 bytes each: the older ones in a sorted numpy array, the recent
    ones in a Python set (~75 bytes an entry) merged into the array once it holds `flush`. A chunk's
    digests are looked up in the array at once (`prepare`); merges happen only there, between
    chunks, so a digest added within a chunk stays visible in the Python set until the chunk ends."""

    def __init__(self, flush: int = 1 << 18):  # at most ~25 MB of Python set
        self.old = np.zeros(0, np.uint64)
        self.new: set[bytes] = set()
        self.flush = flush
        self.hits: set[bytes] = set()

    def prepare(self, digests: list[bytes]) -> None:
        if len(self.new) >= self.flush:
            merged = np.concatenate([self.old, np.frombuffer(b"".join(self.new), np.uint64)])
            merged.sort(kind="stable")  # timsort: two sorted runs merge in linear time
            self.old, self.new = merged, set()
        self.hits = set()
        if len(self.old) and digests:
            wanted = np.frombuffer(b"".join(digests), np.uint64)
            at = np.minimum(np.searchsorted(self.old, wanted), len(self.old) - 1)
            self.hits = {d for d, hit in zip(digests, (self.old[at] == wanted).tolist()) if hit}

    def __contains__(self, digest: bytes) -> bool:
        return digest in self.new or digest in self.hits

    def add(self, digest: bytes) -> None:
        self.new.add(digest)

    def __len__(self) -> int:
        return len(self.old) + len(self.new)
