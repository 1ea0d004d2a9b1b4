from __future__ import annotations

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
def test_batches_equal_the_list_based_batcher(clean_dir, encoded_dir, tokenizer, kind, rank, world_size):
    """The numpy batcher hands out, batch for batch, the tensors of the list-based one it replaced
    (legacy_data, verbatim), so switching changes no trained weight."""
    langs = ("de", "fr", "ga")
    old = {lang: legacy_data.load_examples(clean_dir, f"en-{lang}", "train", tokenizer, 30) for lang in langs}
    new = {lang: load_encoded(encoded_dir, f"en-{lang}", "train", 30) for lang in langs}
    kw = dict(max_tokens=150, shuffle=kind != "in_order", seed=5, infinite=True, window=64, rank=rank,
              world_size=world_size)
    if kind == "multilingual":
        a, b = legacy_data.TokenBatcher(old, temperature=2.5, **kw), TokenBatcher(new, temperature=2.5, **kw)
    elif kind == "one_list":
        a, b = legacy_data.TokenBatcher(old["de"], **kw), TokenBatcher(new["de"], **kw)
    else:  # one pool of several languages, as train's dev batcher
        a = legacy_data.TokenBatcher([e for lang in langs for e in old[lang]], **kw)
        b = TokenBatcher([new[lang] for lang in langs], **kw)
    n = 3 * len(a) // world_size + 2  # past three epoch boundaries
    ia, ib = iter(a), iter(b)
    for _ in range(n):
        x, y = next(ia), next(ib)
        assert _flat([x]) == _flat([y])
        assert (x.src.dtype, x.src.shape, x.tgt_in.shape) == (y.src.dtype, y.src.shape, y.tgt_in.shape)
        assert a.state_dict() == b.state_dict()
    # A finite stream: the same batches, and the same position after it.
    kw["infinite"] = False
    fa = list(legacy_data.TokenBatcher(old["fr"], **kw))
    fb = TokenBatcher(new["fr"], **kw)
    assert _flat(fa) == _flat(list(fb)) and fb.state_dict() == {"epoch": 1, "index": 0}


def test_examples_from_pairs_and_subsets():
    ex = Examples.from_pairs([((4, 5, 3), (6, 3)), ((4, 3), (7, 8, 9, 3)), ((4, 9, 9, 9, 3), (3,))])
    assert len(ex) == 3 and list(ex.src_len) == [3, 2, 5] and list(ex.tgt_len) == [2, 4, 1]
    sub = ex[[2, 0]]
    assert [list(sub[i][0]) for i in range(2)] == [[4, 9, 9, 9, 3], [4, 5, 3]]
    batch = sub.collate([0, 1])
    assert batch.tgt_out.tolist() == [[EOS_ID, PAD_ID], [6, EOS_ID]]
    assert batch.tgt_in.tolist() == [[BOS_ID, PAD_ID], [BOS_ID, 6]] and batch.ntokens == 3
