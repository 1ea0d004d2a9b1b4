"""The list-based data path as it was before the encoded arrays (babelflow/data.py at 77ce299), kept
verbatim as the reference the encoded path must match id for id and batch for batch."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

from babelflow.data import Batch
from babelflow.errors import InputError
from babelflow.specials import BOS_ID, PAD_ID


@dataclass(frozen=True)
class Example:
    src_ids: tuple[int, ...]  # <2tgt> ... EOS
    tgt_ids: tuple[int, ...]  # ... EOS (no BOS)


def collate(examples: Sequence[Example]) -> Batch:
    n = len(examples)
    s = max(len(e.src_ids) for e in examples)
    t = max(len(e.tgt_ids) for e in examples)
    src = torch.full((n, s), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((n, t), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((n, t), PAD_ID, dtype=torch.long)
    for i, e in enumerate(examples):
        src[i, : len(e.src_ids)] = torch.tensor(e.src_ids, dtype=torch.long)
        tgt_out[i, : len(e.tgt_ids)] = torch.tensor(e.tgt_ids, dtype=torch.long)
        tgt_in[i, 0] = BOS_ID
        tgt_in[i, 1 : len(e.tgt_ids)] = torch.tensor(e.tgt_ids[:-1], dtype=torch.long)
    return Batch(src, tgt_in, tgt_out, sum(len(e.tgt_ids) for e in examples))


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


def load_examples(clean_dir, pair: str, split: str, tokenizer, max_len: int, limit: int | None = None) -> list[Example]:
    """Encode `clean_dir/<pair>/<split>.{src,tgt}`; pairs with a side over `max_len` pieces are skipped."""
    folder = Path(clean_dir) / pair
    tgt_lang = pair.split("-", 1)[1]
    out: list[Example] = []
    for src, tgt in read_parallel(folder / f"{split}.src", folder / f"{split}.tgt"):
        if limit is not None and len(out) >= limit:
            break
        src_ids, tgt_ids = tokenizer.encode_pair(src, tgt, tgt_lang)
        if len(src_ids) > max_len or len(tgt_ids) > max_len:
            continue
        out.append(Example(tuple(src_ids), tuple(tgt_ids)))
    return out


def temperature_counts(sizes: dict[str, int], temperature: float) -> dict[str, int]:
    """Examples per language per epoch: the epoch keeps its natural size, shares follow n^(1/T)."""
    total = sum(sizes.values())
    weights = {lang: n ** (1.0 / temperature) for lang, n in sizes.items() if n}
    norm = sum(weights.values())
    return {lang: max(1, round(total * w / norm)) for lang, w in weights.items()}


class TokenBatcher:
    """Iterates `Batch`es of at most `max_tokens` padded tokens (max of source and target side).

    `examples` is one list, or a dict language -> list mixed by temperature sampling (each epoch
    re-draws which examples of an up/down-sampled language are used). With `infinite=True` the
    iterator runs epoch after epoch. `rank`/`world_size` shard the batches for DDP: rank r of W takes
    batches r, r+W, r+2W, ... of the one stream that runs across epochs, so W ranks drawing A
    micro-batches a step train on the same A*W consecutive batches as one process accumulating A*W
    (a per-epoch split would drop an epoch's odd batch and shift every step after it). The position
    is that of the stream, the same on every rank and for any W.
    """

    def __init__(
        self,
        examples: Sequence[Example] | dict[str, Sequence[Example]],
        max_tokens: int,
        shuffle: bool,
        seed: int,
        temperature: float = 1.0,
        infinite: bool = False,
        window: int = 4096,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.by_lang = {k: list(v) for k, v in sorted(examples.items())} if isinstance(examples, dict) else {"": list(examples)}
        if not any(self.by_lang.values()):
            raise ValueError("TokenBatcher needs at least one example")
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.temperature = temperature
        self.infinite = infinite
        self.window = window
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.index = 0  # next batch of the stream within the epoch
        self._plan_epoch: int | None = None
        self._plan: list[list[Example]] = []

    # -- position ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])

    # -- planning ---------------------------------------------------------------------------
    def _epoch_examples(self, rng: random.Random) -> list[Example]:
        if len(self.by_lang) == 1:
            pool = list(next(iter(self.by_lang.values())))
            if self.shuffle:
                rng.shuffle(pool)
            return pool
        counts = temperature_counts({k: len(v) for k, v in self.by_lang.items()}, self.temperature)
        pool = []
        for lang, exs in self.by_lang.items():
            if lang not in counts:
                continue
            order = list(range(len(exs)))
            if self.shuffle:
                rng.shuffle(order)
            pool.extend(exs[order[i % len(order)]] for i in range(counts[lang]))
        if self.shuffle:
            rng.shuffle(pool)
        return pool

    def _pack(self, pool: list[Example]) -> list[list[Example]]:
        batches: list[list[Example]] = []
        for start in range(0, len(pool), self.window):
            chunk = sorted(pool[start : start + self.window], key=lambda e: (len(e.tgt_ids), len(e.src_ids)))
            cur: list[Example] = []
            longest = 0
            for ex in chunk:
                size = max(len(ex.src_ids), len(ex.tgt_ids))
                if cur and (len(cur) + 1) * max(longest, size) > self.max_tokens:
                    batches.append(cur)
                    cur, longest = [], 0
                cur.append(ex)
                longest = max(longest, size)
            if cur:
                batches.append(cur)
        return batches

    def plan(self, epoch: int) -> list[list[Example]]:
        """All batches of `epoch` (every rank's), as example lists (deterministic in seed and epoch)."""
        if self._plan_epoch != epoch:
            rng = random.Random(f"{self.seed}:{epoch}")
            batches = self._pack(self._epoch_examples(rng))
            if self.shuffle:
                rng.shuffle(batches)
            self._plan_epoch, self._plan = epoch, batches
        return self._plan

    def __len__(self) -> int:
        return len(self.plan(self.epoch))

    def _take(self) -> list[Example] | None:
        """The stream's next batch (None where a finite stream ends), moving the position past it."""
        if self.index == len(self.plan(self.epoch)):
            if not self.infinite:
                return None
            self.epoch, self.index = self.epoch + 1, 0
        self.index += 1
        return self.plan(self.epoch)[self.index - 1]

    def __iter__(self) -> Iterator[Batch]:
        while True:
            group = [self._take() for _ in range(self.world_size)]
            if group[-1] is None:  # a finite stream's last, incomplete group: every rank stops here
                self.epoch, self.index = self.epoch + 1, 0
                return
            yield collate(group[self.rank])
