"""The fast paths of the clean stage give the same answers as the slow references they replace."""
from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from babelflow.clean import filters as F
from babelflow.clean import lang_id
from babelflow.clean.normalize import collapse_whitespace, remove_invisible

LANGS = ("cs", "de", "en", "fr")


def _py3langid_reference(langs):
    """py3langid 0.2.x's own (per-text, Python loop) classifier over the same model."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)
    ident.set_languages(list(langs))
    return ident


def test_batched_langid_matches_the_per_text_classifier(multi30k_dir):
    texts = []
    for lang in ("en", "de", "fr", "cs"):
        texts += (multi30k_dir / f"train.{lang}").read_text(encoding="utf-8").splitlines()[:150]
    texts += ["", "OK", "Öffnen", "Ouvrir le fichier", "Soubor", "日本語のテキスト", "x" * 5000, texts[0]]
    preds, probs = lang_id.classify(texts, lang_id.tables(LANGS))
    ref = _py3langid_reference(LANGS)
    # The reference sums in float32 (py3langid 0.2) where langid.py and lang_id use float64: the
    # labels agree, the probabilities to float32 precision.
    for text, pred, prob in zip(texts, preds, probs):
        rp, rprob = ref.classify(text)
        assert pred == rp, text
        assert prob == pytest.approx(float(rprob), abs=1e-4), text
    assert preds[-1] == preds[0] and probs[-1] == probs[0]  # duplicates in a batch
    assert {"en", "de", "fr", "cs"} <= set(preds)


def test_langid_result_does_not_depend_on_the_batch(multi30k_dir):
    texts = (multi30k_dir / "train.de").read_text(encoding="utf-8").splitlines()[:60]
    texts += (multi30k_dir / "train.fr").read_text(encoding="utf-8").splitlines()[:60]
    t = lang_id.tables(LANGS)
    whole = lang_id.classify(texts, t)
    alone = [lang_id.classify([x], t) for x in texts]
    assert whole[0] == [p[0] for p, _ in alone]
    assert whole[1].tolist() == [float(q[0]) for _, q in alone]  # bit for bit, not approximately


def test_langid_tables_refuse_unknown_languages():
    with pytest.raises(ValueError, match="xx"):
        lang_id.tables(("en", "xx"))
    assert {"en", "sv", "nb", "da"} <= lang_id.languages()


_PUNCT = "a b.,;:!?'’`\"()[]{}«»“”„-–—/|&$€%…\t\xa0،؟ 0123456789:///"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_PUNCT, max_size=60) | st.text(max_size=60))
@example("0?\x1f")  # stdlib \s took \x1c-\x1f for whitespace, NLTK's `regex` does not
def test_gated_toktok_equals_nltk_on_punctuation_soup(text):
    from nltk.tokenize import ToktokTokenizer

    assert F.tokenize(text) == ToktokTokenizer().tokenize(text)


def test_toktok_gates_are_derived_from_the_patterns():
    specs = {p: gate for p, _, _, gate in F.toktok_specs()}
    quoted_period = specs[r"""(?<!\.)\.[^\S\x1c-\x1f]*(["'’»›”]) *$"""]  # needs both a period and a quote
    assert quoted_period == (frozenset("."), frozenset("\"'’»›”"))
    assert specs[r"(-{2,})"] == ("--",)
    assert " {2,}" not in specs  # the last rule only squeezes spaces, which split() ignores
    assert F._gate("a|b", 0) == (frozenset("ab"),) and F._gate("ab|cd", 0) is None and F._gate("x", re.IGNORECASE) is None


def test_whitespace_and_invisible_fast_paths_match_the_slow_definitions():
    ws = re.compile(r"\s+")
    spaces = "".join(chr(c) for c in range(sys.maxunicode + 1) if re.match(r"\s", chr(c)))
    for text in (f"a{spaces}b", f"{spaces}x y{spaces}", "plain text", "é\u00a0ü"):
        assert collapse_whitespace(text) == ws.sub(" ", text).strip()
    for text in ("Größe ändern", "Ελληνικά", "\u00a0x", "a\u200bb", "tab\there"):
        slow = "".join(" " if ch in "\t\n\r\x0b\x0c\x85" else ch for ch in text
                       if ch in "\t\n\r\x0b\x0c\x85" or __import__("unicodedata").category(ch) not in {"Cf", "Cc", "Cs", "Co"})
        assert remove_invisible(text) == slow


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_numbers_agree_equals_counter_comparison(a, b):
    assert F.numbers_agree(a, b) == (F.numbers(a) == F.numbers(b))
    assert F.numbers_agree(a, a)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_script_share_equals_per_letter_definition(text):
    import unicodedata

    for scripts in (("LATIN",), ("CYRILLIC",), ("CJK", "HIRAGANA", "KATAKANA")):
        from babelflow import placeholders

        t = placeholders.PLACEHOLDER_RE.sub(" ", text)
        letters = [ch for ch in t if ch.isalpha()]
        want = (sum(unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0] in scripts for ch in letters) / len(letters)
                if letters else None)
        assert F.script_share(text, scripts) == want
    assert np.isclose(F.script_share("Файл FLTK", ("CYRILLIC",)), 4 / 8)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="aÅå_&~ ﬁ,.!Ǆǅ", max_size=20), st.text(max_size=20))
def test_worker_keys_equal_their_definitions(src, tgt):
    from babelflow.clean import worker
    from babelflow.corpus.split import split_key

    k = worker.keys(src, tgt)
    assert k[:8] == worker.digest(split_key(src))
    assert k[8:16] == worker.digest(src, tgt)
    assert k[16:] == worker.digest(worker.loose(src), worker.loose(tgt))


def test_template_replacers_match_re_templates():
    rx = re.compile(r"(a)|(b)")
    for template in (" \\1 ", "\\1 ", " . \\1", "x\\1y\\2z", " .", "&amp; "):
        for text in ("ab", "ba a", "", "cab"):
            assert rx.sub(F._replacer(template), text) == rx.sub(template, text), template
