"""Each family overfits 32 pairs and then decodes them back (greedy and beam); decoding properties."""
from __future__ import annotations

import pytest
import sacrebleu
import torch

from babelflow.decode import (
    beam_search,
    beam_search_nbest,
    decoding_workers,
    greedy,
    translate,
    translate_ids,
)
from babelflow.loss import token_cross_entropy
from babelflow.models import build_model
from tests.models.toy import WordTokenizer, make_batch, make_pairs, tiny_config, single_thread  # noqa: F401 (autouse)



STEPS = {"transformer": 160, "rnn": 80}


@pytest.fixture(scope="module", params=["transformer", "rnn"])
def trained(request):
    arch = request.param
    tok = WordTokenizer()
    pairs = make_pairs(32)
    src, tgt_in, tgt_out = make_batch(tok, pairs)
    torch.manual_seed(0)
    model = build_model(tiny_config(arch), tok.vocab_size).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(STEPS[arch]):
        loss = token_cross_entropy(model(src, tgt_in), tgt_out) / tgt_out.ne(0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, tok, pairs, src


def bleu(hyps, pairs):
    return sacrebleu.corpus_bleu(hyps, [[t for _, t in pairs]]).score


def test_overfit_greedy_reproduces_targets(trained):
    model, tok, pairs, _ = trained
    hyps = translate(model, tok, [s for s, _ in pairs], "de", beam_size=1, batch_sentences=7)
    assert bleu(hyps, pairs) > 90
    assert model.training  # translate restores the caller's mode


def test_overfit_beam_reproduces_targets(trained):
    model, tok, pairs, _ = trained
    hyps = translate(model, tok, [s for s, _ in pairs], "de", beam_size=4, batch_sentences=5)
    assert bleu(hyps, pairs) > 90


def test_beam_one_equals_greedy(trained):
    model, _, _, src = trained
    model.eval()
    for alpha in (0.0, 1.0):
        assert beam_search(model, src, beam_size=1, length_penalty=alpha) == greedy(model, src)


def test_nbest_sorted_and_distinct(trained):
    model, _, _, src = trained
    model.eval()
    out = beam_search_nbest(model, src[:6], beam_size=4, nbest=3)
    assert [len(h) for h in out] == [3] * 6
    for hyps in out:
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 3


def test_order_restored_and_batching_invariant(trained):
    model, tok, pairs, _ = trained
    sents = [s for s, _ in pairs][:12]
    ids = [tok.encode_source(s, "de")[0] for s in sents]
    together = translate_ids(model, ids, beam_size=3, batch_sentences=4)
    alone = [translate_ids(model, [i], beam_size=3)[0] for i in ids]
    assert together == alone


def test_parallel_workers_give_the_serial_output(trained):
    model, tok, pairs, _ = trained
    ids = [tok.encode_source(s, "de")[0] for s, _ in pairs]
    model.train()  # dropout must stay off in every worker, and the mode come back afterwards
    for beam in (1, 3):
        serial = translate_ids(model, ids, beam_size=beam, batch_sentences=5)
        for workers in (2, 3):
            assert translate_ids(model, ids, beam_size=beam, batch_sentences=5, workers=workers) == serial
    assert model.training
    with pytest.raises(ValueError, match="workers"):
        translate_ids(model, ids, workers=0)


def test_decoding_workers_trade_intra_op_threads_for_batches():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with decoding_workers("cpu") as workers:
            assert (workers, torch.get_num_threads()) == (3, 1)
        assert torch.get_num_threads() == 3
        with decoding_workers(torch.device("cuda", 0)) as workers:  # a GPU decodes one batch at a time
            assert (workers, torch.get_num_threads()) == (1, 3)
    finally:
        torch.set_num_threads(before)


def test_untrained_model_respects_max_length():
    tok = WordTokenizer()
    torch.manual_seed(5)
    model = build_model(tiny_config("rnn"), tok.vocab_size).eval()
    src, _, _ = make_batch(tok, make_pairs(4, seed=9))
    lens = src.ne(0).sum(1).tolist()
    for hyps in (greedy(model, src, 1.0), beam_search(model, src, 3, max_length_ratio=1.0)):
        for h, n in zip(hyps, lens):
            assert len(h) + 1 <= n + 5  # ceil(1.0 * n) + 5, counting the EOS


def test_invalid_nbest():
    tok = WordTokenizer()
    model = build_model(tiny_config("rnn"), tok.vocab_size).eval()
    src, _, _ = make_batch(tok, make_pairs(2))
    with pytest.raises(ValueError):
        beam_search_nbest(model, src, beam_size=2, nbest=3)
