"""CTranslate2 export: greedy outputs equal PyTorch's. Needs the optional ctranslate2 package
(skipped with a reason without it; run with it installed, e.g. `pip install babelflow[export]`)."""
from __future__ import annotations

import pytest
import torch

from babelflow.decode import greedy, max_lengths
from babelflow.errors import BabelflowError
from babelflow.loss import token_cross_entropy
from babelflow.models import build_model
from tests.models.toy import WordTokenizer, make_batch, make_pairs, tiny_config, single_thread  # noqa: F401 (autouse)

ctranslate2 = pytest.importorskip("ctranslate2", reason="optional export dependency ctranslate2 not installed")

from babelflow.export import export_ctranslate2  # noqa: E402


def test_ctranslate2_greedy_matches_pytorch(tmp_path):
    tok = WordTokenizer()
    src, tgt_in, tgt_out = make_batch(tok, make_pairs(32))
    torch.manual_seed(0)
    model = build_model(tiny_config("transformer"), tok.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):  # partly trained: outputs are neither trivial nor all correct
        loss = token_cross_entropy(model(src, tgt_in), tgt_out) / tgt_out.ne(0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = export_ctranslate2(model, tok.itos, tmp_path / "ct2")
    translator = ctranslate2.Translator(str(out), device="cpu", intra_threads=1)
    tokens = [[tok.itos[i] for i in row if i != 0] for row in src.tolist()]
    res = translator.translate_batch(tokens, beam_size=1, max_decoding_length=40)
    ct2 = [[tok.stoi[t] for t in r.hypotheses[0]] for r in res]
    ours = greedy(model, src)
    limits = max_lengths(src, 2.0, model)
    for mine, theirs, limit in zip(ours, ct2, limits):
        # Where PyTorch stopped at its length limit (forced EOS), CTranslate2 decodes on.
        assert (theirs[: len(mine)] if len(mine) == limit - 1 else theirs) == mine


def test_int8_export_leaves_the_model_untouched(tmp_path):
    tok = WordTokenizer()
    torch.manual_seed(0)
    model = build_model(tiny_config("transformer"), tok.vocab_size).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_ctranslate2(model, tok.itos, tmp_path / "ct2", quantization="int8")
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == []


def test_export_rejects_rnn(tmp_path):
    tok = WordTokenizer()
    with pytest.raises(BabelflowError, match="only the transformer"):
        export_ctranslate2(build_model(tiny_config("rnn"), tok.vocab_size), tok.itos, tmp_path / "x")


def test_ct2_decoder_keeps_order_across_parallel_batches(tmp_path):
    from babelflow.ct2_decode import CT2Decoder

    tok = WordTokenizer()
    src, _, _ = make_batch(tok, make_pairs(11))
    torch.manual_seed(0)
    model = build_model(tiny_config("transformer"), tok.vocab_size).eval()
    out = export_ctranslate2(model, tok.itos, tmp_path / "ct2")
    rows = [[i for i in row if i != 0] for row in src.tolist()]
    one_by_one = CT2Decoder(out, tok.itos, threads=1, parallel_batches=False)
    expected = [one_by_one.translate_ids([r], beam_size=2)[0] for r in rows]
    assert len({tuple(e) for e in expected}) > 1  # distinct outputs, so a mix-up of order shows
    parallel = CT2Decoder(out, tok.itos, threads=3)
    # Batches of one sentence: each gets its own length limit, as when decoded alone.
    assert parallel.translate_ids(rows, beam_size=2, batch_sentences=1) == expected


def test_ct2_decoder_refuses_other_vocabulary_and_overlong_sources(tmp_path):
    from babelflow.ct2_decode import CT2Decoder
    from babelflow.errors import InputError

    tok = WordTokenizer()
    model = build_model(tiny_config("transformer"), tok.vocab_size).eval()
    out = export_ctranslate2(model, tok.itos, tmp_path / "ct2")
    other = list(tok.itos)
    other[-1] = other[-1] + "x"
    with pytest.raises(InputError, match="vocabulary") as err:
        CT2Decoder(out, other)
    assert str(out) in str(err.value)
    decoder = CT2Decoder(out, tok.itos, threads=1, max_positions=4)
    with pytest.raises(BabelflowError, match="5 tokens is longer than the model's 4 positions"):
        decoder.translate_ids([[5, 6, 7, 8, 2]])
