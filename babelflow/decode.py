"""Batched greedy and beam-search decoding for any `Seq2Seq`, and `translate` for raw text.

Beam search follows fairseq's bookkeeping: each step takes the 2K best extensions of the K live
beams; EOS candidates among the first K are finished hypotheses, the best K non-EOS candidates
continue. A sentence is done once it has K finished hypotheses (or reaches its max length, where
the live beams are forced to end). Finished hypotheses are ranked with the GNMT length penalty
score / ((5 + |y|) / 6) ** alpha, |y| counting the EOS; alpha = 0 ranks by raw log-probability.
The maximum target length is ceil(max_length_ratio * source_length) + 5 per sentence, capped at
`max_length` + 1 (tokens plus the EOS) when given, as OpenNMT-py's -max_length. `no_repeat_ngram_size`
n > 0 forbids any token that would repeat an n-gram already in the hypothesis (fairseq's
--no-repeat-ngram-size); it is off by default. `max_run` r > 0 is narrower: it forbids only the token
that would make the last p tokens occur r + 1 times in a row (p up to MAX_RUN_PERIOD pieces, so a
word of several pieces too), the "bei bei bei bei" of an undertrained model, while a phrase may
still recur later in the sentence.

A source longer than the model's positions (`source_limit`) is cut there with a warning naming its
line, as fairseq and OpenNMT truncate to their maximum source length: time and memory stay bounded
(attention is quadratic in the length) and every line still gets a translation.
"""
from __future__ import annotations

import contextlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
from torch import Tensor

from babelflow.models.base import Seq2Seq
from babelflow.specials import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger("babelflow.decode")

# Models without a position table (the RNN) get the Transformer's default one as their source limit.
DEFAULT_SOURCE_LIMIT = 512
# A SentencePiece piece spans at most 16 characters (max_piece_length): a line longer than this many
# characters per allowed token cannot fit, and is cut before encoding so that an enormous line costs
# the tokenizer no more time or memory than one that fits.
CHARS_PER_TOKEN = 16


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # length-penalised log-probability
    logprob: float  # raw log-probability (EOS included)


class SourceTokenizer(Protocol):
    def encode_source(self, text: str, tgt_lang: str) -> tuple[list[int], Any]: ...

    def decode(self, ids: Sequence[int], mapping: Any = ..., source_ids: Sequence[int] | None = None) -> str: ...


@contextlib.contextmanager
def eval_mode(model: Seq2Seq) -> Iterator[None]:
    """Decode without dropout and without autograd, then give the caller back its mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def decoding_workers(device: torch.device | str) -> Iterator[int]:
    """The `workers` to pass to translate_ids on `device`, for the duration of the block.

    On CPU: one worker per intra-op thread the process was given, each limited to one thread
    (restored afterwards), see translate_ids. On GPU: one worker, threads untouched.
    """
    if torch.device(device).type != "cpu":
        yield 1
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def source_limit(max_positions: int | None) -> int:
    """Most source tokens (target tag and EOS included) decoded by a model whose config says
    `max_positions`: the rows of the Transformer's position table, and of its CTranslate2 export."""
    return int(max_positions or DEFAULT_SOURCE_LIMIT)


def encode_limited(tokenizer: SourceTokenizer, text: str, tgt_lang: str, limit: int) -> tuple[list[int], Any, bool]:
    """`tokenizer.encode_source(text, tgt_lang)` cut to `limit` ids (the tag and the EOS kept), and
    whether it was cut."""
    max_chars = limit * CHARS_PER_TOKEN
    cut = len(text) > max_chars
    ids, mapping = tokenizer.encode_source(text[:max_chars] if cut else text, tgt_lang)
    if len(ids) > limit:
        ids, cut = ids[: limit - 1] + [EOS_ID], True
    return ids, mapping, cut


def truncation_warning(where: str, limit: int) -> str:
    return f"{where}: cut to the model's {limit} source tokens; the rest of the line is not translated"


def gnmt_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


def length_limit(source_length: int, max_length_ratio: float, cap: int | None = None,
                 max_length: int | None = None) -> int:
    """Most target tokens (EOS included) decoded for a source of `source_length` tokens; `cap` is the
    model's positions, `max_length` the user's limit on tokens before the EOS."""
    limit = math.ceil(max_length_ratio * source_length) + 5
    limit = min(limit, cap) if cap else limit
    return min(limit, max_length + 1) if max_length else limit


def max_lengths(src: Tensor, max_length_ratio: float, model: Seq2Seq, max_length: int | None = None) -> list[int]:
    cap = getattr(model, "max_positions", None)
    return [length_limit(n, max_length_ratio, cap, max_length) for n in src.ne(model.pad_id).sum(1).tolist()]


def ban_repeated_ngrams(logp: Tensor, history: Tensor, n: int) -> None:
    """Set to -inf (in place) each row's log-probability of every token that would complete an n-gram
    already in that row of `history` (the tokens generated so far, [rows, t], BOS excluded)."""
    t = history.size(1)
    if n <= 0 or t < n:
        return
    grams = history.unfold(1, n, 1)  # [rows, t - n + 1, n]
    # An n-gram whose first n - 1 tokens are the last n - 1 generated ones would be repeated by its last.
    match = grams[:, :, :-1].eq(history[:, t - n + 1:].unsqueeze(1)).all(-1)
    rows, at = torch.nonzero(match, as_tuple=True)
    logp[rows, grams[rows, at, -1]] = float("-inf")


MAX_RUN_PERIOD = 8  # pieces: a word or short phrase


def ban_runs(logp: Tensor, history: Tensor, max_run: int, max_period: int = MAX_RUN_PERIOD) -> None:
    """Set to -inf (in place) each row's log-probability of the token that would complete the
    (max_run + 1)-th consecutive copy of the row's last p generated tokens, for p = 1..max_period
    (`history`: [rows, t], BOS excluded)."""
    t = history.size(1)
    if max_run <= 0:
        return
    for p in range(1, max_period + 1):
        span = (max_run + 1) * p - 1  # these tokens and the next would be max_run + 1 copies
        if t < span:
            break
        w = history[:, t - span:]
        periodic = w[:, :-p].eq(w[:, p:]).all(1)  # span == p (max_run 1, p 1): no pairs, all True
        rows = torch.nonzero(periodic, as_tuple=True)[0]
        logp[rows, w[rows, span - p]] = float("-inf")


def greedy(model: Seq2Seq, src: Tensor, max_length_ratio: float = 2.0, *, max_length: int | None = None,
           no_repeat_ngram_size: int = 0, max_run: int = 0) -> list[list[int]]:
    """Argmax decoding; the reference beam search must reproduce with beam_size=1."""
    with eval_mode(model):
        B = src.size(0)
        limits = torch.tensor(max_lengths(src, max_length_ratio, model, max_length), device=src.device)
        enc = model.encode(src)
        state = model.init_state(enc)
        prev = torch.full((B,), BOS_ID, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        out: list[Tensor] = []
        for t in range(int(limits.max())):
            logp, state = model.decode_step(prev, state, enc)
            if no_repeat_ngram_size and out:
                ban_repeated_ngrams(logp, torch.stack(out, 1), no_repeat_ngram_size)
            if max_run and out:
                ban_runs(logp, torch.stack(out, 1), max_run)
            # At the length limit the only allowed token is EOS, as in beam search.
            at_limit = limits.eq(t + 1)
            logp[at_limit] = float("-inf")
            logp[at_limit, EOS_ID] = 0.0
            tok = logp.argmax(-1).masked_fill(done, PAD_ID)
            out.append(tok)
            done |= tok.eq(EOS_ID)
            if bool(done.all()):
                break
            prev = tok
        toks = torch.stack(out, 1).tolist()
    return [_strip(row) for row in toks]


def _strip(row: list[int]) -> list[int]:
    if EOS_ID in row:
        row = row[: row.index(EOS_ID)]
    return [t for t in row if t != PAD_ID]


def _live_best(cand_scores: Tensor, is_eos: Tensor, K: int) -> Tensor:
    """Best raw score among the candidates that will stay live, per sentence."""
    return cand_scores.masked_fill(is_eos, float("-inf"))[:, : 2 * K].max(dim=1).values


def beam_search_nbest(
    model: Seq2Seq,
    src: Tensor,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_length_ratio: float = 2.0,
    nbest: int = 1,
    *,
    max_length: int | None = None,
    no_repeat_ngram_size: int = 0,
    max_run: int = 0,
) -> list[list[Hypothesis]]:
    """For each source row, the `nbest` best hypotheses (best first); nbest <= beam_size."""
    if beam_size < 1 or not 1 <= nbest <= beam_size:
        raise ValueError(f"need 1 <= nbest ({nbest}) <= beam_size ({beam_size})")
    with eval_mode(model):
        device = src.device
        B, K = src.size(0), beam_size
        limits = max_lengths(src, max_length_ratio, model, max_length)
        limits_t = torch.tensor(limits, device=device)
        enc = model.encode(src)
        enc = enc.index_select(torch.arange(B, device=device).repeat_interleave(K))
        state = model.init_state(enc)
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # all beams start identical: keep one so the first step yields K distinct ones
        tokens = torch.full((B * K, 1), BOS_ID, dtype=torch.long, device=device)
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        done = [False] * B
        offsets = (torch.arange(B, device=device) * K)[:, None]
        for step in range(max(limits)):
            logp, state = model.decode_step(tokens[:, -1], state, enc)
            if no_repeat_ngram_size:
                ban_repeated_ngrams(logp, tokens[:, 1:], no_repeat_ngram_size)
            if max_run:
                ban_runs(logp, tokens[:, 1:], max_run)
            V = logp.size(-1)
            logp = logp.view(B, K, V)
            at_limit = limits_t.eq(step + 1)
            if bool(at_limit.any()):
                logp[at_limit] = float("-inf")
                logp[at_limit, :, EOS_ID] = 0.0
            cand = (scores[:, :, None] + logp).view(B, K * V)
            n_cand = min(2 * K, K * V)
            cand_scores, cand_idx = cand.topk(n_cand, dim=1)
            cand_beam, cand_tok = cand_idx // V, cand_idx % V
            is_eos = cand_tok.eq(EOS_ID) & torch.isfinite(cand_scores)

            # Finished hypotheses: EOS among the first K candidates of a sentence not yet done.
            eos_rows, eos_cols = torch.nonzero(is_eos[:, :K], as_tuple=True)
            if eos_rows.numel():
                # Only the finishing rows' histories go to Python, not the whole [B*K, t] matrix.
                rows = eos_rows * K + cand_beam[eos_rows, eos_cols]
                hist = tokens.index_select(0, rows).tolist()
                for i, (b, sc) in enumerate(zip(eos_rows.tolist(), cand_scores[eos_rows, eos_cols].tolist())):
                    if done[b]:
                        continue
                    toks = hist[i][1:]
                    finished[b].append(Hypothesis(toks, sc / gnmt_penalty(len(toks) + 1, length_penalty), sc))
            live_best = _live_best(cand_scores, is_eos, K).tolist()
            lp_now = gnmt_penalty(step + 1, length_penalty)
            for b in range(B):
                if done[b]:
                    continue
                if limits[b] <= step + 1:
                    done[b] = True
                elif len(finished[b]) >= K:
                    kth = sorted((h.score for h in finished[b]), reverse=True)[K - 1]
                    done[b] = live_best[b] / lp_now <= kth
            if all(done):
                break

            # Live beams: the K best non-EOS candidates (stable order keeps ties deterministic).
            rank = torch.arange(n_cand, device=device)[None].expand(B, -1) + is_eos.long() * n_cand
            keep = rank.topk(K, dim=1, largest=False).indices.sort(dim=1).values
            scores = cand_scores.gather(1, keep)
            # A non-EOS candidate can itself be -inf (tiny vocabularies); it stays dead.
            sel_beam = cand_beam.gather(1, keep)
            sel_tok = cand_tok.gather(1, keep)
            sel_tok = torch.where(torch.isfinite(scores), sel_tok, torch.full_like(sel_tok, PAD_ID))
            scores = scores.masked_fill(cand_tok.gather(1, keep).eq(EOS_ID), float("-inf"))
            flat = (offsets + sel_beam).view(-1)
            tokens = torch.cat([tokens.index_select(0, flat), sel_tok.view(-1, 1)], dim=1)
            state = model.reorder_state(state, flat, same_source=True)

        results = []
        for b in range(B):
            hyps = finished[b]
            if not hyps:  # only if every path died; return the best live prefix rather than nothing
                row = int(scores[b].argmax())
                toks = [t for t in tokens[b * K + row, 1:].tolist() if t not in (PAD_ID, EOS_ID)]
                hyps = [Hypothesis(toks, float(scores[b, row]), float(scores[b, row]))]
            hyps = sorted(hyps, key=lambda h: h.score, reverse=True)
            results.append(hyps[:nbest])
    return results


def beam_search(
    model: Seq2Seq,
    src: Tensor,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_length_ratio: float = 2.0,
    **limits,
) -> list[list[int]]:
    """The best hypothesis per source row, as token ids without BOS/EOS; `limits`: beam_search_nbest's
    max_length, no_repeat_ngram_size and max_run."""
    return [h[0].tokens for h in beam_search_nbest(model, src, beam_size, length_penalty, max_length_ratio, **limits)]


def pad_batch(rows: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
    return out.to(device)


def length_sorted_batches(sources: Sequence[Sequence[int]], batch_sentences: int) -> list[list[int]]:
    """Indices into `sources`, longest first, cut into batches of `batch_sentences` (less padding)."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]), reverse=True)
    return [order[start : start + batch_sentences] for start in range(0, len(order), batch_sentences)]


def translate_ids(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_length_ratio: float = 2.0,
    batch_sentences: int = 64,
    workers: int = 1,
    **limits,
) -> list[list[int]]:
    """Decode id sequences in length-sorted batches (less padding), returned in input order; `limits`:
    beam_search_nbest's max_length, no_repeat_ngram_size and max_run.

    `workers` > 1 decodes that many batches at once on Python threads (torch releases the GIL inside
    its ops). On CPU pair it with one intra-op thread per worker (`torch.set_num_threads(1)`): a
    decoding step is many small matrix products and a beam bookkeeping loop, which keep one core
    busy far better than they split across two (bench/decode_speed.py: 2 workers x 1 thread is
    1.1-1.5x one batch on 2 threads). The batches are the same whatever `workers` is, so is the output.
    """
    def decode(src: Tensor) -> list[list[int]]:
        if beam_size == 1:
            return greedy(model, src, max_length_ratio, **limits)
        return beam_search(model, src, beam_size, length_penalty, max_length_ratio, **limits)

    return _batched(model, sources, batch_sentences, workers, decode)


def translate_nbest(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_length_ratio: float = 2.0,
    batch_sentences: int = 64,
    workers: int = 1,
    nbest: int = 1,
    **limits,
) -> list[list[Hypothesis]]:
    """translate_ids with each source's `nbest` best hypotheses and their scores (beam search, also
    at beam_size 1, where it gives greedy's hypothesis)."""
    def decode(src: Tensor) -> list[list[Hypothesis]]:
        return beam_search_nbest(model, src, beam_size, length_penalty, max_length_ratio, nbest, **limits)

    return _batched(model, sources, batch_sentences, workers, decode)


def _batched(model: Seq2Seq, sources: Sequence[Sequence[int]], batch_sentences: int, workers: int,
             decode: Callable[[Tensor], list]) -> list:
    """`decode` over the length-sorted batches of `sources`, `workers` batches at once (translate_ids);
    its per-row results in input order."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not sources:
        return []
    device = next(model.parameters()).device
    batches = length_sorted_batches(sources, batch_sentences)

    def run(idx: list[int]) -> list:
        # inference_mode is thread-local: each worker thread has to enter its own.
        with torch.inference_mode():
            return decode(pad_batch([sources[i] for i in idx], device))

    out: list = [None] * len(sources)
    # eval() is set once here, never inside a worker: a worker leaving eval_mode would switch
    # dropout back on under the others.
    with eval_mode(model):
        if workers == 1 or len(batches) == 1:
            decoded = [run(idx) for idx in batches]
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                decoded = list(pool.map(run, batches))
            finally:
                # On Ctrl-C the queued batches are dropped; only those already running are waited for.
                pool.shutdown(cancel_futures=True)
    for idx, hyps in zip(batches, decoded):
        for i, h in zip(idx, hyps):
            out[i] = h
    return out


def translate(
    model: Seq2Seq,
    tokenizer: SourceTokenizer,
    sentences: Sequence[str],
    tgt_lang: str,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    max_length_ratio: float = 2.0,
    batch_sentences: int = 64,
    workers: int = 1,
    source: str | None = None,
    **limits,
) -> list[str]:
    """Translate raw sentences into `tgt_lang` (selected by the tag the tokenizer prepends).

    A sentence over the model's `source_limit` is cut with a logged warning naming it as line i of
    `source` (a file the sentences are the lines of), or as sentence i."""
    limit = source_limit(getattr(getattr(model, "cfg", None), "max_positions", None))
    encoded = [encode_limited(tokenizer, s, tgt_lang, limit) for s in sentences]
    for i, (_, _, cut) in enumerate(encoded):
        if cut:
            log.warning(truncation_warning(f"{source}:{i + 1}" if source else f"sentence {i + 1}", limit))
    ids = translate_ids(
        model, [e[0] for e in encoded], beam_size, length_penalty, max_length_ratio, batch_sentences, workers,
        **limits)
    return [tokenizer.decode(h, e[1], e[0]) for h, e in zip(ids, encoded)]
