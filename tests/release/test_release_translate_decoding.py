"""`babelflow translate` decodes like fairseq-interactive / OpenNMT-py translate: --n-best, --scores,
--max-length, a repetition guard off by default (PyTorch and CTranslate2), and an output that never holds
U+FFFD from byte pieces nor a placeholder twice. On the tiny release of conftest.py, whose random model
repeats a piece up to the length limit: just what the limits and the guard are for."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from babelflow import placeholders
from babelflow.cli import main
from babelflow.decode import ban_repeated_ngrams, ban_runs, encode_limited, translate_ids, translate_nbest
from babelflow.metrics import repeats_a_word
from babelflow.specials import EOS_ID

ROOT = Path(__file__).resolve().parents[2]
INPUT = ["a man is riding a bike", "", "two dogs play in the snow", "the girl reads a book"]


@pytest.fixture(scope="module")
def model_and_rows(release_dir):
    from babelflow.models import load_model
    from babelflow.tokenizer import Tokenizer

    tok = Tokenizer(release_dir / "spm.model")
    rows = [encode_limited(tok, s, "de", 128)[0] for s in INPUT if s]
    return load_model(release_dir), tok, rows


def repeated_ngram(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) != len(set(grams))


def run_translate(release_dir, tmp_path, *extra) -> list[str]:
    inp, out = tmp_path / "in.txt", tmp_path / "out.txt"
    inp.write_text("\n".join(INPUT) + "\n", encoding="utf-8")
    assert main(["translate", "--release", str(release_dir), "--to", "de", "--input", str(inp),
                 "--output", str(out), "--threads", "1", *extra]) == 0
    return out.read_text(encoding="utf-8").split("\n")[:-1]


# ------------------------------------------------------------------------------------- n-best, scores
def test_n_best_with_scores(release_dir, tmp_path):
    lines = run_translate(release_dir, tmp_path, "--beam", "3", "--n-best", "3", "--scores")
    assert len(lines) == 3 * len(INPUT)  # N lines per input line, so still aligned
    groups = [lines[i:i + 3] for i in range(0, len(lines), 3)]
    assert groups[1] == ["", "", ""]  # the blank input line
    for group in (groups[0], groups[2], groups[3]):
        scores = [float(line.split("\t", 1)[0]) for line in group]
        assert all(line.count("\t") >= 1 for line in group)
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    # The best of the n is the 1-best translation, and scores do not change it.
    best = run_translate(release_dir, tmp_path, "--beam", "3")
    assert [g[0].split("\t", 1)[1] for g in (groups[0], groups[2], groups[3])] == [best[0], best[2], best[3]]


def test_scores_at_beam_one_are_greedy(release_dir, tmp_path):
    greedy = run_translate(release_dir, tmp_path, "--beam", "1")
    scored = run_translate(release_dir, tmp_path, "--beam", "1", "--scores")
    assert [s.split("\t", 1)[1] if s else s for s in scored] == greedy


def test_n_best_over_the_beam_is_one_line(release_dir):
    proc = subprocess.run([sys.executable, "-m", "babelflow.cli", "translate", "--release", str(release_dir),
                           "--to", "de", "--beam", "2", "--n-best", "3"], input=b"hi\n", capture_output=True,
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "--n-best 3" in err, err


# ------------------------------------------------------------------------------ max length, repetition
@pytest.mark.parametrize("beam", [1, 3])
def test_max_length_caps_the_output(model_and_rows, beam):
    model, _, rows = model_and_rows
    free = translate_ids(model, rows, beam, batch_sentences=2)
    assert max(len(h) for h in free) > 3  # the random model runs to the ratio limit
    capped = translate_ids(model, rows, beam, batch_sentences=2, max_length=3)
    assert all(len(h) <= 3 for h in capped)
    assert all(h == f[: len(h)] for h, f in zip(capped, free)) or beam > 1  # greedy: the same beginning


@pytest.mark.parametrize("beam", [1, 3])
def test_no_repeat_ngram_size(model_and_rows, beam):
    model, _, rows = model_and_rows
    free = translate_ids(model, rows, beam, batch_sentences=2)
    assert any(repeated_ngram(h, 2) for h in free)  # off by default: the random model repeats
    for n in (1, 2, 3):
        guarded = translate_ids(model, rows, beam, batch_sentences=2, no_repeat_ngram_size=n)
        assert not any(repeated_ngram(h, n) for h in guarded), n
        # Beam search and greedy still agree at beam 1 with the guard on.
        if beam == 1:
            nb = translate_nbest(model, rows, 1, batch_sentences=2, no_repeat_ngram_size=n)
            assert [h[0].tokens for h in nb] == guarded


def test_ban_repeated_ngrams_is_fairseqs_rule():
    logp = torch.zeros(2, 8)
    history = torch.tensor([[5, 6, 7, 5], [1, 2, 3, 4]])
    ban_repeated_ngrams(logp, history, 2)
    # Row 0 ends in 5, and "5 6" was seen: 6 is banned. Row 1 has no earlier 4: nothing is.
    assert logp[0].isinf().nonzero().flatten().tolist() == [6]
    assert not logp[1].isinf().any()


def longest_run(ids: list[int], max_period: int = 8) -> int:
    """The most consecutive copies of any p-gram of `ids`, p up to max_period."""
    best = 1 if ids else 0
    for p in range(1, max_period + 1):
        for start in range(len(ids)):
            k = 1
            while ids[start + k * p:start + (k + 1) * p] == ids[start:start + p] and start + (k + 1) * p <= len(ids):
                k += 1
            best = max(best, k if start + p <= len(ids) else 1)
    return best


@pytest.mark.parametrize("beam", [1, 3])
def test_max_run_caps_consecutive_copies(model_and_rows, beam):
    model, _, rows = model_and_rows
    free = translate_ids(model, rows, beam, batch_sentences=2)
    assert max(longest_run(h) for h in free) > 3  # off by default: the random model loops
    for r in (1, 3):
        guarded = translate_ids(model, rows, beam, batch_sentences=2, max_run=r)
        assert max(longest_run(h) for h in guarded) <= r, (r, guarded)
        if beam == 1:  # beam search at beam 1 is still greedy with the guard on
            assert [h[0].tokens for h in translate_nbest(model, rows, 1, batch_sentences=2, max_run=r)] == guarded


def test_ban_runs_forbids_only_the_copy_that_would_be_one_too_many():
    logp = torch.zeros(4, 9)
    history = torch.tensor([[1, 2, 5, 6, 4, 4, 4],   # a 4th 4 in a row is banned
                            [1, 2, 3, 2, 3, 2, 3],   # "2 3" three times: a 4th may start, not end
                            [2, 3, 2, 3, 2, 3, 2],   # ... here it would end: 3 is banned
                            [4, 4, 1, 4, 4, 1, 5]])  # recurring, not in a row: nothing
    ban_runs(logp, history, 3)
    assert [r.isinf().nonzero().flatten().tolist() for r in logp] == [[4], [], [3], []]
    logp = torch.zeros(4, 9)
    ban_runs(logp, history, 0)
    assert not logp.isinf().any()


def test_translate_decodes_with_the_releases_max_run(release_dir, tmp_path):
    default = run_translate(release_dir, tmp_path, "--beam", "1")  # the release's evaluate.max_run: 3
    assert default == run_translate(release_dir, tmp_path, "--beam", "1", "--max-run", "3")
    free = run_translate(release_dir, tmp_path, "--beam", "1", "--max-run", "0")
    assert free != default and any(map(repeats_a_word, free))


def test_cli_options_reach_the_decoder(release_dir, tmp_path, model_and_rows):
    _, tok, _ = model_and_rows
    for line in run_translate(release_dir, tmp_path, "--beam", "2", "--max-length", "4",
                              "--no-repeat-ngram-size", "1"):
        ids = tok.sp.EncodeAsIds(line)
        assert len(ids) <= 4 + 1  # re-encoding may split a piece once


def test_ctranslate2_takes_the_same_options(release_dir, tmp_path, model_and_rows):
    pytest.importorskip("ctranslate2", reason="optional export dependency ctranslate2 not installed")
    from babelflow.ct2_decode import CT2Decoder

    model, tok, rows = model_and_rows
    out = tmp_path / "ct2"
    assert main(["export", "--format", "ctranslate2", "--release", str(release_dir), "--output", str(out)]) == 0
    ct2 = CT2Decoder(out, tok.pieces, threads=1, max_positions=128)
    assert ct2.translate_ids(rows, 1) == translate_ids(model, rows, 1)
    assert all(len(h) <= 3 for h in ct2.translate_ids(rows, 2, max_length=3))
    guarded = ct2.translate_ids(rows, 2, no_repeat_ngram_size=2)
    assert guarded and not any(repeated_ngram(h, 2) for h in guarded)
    nbest = ct2.translate_nbest(rows, 3, nbest=3)
    assert all(len(h) == 3 and [x.score for x in h] == sorted((x.score for x in h), reverse=True) for h in nbest)
    lines = run_translate(release_dir, tmp_path, "--ctranslate2", str(out), "--beam", "2", "--n-best", "2",
                          "--scores")
    assert len(lines) == 2 * len(INPUT) and lines[2:4] == ["", ""]


# ------------------------------------------------------------------------------ what decoding outputs
def test_invalid_byte_pieces_never_become_u_fffd(model_and_rows):
    _, tok, _ = model_and_rows
    byte = {b: tok.sp.PieceToId(f"<0x{b:02X}>") for b in (0xC3, 0xBC, 0xD0, 0xB6, 0x80)}
    assert all(tok.sp.IsByte(i) for i in byte.values())
    a, b = tok.sp.EncodeAsIds("a"), tok.sp.EncodeAsIds("b")
    cases = {
        "lone lead byte": a + [byte[0xC3]] + b,
        "stray continuation": a + [byte[0x80]] + b,
        "cut character then a valid one": a + [byte[0xD0], byte[0xC3], byte[0xBC]] + b,
        "lead byte at the end": a + [byte[0xD0]],
    }
    for what, ids in cases.items():
        text = tok.decode(ids + [EOS_ID])
        assert "\ufffd" not in text, what
        assert text.startswith("a") and text.replace(" ", "") in ("ab", "aüb", "a"), (what, text)
    # Valid byte runs are kept: ü and ж.
    assert tok.decode(a + [byte[0xC3], byte[0xBC], byte[0xD0], byte[0xB6]] + b) == "aüж b"


def test_a_placeholder_the_model_repeats_is_restored_once(model_and_rows):
    _, tok, _ = model_and_rows
    src, mapping = tok.encode_source("Open %s now", "de")
    ph0 = tok.sp.PieceToId("<ph0>")
    assert ph0 in src and mapping == ["%s"]
    hyp = tok.sp.EncodeAsIds("öffne <ph0> <ph0> jetzt")
    assert hyp.count(ph0) == 2
    assert tok.decode(hyp, mapping, src) == "öffne %s jetzt"
    # A source holding the placeholder twice gets it twice, never three times.
    src2, mapping2 = tok.encode_source("Copy %s to %s", "de")
    assert src2.count(ph0) == 2 and mapping2 == ["%s"]
    hyp2 = tok.sp.EncodeAsIds("kopiere <ph0> nach <ph0> <ph0>")
    assert tok.decode(hyp2, mapping2, src2) == "kopiere %s nach %s"


def test_unmask_counts():
    assert placeholders.unmask("<ph0> und <ph0>", ["%s"], [1]) == "%s und"
    assert placeholders.unmask("<ph0> <ph0> x", ["%s"], [1]) == "%s x"
    assert placeholders.unmask("<ph1> x <ph0>", ["%s"], [1]) == "x %s"  # a symbol the source never had
    assert placeholders.unmask("<ph0> und <ph0>", ["%s"]) == "%s und %s"  # no counts: as many as emitted
