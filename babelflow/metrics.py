"""Corpus-level BLEU, chrF++ and TER through sacrebleu's Python API, each with its signature.

The signature records every setting that changes a score (tokenizer, smoothing, case, version), so a
number in a report can be compared with a number from elsewhere only when the signatures agree.

Tokenizer choice for BLEU, all offline (no MeCab, no SentencePiece download):
- zh: sacrebleu's "zh" tokenizer (splits CJK characters, 13a elsewhere).
- ja, ko, th, lo, km, my (no spaces between words): "char"; the MeCab and flores tokenizers would
  need extra packages or a model download, so these scores are character-level BLEU.
- everything else: "13a", sacrebleu's default (the WMT standard).
TER gets `asian_support` for the CJK languages, so their characters count as words there too.
"""
from __future__ import annotations

import re
from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF, TER

from babelflow.errors import BabelflowError
from babelflow.languages import base_language

# Everything str.splitlines() breaks on: a decoder with byte fallback can emit any of them, and one
# inside a hypothesis would shift every following line of a .hyp file against its reference.
_LINE_BREAKS = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+")

# What an empty test split gets instead of scores: sacrebleu scores nothing as BLEU 0 / TER 0, which
# reads like a model that failed. Readers show pairs whose "bleu" is None with this note.
NOT_SCORED = "n = 0, not scored"
# What `score` reports per pair, in the order of `metric_objects`; the macro average and the tables read it.
SCORES = ("bleu", "chrfpp", "ter", "bleu_lc")

CHAR_LEVEL_LANGS = frozenset({"ja", "ko", "th", "lo", "km", "my"})
ASIAN_TER_LANGS = frozenset({"zh", "ja", "ko"})


# An output repeating one word this many times in a row is a decoding failure, not style ("Fehler bei
# bei bei bei"). The evaluate stage counts such outputs and the model card states them: this is the one
# definition both use.
REPEAT_RUN = 4


def repeats_a_word(text: str) -> bool:
    """Whether `text` holds one whitespace-separated word REPEAT_RUN or more times in a row."""
    words = text.split()
    return any(len(set(words[i:i + REPEAT_RUN])) == 1 for i in range(len(words) - REPEAT_RUN + 1))


def repetition(hyps: Sequence[str]) -> dict:
    """How many of `hyps` repeat a word (`repeats`) and their share (None for no hypotheses)."""
    k = sum(map(repeats_a_word, hyps))
    return {"repeats": k, "repeats_share": k / len(hyps) if hyps else None}


def single_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text)


def bleu_tokenizer(tgt_lang: str) -> str:
    base = base_language(tgt_lang)
    if base == "zh":
        return "zh"
    if base in CHAR_LEVEL_LANGS:
        return "char"
    return "13a"


def metric_objects(tgt_lang: str) -> tuple[BLEU, CHRF, TER, BLEU]:
    """The sacrebleu metrics behind SCORES, in that order."""
    base = base_language(tgt_lang)
    return (
        BLEU(tokenize=bleu_tokenizer(tgt_lang)),
        CHRF(word_order=2),  # chrF++: character n-grams plus word uni- and bigrams
        TER(asian_support=base in ASIAN_TER_LANGS),
        # Lowercased BLEU on the same tokens: papers that score lowercased tokenised text (fairseq or
        # multi-bleu on Moses tokens, as Multi30k's do) are compared with this one, not with cased BLEU.
        BLEU(tokenize=bleu_tokenizer(tgt_lang), lowercase=True),
    )


def bleu(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str) -> float:
    """sacrebleu's corpus BLEU alone, as `score` computes it (for dev BLEU, where chrF++ and TER would be
    thrown away)."""
    return float(metric_objects(tgt_lang)[0].corpus_score(list(hyps), [list(refs)]).score)


def score(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str) -> dict:
    """Score detokenized hypotheses against one reference each.

    Returns {<each of SCORES>: float, "signatures": {<each of SCORES>: str}, "n": int, "tokenize": str};
    bleu_lc is BLEU on lowercased text. Scores are sacrebleu's own corpus scores (0-100), not rounded.
    No sentences gives n = 0, the scores None, no signatures and "note": NOT_SCORED.
    """
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise BabelflowError(
            f"cannot score {tgt_lang}: {len(hyps)} hypotheses but {len(refs)} references "
            "(the hypothesis and reference files must be aligned line by line)"
        )
    if not hyps:
        return {"n": 0, "tokenize": bleu_tokenizer(tgt_lang), "signatures": {}, **dict.fromkeys(SCORES),
                "note": NOT_SCORED}
    for name, seq in (("hypothesis", hyps), ("reference", refs)):
        for i, s in enumerate(seq):
            if not isinstance(s, str):
                raise BabelflowError(f"{name} {i + 1} is {type(s).__name__}, not str")
    out: dict = {"n": len(hyps), "tokenize": bleu_tokenizer(tgt_lang), "signatures": {}}
    for name, metric in zip(SCORES, metric_objects(tgt_lang)):
        result = metric.corpus_score(hyps, [refs])
        out[name] = float(result.score)
        out["signatures"][name] = str(metric.get_signature())
    return out
