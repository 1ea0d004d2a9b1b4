"""From candidate pairs of every source to the final per-pair train/dev/test splits, in bounded memory.

Order of decisions, each counted against the input the pair came from:
split (explicit, else by hash of the English side, the same for every language) -> exact duplicate
(src, tgt) pairs -> train pairs whose source key occurs in any language's dev/test -> max_pairs cap.
Output order is a hash order of the source sentence, so it does not depend on the order in which
catalogs or files were found, and the same English sentence sits at the same rank in every pair.

Train pairs are an external sort: `PairSink` holds at most `run_pairs` of them, spills each full
buffer as a sorted run to disk and merges the runs while the output is written, so a duplicate is
the previous pair of the merge and nothing per train pair stays in memory (holding every pair until
the end cost ~0.65 KB a pair: 6.5 GB at 10 M pairs). Dev and test stay in memory: the train filter
needs their keys, and they are a small share of a corpus.
"""
from __future__ import annotations

import hashlib
import heapq
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from babelflow.corpus.records import InputRecord, Pair
from babelflow.corpus.split import assign_split, split_key

# (sha256 of src, src, tgt, record index): sorting these tuples is the output order; the index
# breaks ties by input order (records are numbered as they are first seen), as a stable sort would.
Item = tuple[bytes, str, str, int]
RUN_PAIRS = 200_000  # ~60 MB of buffered train pairs before a spill


def _key(src: str) -> bytes:
    return hashlib.sha256(src.encode("utf-8")).digest()


def _read_run(path: Path) -> Iterator[Item]:
    # Binary lines: sentences were flattened (no tab or line break), and reading bytes avoids text
    # mode's other line separators. The key is recomputed rather than stored (~1 us a pair).
    with open(path, "rb") as fh:
        for line in fh:
            src, tgt, idx = line[:-1].split(b"\t")
            s = src.decode("utf-8")
            yield _key(s), s, tgt.decode("utf-8"), int(idx)


class PairSink:
    """Readers append pairs here (it quacks like the list they used to fill). `finish` then yields
    each language's splits as iterators; iterate them fully, in order, before reading the counts."""

    def __init__(self, langs: list[str], dev: float, test: float, salt: str,
                 spill_parent: str | Path | None = None, run_pairs: int | None = None):
        self.langs, self.dev, self.test, self.salt = langs, dev, test, salt
        self.run_pairs = run_pairs or RUN_PAIRS
        self.records: list[InputRecord] = []
        self._index: dict[int, int] = {}  # id(record) -> its number
        self._emitted: Counter = Counter()  # record number -> pairs appended
        self._discarded: set[int] = set()
        self._held_items: dict[str, dict[str, list[Item]]] = {lang: {"dev": [], "test": []} for lang in langs}
        self._buffer: dict[str, list[Item]] = {lang: [] for lang in langs}
        self._buffered = 0
        self._runs: dict[str, list[Path]] = {lang: [] for lang in langs}
        self._parent = spill_parent
        self._dir: Path | None = None

    def __enter__(self) -> PairSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _number(self, rec: InputRecord) -> int:
        i = self._index.get(id(rec))
        if i is None:
            i = self._index[id(rec)] = len(self.records)
            self.records.append(rec)
        return i

    def append(self, p: Pair) -> None:
        i = self._number(p.record)
        self._emitted[i] += 1
        split = p.split or assign_split(p.src, self.dev, self.test, self.salt)
        item = (_key(p.src), p.src, p.tgt, i)
        if split != "train":
            self._held_items[p.lang][split].append(item)
            return
        self._buffer[p.lang].append(item)
        self._buffered += 1
        if self._buffered >= self.run_pairs:
            self._spill()

    def extend(self, pairs) -> None:
        for p in pairs:
            self.append(p)

    def emitted(self, rec: InputRecord) -> int:
        return self._emitted[self._index[id(rec)]] if id(rec) in self._index else 0

    def discard(self, recs) -> None:
        """Drop every pair these records gave (a file that failed half-way under on_error: skip);
        the caller counts them as dropped."""
        self._discarded |= {self._index[id(r)] for r in recs if id(r) in self._index}

    def _spill(self) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=".collect-runs-", dir=self._parent))
        for lang, buf in self._buffer.items():
            if not buf:
                continue
            buf.sort()
            path = self._dir / f"{lang}.{len(self._runs[lang])}"
            with open(path, "wb") as fh:
                fh.writelines(f"{s}\t{t}\t{i}\n".encode("utf-8") for _, s, t, i in buf)
            self._runs[lang].append(path)
            self._buffer[lang] = []
        self._buffered = 0

    def _live(self, items) -> Iterator[Item]:
        return (it for it in items if it[3] not in self._discarded)

    def finish(self, max_pairs: int | None) -> dict[str, dict[str, Iterator[Pair]]]:
        """Per language: {"test", "dev", "train"} -> pairs in output order. Counts (record.kept and
        drops) are complete once every iterator has been exhausted."""
        held = {split_key(it[1]) for lang in self.langs for s in ("dev", "test")
                for it in self._live(self._held_items[lang][s])}
        out = {}
        for lang in self.langs:
            seen: set[tuple[str, str]] = set()  # dev and test pairs only
            splits = {}
            for split in ("test", "dev"):  # a pair in both test and train stays in test
                kept = []
                for _key_, src, tgt, i in sorted(self._live(self._held_items[lang][split])):
                    rec = self.records[i]
                    if (src, tgt) in seen:
                        rec.drop("duplicate")
                        continue
                    seen.add((src, tgt))
                    rec.kept += 1
                    kept.append(Pair(lang, src, tgt, split, rec))
                splits[split] = iter(kept)
            self._held_items[lang] = {}
            out[lang] = {"train": self._train(lang, seen, held, max_pairs), "dev": splits["dev"],
                         "test": splits["test"]}
        return out

    def _train(self, lang: str, seen, held, max_pairs: int | None) -> Iterator[Pair]:
        buf, self._buffer[lang] = sorted(self._buffer[lang]), []
        merged = heapq.merge(*(_read_run(p) for p in self._runs[lang]), buf)
        last = None
        n = 0
        for _key_, src, tgt, i in self._live(merged):
            rec = self.records[i]
            pair = (src, tgt)
            if pair == last or pair in seen:
                rec.drop("duplicate")
                continue
            last = pair
            if split_key(src) in held:
                rec.drop("source_in_dev_or_test")
                continue
            if max_pairs is not None and n >= max_pairs:
                rec.drop("max_pairs_cap")
                continue
            n += 1
            rec.kept += 1
            yield Pair(lang, src, tgt, "train", rec)


def assemble(pairs: list[Pair], langs: list[str], dev: float, test: float, salt: str,
             max_pairs: int | None, run_pairs: int | None = None) -> dict[str, dict[str, list[Pair]]]:
    """The same decisions over an in-memory list, as lists (small inputs and tests)."""
    with PairSink(langs, dev, test, salt, run_pairs=run_pairs) as sink:
        for p in pairs:
            sink.append(p)
        return {lang: {s: list(it) for s, it in splits.items()} for lang, splits in sink.finish(max_pairs).items()}


def count_check(records) -> None:
    """Every input must account for each line it read (an internal invariant, not user input)."""
    for r in records:
        if r.read != r.kept + sum(r.dropped.values()):
            raise AssertionError(f"{r.path} ({r.lang}): read {r.read} != kept {r.kept} + dropped {dict(r.dropped)}")
