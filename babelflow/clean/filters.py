"""Per-pair filters that look at one pair at a time (no state), so they run in worker processes.

`check_pair` applies them in the fixed order of `LINE_FILTERS` and returns the first failing
filter's name, or None. Cheap tests come first so the expensive ones (tokenising, language id)
see fewer lines; the order only changes which reason a doubly-bad pair is counted under.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from babelflow import placeholders

LINE_FILTERS = (
    "empty", "copy", "placeholders", "min_tokens", "max_tokens", "max_token_chars",
    "length_ratio", "numbers", "script", "langid",
)

# Unicode script (first word of the character name) expected for each language's letters.
SCRIPTS: dict[str, tuple[str, ...]] = {
    **{lang: ("LATIN",) for lang in (
        "af an ast az br bs ca cs cy da de en eo es et eu fi fil fo fr fur fy ga gd gl ha hr ht hu id "
        "ia is it ku la lb lt lv mg ms mt nb nds nl nn no oc pl pt ro rm sk sl so sq sr@latin sv sw "
        "tl tk tr uz vi wa wo xh yo zu").split()},
    **{lang: ("CYRILLIC",) for lang in "be bg kk ky mk mn ru sr tg tt uk".split()},
    "el": ("GREEK",), "ka": ("GEORGIAN",), "hy": ("ARMENIAN",), "he": ("HEBREW",), "yi": ("HEBREW",),
    **{lang: ("ARABIC",) for lang in "ar fa ps ug ur".split()},
    **{lang: ("DEVANAGARI",) for lang in "hi mr ne".split()},
    "bn": ("BENGALI",), "as": ("BENGALI",), "gu": ("GUJARATI",), "pa": ("GURMUKHI",), "ta": ("TAMIL",),
    "te": ("TELUGU",), "kn": ("KANNADA",), "ml": ("MALAYALAM",), "si": ("SINHALA",), "th": ("THAI",),
    "lo": ("LAO",), "km": ("KHMER",), "my": ("MYANMAR",), "am": ("ETHIOPIC",), "ko": ("HANGUL", "CJK"),
    "zh": ("CJK",), "ja": ("CJK", "HIRAGANA", "KATAKANA"),
}

_DIGITS_RE = re.compile(r"\d+")


def script_for(lang: str) -> tuple[str, ...] | None:
    """Expected scripts for `lang` ("pt_BR" -> pt's); None when the language is not in the table."""
    return SCRIPTS.get(lang) or SCRIPTS.get(lang.split("_")[0].split("@")[0])


@lru_cache(maxsize=1 << 16)
def _char_script(ch: str) -> str:
    return unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]


def script_share(text: str, scripts: tuple[str, ...]) -> float | None:
    """Share of letters (placeholders excluded) written in one of `scripts`; None without letters."""
    if placeholders.PLACEHOLDER_RE.search(text):
        text = placeholders.PLACEHOLDER_RE.sub(" ", text)
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return None
    if scripts == ("LATIN",) and text.isascii():
        return 1.0
    hits = sum(1 for ch in letters if _char_script(ch) in scripts)
    return hits / len(letters)


def numbers(text: str) -> Counter:
    return Counter(int(d) for d in _DIGITS_RE.findall(text))


_TOKTOK: list | None = None


def _toktok_rules() -> list:
    """NLTK's ToktokTokenizer rules, recompiled with the stdlib `re`.

    NLTK wraps them in a ReDoS-guarded `regex` layer that costs 5x the time of the rules themselves;
    the patterns are linear, and the stdlib engine gives the same tokens (checked on 260k lines of
    Multi30k and gettext catalogs, and in tests). Falls back to NLTK's object for any rule the
    stdlib cannot compile.
    """
    from nltk.tokenize import ToktokTokenizer

    rules = []
    for rx, sub in ToktokTokenizer.TOKTOK_REGEXES:
        inner = getattr(rx, "_rx", rx)
        try:
            flags = inner.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
            rules.append((re.compile(inner.pattern, flags), sub))
        except (re.error, TypeError, AttributeError):
            rules.append((rx, sub))
    return rules


def tokenize(text: str) -> list[str]:
    """ToktokTokenizer tokens (needs no downloaded data)."""
    global _TOKTOK
    if _TOKTOK is None:
        _TOKTOK = _toktok_rules()
    for rx, sub in _TOKTOK:
        text = rx.sub(sub, text)
    return text.strip().split()


_LANGID = {}


def identifier(langs: tuple[str, ...]):
    """A langid.py identifier restricted to `langs`, built once per process and language set."""
    ident = _LANGID.get(langs)
    if ident is None:
        from langid.langid import LanguageIdentifier, model

        ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        if langs:
            ident.set_languages(list(langs))
        _LANGID[langs] = ident
    return ident


@lru_cache(maxsize=1)
def langid_supported() -> frozenset[str]:
    return frozenset(identifier(()).nb_classes)


@dataclass(frozen=True)
class FilterSettings:
    """The resolved, picklable filter configuration for one language pair."""

    src_lang: str
    tgt_lang: str
    placeholder_agreement: bool = True
    min_tokens: int = 1
    max_tokens: int = 80
    max_token_chars: int = 40
    max_length_ratio: float = 3.0
    ratio_min_tokens: int = 4
    number_agreement: bool = True
    script_min_share: float = 0.5
    src_scripts: tuple[str, ...] | None = None  # None: unknown language, script test skipped
    tgt_scripts: tuple[str, ...] | None = None
    langid_langs: tuple[str, ...] = ()  # empty: language id off
    langid_source: bool = False  # also check the source side (see CleanConfig.langid_source)
    langid_src: bool = False  # whether langid knows the language of each side
    langid_tgt: bool = False
    langid_min_prob: float = 0.5
    langid_min_chars: int = 25
    drop_copies: bool = True


def _has_word(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


@lru_cache(maxsize=1 << 16)
def _classify(text: str, langs: tuple[str, ...]) -> tuple[str, float]:
    # Cached: UI corpora repeat the same English source once per target language.
    return identifier(langs).classify(text)


def _langid_ok(text: str, lang: str, s: FilterSettings) -> bool:
    if len(text) < s.langid_min_chars:
        return True
    pred, prob = _classify(text, s.langid_langs)
    return pred == lang or prob < s.langid_min_prob


def check_pair(src: str, tgt: str, s: FilterSettings) -> str | None:
    """The name of the first filter that rejects the (normalised) pair, or None to keep it."""
    if not _has_word(src) or not _has_word(tgt):
        return "empty"
    if s.drop_copies and src.casefold() == tgt.casefold() and s.src_lang != s.tgt_lang:
        return "copy"
    if s.placeholder_agreement and not placeholders.agree(src, tgt):
        return "placeholders"
    stoks, ttoks = tokenize(src), tokenize(tgt)
    ns, nt = len(stoks), len(ttoks)
    if min(ns, nt) < s.min_tokens:
        return "min_tokens"
    if max(ns, nt) > s.max_tokens:
        return "max_tokens"
    if max(map(len, stoks)) > s.max_token_chars or max(map(len, ttoks)) > s.max_token_chars:
        return "max_token_chars"
    if min(ns, nt) >= s.ratio_min_tokens and max(ns, nt) > s.max_length_ratio * min(ns, nt):
        return "length_ratio"
    if s.number_agreement and numbers(src) != numbers(tgt):
        return "numbers"
    if s.script_min_share > 0:
        # Words found on both sides (product names, identifiers: "Файл FLTK Fluid") are copied on
        # purpose and say nothing about the script of the translation; they are left out of the share.
        swords, twords = src.split(), tgt.split()
        shared = set(swords) & set(twords)
        for words, scripts in ((swords, s.src_scripts), (twords, s.tgt_scripts)):
            if scripts is not None:
                share = script_share(" ".join(w for w in words if w not in shared), scripts)
                if share is not None and share < s.script_min_share:
                    return "script"
    if s.langid_langs:
        if s.langid_tgt and not _langid_ok(tgt, s.tgt_lang, s):
            return "langid"
        if s.langid_source and s.langid_src and not _langid_ok(src, s.src_lang, s):
            return "langid"
    return None
