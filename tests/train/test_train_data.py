from __future__ import annotations

import pytest

from babelflow.data import TokenBatcher, load_examples
from babelflow.errors import InputError
from babelflow.specials import BOS_ID, EOS_ID, PAD_ID


def _examples(clean_dir, tokenizer):
    return {lang: load_examples(clean_dir, f"en-{lang}", "train", tokenizer, 40) for lang in ("de", "fr", "ga")}


def _flat(batches):
    return [(b.src.tolist(), b.tgt_in.tolist(), b.tgt_out.tolist()) for b in batches]


def test_batches_are_deterministic_and_within_budget(clean_dir, tokenizer):
    ex = _examples(clean_dir, tokenizer)
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


def test_position_restores_exactly(clean_dir, tokenizer):
    ex = _examples(clean_dir, tokenizer)
    ref = TokenBatcher(ex, 64, shuffle=True, seed=3, infinite=True)
    it = iter(ref)
    first = [next(it) for _ in range(len(ref) + 5)]  # crosses an epoch boundary
    state = ref.state_dict()
    expected = [next(it) for _ in range(7)]
    again = TokenBatcher(ex, 64, shuffle=True, seed=3, infinite=True)
    again.load_state_dict(state)
    it2 = iter(again)
    assert _flat([next(it2) for _ in range(7)]) == _flat(expected)
    assert state["epoch"] == 1 and len(first) == len(ref) + 5


def test_ranks_take_turns_on_one_stream_across_epochs(clean_dir, tokenizer):
    # DDP with W ranks must see the batches of one process accumulating W, in the same steps: rank r
    # takes batches r, r+W, ... of one stream, also where an epoch has a batch count W does not divide.
    ex = _examples(clean_dir, tokenizer)
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


def test_misaligned_files_name_the_file(tmp_path, tokenizer):
    (tmp_path / "en-de").mkdir()
    (tmp_path / "en-de" / "train.src").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "en-de" / "train.tgt").write_text("a\n", encoding="utf-8")
    with pytest.raises(InputError, match="train.tgt"):
        load_examples(tmp_path, "en-de", "train", tokenizer, 40)
