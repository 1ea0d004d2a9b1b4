"""From candidate pairs of every source to the final per-pair train/dev/test lists.

Order of decisions, each counted against the input the pair came from:
split (explicit, else by hash of the English side, the same for every language) -> exact duplicate
(src, tgt) pairs -> train pairs whose source key occurs in any language's dev/test -> max_pairs cap.
Output order is a hash order of the source sentence, so it does not depend on the order in which
catalogs or files were found, and the same English sentence sits at the same rank in every pair.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

from babelflow.corpus.records import Pair
from babelflow.corpus.split import assign_split, split_key


def _order(p: Pair) -> tuple[bytes, str, str]:
    return hashlib.sha256(p.src.encode("utf-8")).digest(), p.src, p.tgt


def assemble(pairs: list[Pair], langs: list[str], dev: float, test: float, salt: str,
             max_pairs: int | None) -> dict[str, dict[str, list[Pair]]]:
    out: dict[str, dict[str, list[Pair]]] = {lang: {"train": [], "dev": [], "test": []} for lang in langs}
    for p in pairs:
        split = p.split or assign_split(p.src, dev, test, salt)
        out[p.lang][split].append(p)
    held = {split_key(p.src) for lang in out for s in ("dev", "test") for p in out[lang][s]}
    for lang, splits in out.items():
        seen: set[tuple[str, str]] = set()
        for split in ("test", "dev", "train"):  # a pair in both test and train stays in test
            kept = []
            for p in sorted(splits[split], key=_order):
                if (p.src, p.tgt) in seen:
                    p.record.drop("duplicate")
                    continue
                seen.add((p.src, p.tgt))
                if split == "train" and split_key(p.src) in held:
                    p.record.drop("source_in_dev_or_test")
                    continue
                kept.append(p)
            splits[split] = kept
        if max_pairs is not None and len(splits["train"]) > max_pairs:
            for p in splits["train"][max_pairs:]:
                p.record.drop("max_pairs_cap")
            splits["train"] = splits["train"][:max_pairs]
        for split in splits.values():
            for p in split:
                p.record.kept += 1
    return out


def count_check(records) -> None:
    """Every input must account for each line it read (an internal invariant, not user input)."""
    for r in records:
        if r.read != r.kept + sum(r.dropped.values()):
            raise AssertionError(f"{r.path} ({r.lang}): read {r.read} != kept {r.kept} + dropped {dict(r.dropped)}")
