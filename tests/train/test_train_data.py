from __future__ import annotations

import numpy as np
import pytest

from babelflow.data import Examples, TokenBatcher, load_encoded
from babelflow.specials import BOS_ID, EOS_ID, PAD_ID
from tests.train import legacy_data


def _examples(encoded_dir, max_len=40):
    return {lang: load_encoded(encoded_dir, f"en-{lang}", "train", max_len) for lang in ("de", "fr", "ga")}


def _flat(batches):
    return [(b.src.tolist(), b.tgt_in.tolist(), b.tgt_out.tolist(), b.ntokens) for b in batches]


def test_batches_are_deterministic_and_within_budget(encoded_dir, tokenizer):
    ex = _examples(encoded_dir)
    a = list(TokenBatcher(ex, 80, shuffle=True, seed=1, temperature=3.0))
    b = list(TokenBatcher(ex, 80, shuffle=True, seed=1, temperature=3.0))
    c = list(TokenBatcher(ex, 80, shuffle=True, seed=2, temperature=3.0))
    assert _flat(a) == _flat(b) and _flat(a) != _flat(c)
    for batch in a:
        assert batch.src.size(0) * max(batch.src.size(1), batch.tgt_out.size(1)) <= 80 or batch.src.size(0) == 1
        assert (batch.tgt_in[:, 0] == BOS_ID).all()
        assert batch.ntokens == int((batch.tgt_out != PAD_ID).sum())
        assert (batch.tgt_in[:, 1:] == batch.tgt_out[:, :-1]).logical_or(batch.tgt_out[:, :-1] == EOS_ID).all()
    # Temperature > 1 upsamples the small held-out language towards the others.
    tag_ga = tokenizer.tag_id("ga")
    n_ga = sum(int((bt.src[:, 0] == tag_ga).sum()) for bt in a)
    assert n_ga > len(ex["ga"])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_position_restores_exactly(encoded_dir, prefetch):
    ex = _examples(encoded_dir)
    ref = TokenBatcher(ex, 64, shuffle=True, seed=3, infinite=True, prefetch=prefetch)
    it = iter(ref)
    first = [next(it) for _ in range(len(ref) + 5)]  # crosses an epoch boundary
    state = ref.state_dict()  # the batches handed out, not those collated ahead
    expected = [next(it) for _ in range(7)]
    again = TokenBatcher(ex, 64, shuffle=True, seed=3, infinite=True, prefetch=prefetch)
    again.load_state_dict(state)
    it2 = iter(again)
    assert _flat([next(it2) for _ in range(7)]) == _flat(expected)
    assert state == {"epoch": 1, "index": 5} and len(first) == len(ref) + 5


def test_ranks_take_turns_on_one_stream_across_epochs(encoded_dir):
    # DDP with W ranks must see the batches of one process accumulating W, in the same steps: rank r
    # takes batches r, r+W, ... of one stream, also where an epoch has a batch count W does not divide.
    ex = _examples(encoded_dir)
    one = TokenBatcher(ex, 200, shuffle=True, seed=3, infinite=True)
    per_epoch = len(one)
    assert per_epoch % 2 == 1, per_epoch
    n = 2 * per_epoch + 1  # batches per rank: past two epoch boundaries
    stream = [next(it) for it in [iter(one)] for _ in range(2 * n)]
    ranks = [TokenBatcher(ex, 200, shuffle=True, seed=3, infinite=True, rank=r, world_size=2) for r in (0, 1)]
    its = [iter(b) for b in ranks]
    got = [next(its[i % 2]) for i in range(2 * n)]
    assert _flat(got) == _flat(stream)
    # Every rank is at the stream's position: a checkpoint of rank 0 serves them all, and any W.
    assert ranks[0].state_dict() == ranks[1].state_dict() == one.state_dict()
    # A finite stream ends for all ranks at once, with the last incomplete group left out.
    finite = [list(TokenBatcher(ex, 200, shuffle=True, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(finite[0]) == len(finite[1]) == per_epoch // 2


@pytest.mark.parametrize("kind", ["multilingual", "one_list", "concatenated", "in_order"])
@pytest.mark.parametrize("rank, world_size", [(0, 1), (0, 2), (1, 2)])
def test_batches_keep_the_list_based_batchers_rules(clean_dir, encoded_dir, tokenizer, kind, rank, world_size):
    """What the numpy batcher keeps of the list-based one it replaced (legacy_data, verbatim). Its
    shuffles are numpy permutations now (Python's took seconds at 10 M examples), so a shuffled
    order differs; what holds: unshuffled it hands out the same batches exactly; shuffled, each
    epoch uses the same examples (every one once, or the temperature counts per language), packs
    its order by the same rule, collates the same tensors, and ranks take turns on one stream."""
    langs = ("de", "fr", "ga")
    old = {lang: legacy_data.load_examples(clean_dir, f"en-{lang}", "train", tokenizer, 30) for lang in langs}
    new = {lang: load_encoded(encoded_dir, f"en-{lang}", "train", 30) for lang in langs}
    flat_old = [e for lang in langs for e in old[lang]]  # legacy example at each global position
    kw = dict(max_tokens=150, shuffle=kind != "in_order", seed=5, infinite=True, window=64, rank=rank,
              world_size=world_size)
    if kind == "multilingual":
        a, b = legacy_data.TokenBatcher(old, temperature=2.5, **kw), TokenBatcher(new, temperature=2.5, **kw)
    elif kind == "one_list":
        a, b = legacy_data.TokenBatcher(old["de"], **kw), TokenBatcher(new["de"], **kw)
    else:  # one pool of several languages, as train's dev batcher
        a = legacy_data.TokenBatcher(flat_old, **kw)
        b = TokenBatcher([new[lang] for lang in langs], **kw)
    ref = lambda positions: legacy_data.collate([flat_old[int(p)] for p in positions])  # noqa: E731
    stream = []  # every rank's batches, epoch after epoch, as example positions
    for epoch in range(4):
        plan = b._plan(epoch)
        # Packing: the epoch's order, cut by the list-based rule, gives these batches.
        packed = a._pack([flat_old[int(p)] for p in plan.order])
        assert packed == [[flat_old[int(p)] for p in plan.order[s:e]] for s, e in zip(plan.starts, plan.starts[1:])]
        # The epoch's examples: every one once, or per language the temperature counts, each
        # example of a language drawn count // n or count // n + 1 times.
        legacy_epoch = [e for batch in a.plan(epoch) for e in batch]
        assert len(plan.order) == len(legacy_epoch)
        if kind == "multilingual":
            counts = legacy_data.temperature_counts({k: len(v) for k, v in old.items()}, 2.5)
            uses = np.bincount(plan.order, minlength=len(flat_old))
            for lang, (lo, hi) in b.langs.items():
                assert uses[lo:hi].sum() == counts[lang]
                assert set(uses[lo:hi]) <= {counts[lang] // (hi - lo), counts[lang] // (hi - lo) + 1}
        else:
            assert sorted(plan.order) == list(range(len(plan.order)))
        stream += b.plan(epoch)
    if kind == "in_order":  # nothing random: exactly the list-based batches
        assert [[flat_old[int(p)] for p in batch] for batch in stream[: len(a)]] == a.plan(0)
    # Rank r of W takes batches r, r+W, ... of the one stream; each collates as the list-based collate.
    n = 3 * len(b) // world_size + 2  # past three epoch boundaries
    it = iter(b)
    for i in range(n):
        x, y = next(it), ref(stream[i * world_size + rank])
        assert _flat([x]) == _flat([y])
        assert (x.src.dtype, x.src.shape, x.tgt_in.shape) == (y.src.dtype, y.src.shape, y.tgt_in.shape)
    if kind == "in_order":
        ia = iter(a)
        assert _flat([next(ia) for _ in range(n)]) == _flat([ref(stream[i * world_size + rank]) for i in range(n)])
        assert a.state_dict() == b.state_dict()
    # A finite stream: the epoch's batches, the last incomplete group left out, and the next epoch's position.
    kw["infinite"] = False
    fb = TokenBatcher(new["fr"], **kw)
    fr = TokenBatcher(new["fr"], **{**kw, "rank": 0, "world_size": 1})
    epoch0 = fr.plan(0)
    expect = [epoch0[i * world_size + rank] for i in range(len(epoch0) // world_size)]
    assert _flat(list(fb)) == _flat([new["fr"].collate(p) for p in expect])
    assert fb.state_dict() == {"epoch": 1, "index": 0}
    if kind == "in_order":
        assert _flat(list(legacy_data.TokenBatcher(old["fr"], **kw))) == _flat([new["fr"].collate(p) for p in expect])


def test_examples_from_pairs_and_subsets():
    ex = Examples.from_pairs([((4, 5, 3), (6, 3)), ((4, 3), (7, 8, 9, 3)), ((4, 9, 9, 9, 3), (3,))])
    assert len(ex) == 3 and list(ex.src_len) == [3, 2, 5] and list(ex.tgt_len) == [2, 4, 1]
    sub = ex[[2, 0]]
    assert [list(sub[i][0]) for i in range(2)] == [[4, 9, 9, 9, 3], [4, 5, 3]]
    batch = sub.collate([0, 1])
    assert batch.tgt_out.tolist() == [[EOS_ID, PAD_ID], [6, EOS_ID]]
    assert batch.tgt_in.tolist() == [[BOS_ID, PAD_ID], [BOS_ID, 6]] and batch.ntokens == 3
