"""Per-pair filters that look at one pair at a time (no state), so they run in worker processes.

`check_pair` applies them in the fixed order of `LINE_FILTERS` and returns the first failing
filter's name, or None. Cheap tests come first so the expensive ones (tokenising, language id)
see fewer lines; the order only changes which reason a doubly-bad pair is counted under.
Language id is last and batched: the clean pipeline runs `check_line` (every filter but langid) on
a whole chunk, then `langid_rejects` once on the pairs that survived.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from babelflow import placeholders
from babelflow.clean import lang_id
from babelflow.languages import base_language

LINE_FILTERS = (
    "empty", "copy", "placeholders", "min_tokens", "max_tokens", "max_token_chars",
    "length_ratio", "numbers", "script", "langid",
)

# Unicode script (first word of the character name) expected for each language's letters.
SCRIPTS: dict[str, tuple[str, ...]] = {
    **{lang: ("LATIN",) for lang in (
        "af an ast az br bs ca cs cy da de en eo es et eu fi fil fo fr fur fy ga gd gl ha hr ht hu id "
        "ia is it ku la lb lt lv mg ms mt nb nds nl nn no oc pl pt ro rm sk sl so sq sv sw "
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
_ASCII_LETTER_RE = re.compile(r"[A-Za-z]")
_ASCII_LETTER_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")


# gettext locale modifiers that name a script: catalogs such as sr@latin, be@latin, uz@cyrillic and
# tt@iqtelif (and sr@ijelatin, KDE's sr@ijekavianlatin) are written in another script than the
# language's usual one. Other modifiers (ca@valencia, sr@ije) are variants in the usual script.
SCRIPT_MODIFIERS: dict[str, tuple[str, ...]] = {
    "latin": ("LATIN",), "latn": ("LATIN",), "iqtelif": ("LATIN",), "ijelatin": ("LATIN",),
    "ijekavianlatin": ("LATIN",),
    "cyrillic": ("CYRILLIC",), "cyrl": ("CYRILLIC",),
}


def script_for(lang: str) -> tuple[str, ...] | None:
    """Expected scripts for `lang` ("pt_BR" -> pt's, "sr@latin" -> Latin); None when unknown."""
    modifier = lang.partition("@")[2].lower()
    if modifier in SCRIPT_MODIFIERS:
        return SCRIPT_MODIFIERS[modifier]
    return SCRIPTS.get(base_language(lang))


def in_other_script(lang: str) -> bool:
    """Whether `lang`'s modifier names a script other than its base language's (sr@latin: yes;
    ca@valencia, uz@latin: no). A language-id model knows the base language in its usual script only."""
    return script_for(lang) != SCRIPTS.get(base_language(lang))


@lru_cache(maxsize=1 << 16)
def _char_script(ch: str) -> str:
    return unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]


def _may_have_placeholder(text: str) -> bool:
    # Every placeholder form starts with one of these; most sentences have none, and then the
    # placeholder regex and two Counters need not run.
    return "%" in text or "{" in text or "$" in text


# Per script set: character -> (is a letter, is in one of the scripts). Filled as characters come.
_SCRIPT_OF: dict[tuple[str, ...], dict[str, tuple[bool, bool]]] = {}


def script_share(text: str, scripts: tuple[str, ...]) -> float | None:
    """Share of letters (placeholders excluded) written in one of `scripts`; None without letters."""
    if _may_have_placeholder(text) and placeholders.PLACEHOLDER_RE.search(text):
        text = placeholders.PLACEHOLDER_RE.sub(" ", text)
    if scripts == ("LATIN",) and text.isascii():  # every ASCII letter is a LATIN one
        return 1.0 if _ASCII_LETTER_RE.search(text) else None
    # ASCII letters are LATIN: counted in C by deleting their bytes from the UTF-8 form (no
    # multi-byte sequence contains an ASCII byte). The other characters are counted per distinct
    # character, each classified once per process.
    data = text.encode("utf-8", "surrogatepass")
    ascii_letters = len(data) - len(data.translate(None, _ASCII_LETTER_BYTES))
    letters = ascii_letters
    hits = ascii_letters if "LATIN" in scripts else 0
    table = _SCRIPT_OF.setdefault(scripts, {})
    for ch, n in Counter(_NON_ASCII_RE.findall(text)).items():
        kind = table.get(ch)
        if kind is None:
            kind = table[ch] = (ch.isalpha(), ch.isalpha() and _char_script(ch) in scripts)
        if kind[0]:
            letters += n
            if kind[1]:
                hits += n
    return hits / letters if letters else None


def numbers(text: str) -> Counter:
    return Counter(int(d) for d in _DIGITS_RE.findall(text))


def numbers_agree(src: str, tgt: str) -> bool:
    """The same multiset of numbers on both sides (`numbers(src) == numbers(tgt)`, without Counters)."""
    a, b = _DIGITS_RE.findall(src), _DIGITS_RE.findall(tgt)
    if len(a) != len(b):
        return False
    return a == b or sorted(map(int, a)) == sorted(map(int, b))


# ----------------------------------------------------------------------------------- Toktok tokens
# A rule spec: (pattern, stdlib flags, replacement, gate). The gate lists what every match of the
# rule contains: each requirement is a set of characters (one of them occurs) or a string (it
# occurs). A text that misses a requirement cannot match, so the rule is skipped: a plain sentence
# needs 2 or 3 of Toktok's 24 substitutions, not all of them.
RuleSpec = tuple  # (str, int, str, tuple[frozenset[str] | str, ...] | None)
_TOKTOK: "_Rules | None" = None


def _gate(pattern: str, flags: int) -> tuple | None:
    """The requirements every match of `pattern` satisfies (see RuleSpec); None when none is known.

    Every element of the pattern's top-level sequence must match, and so must every element inside
    a group or a repeat of at least one; each such element that consumes a known set of characters
    is a requirement. Zero-width elements, optional repeats, alternations, negated or category
    classes, and case-insensitive patterns give none.
    """
    try:
        import re._constants as c
        import re._parser as sre_parse  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_constants as c  # type: ignore[no-redef]
        import sre_parse  # type: ignore[no-redef]
    if flags & re.IGNORECASE:
        return None
    reqs: list = []

    def walk(seq) -> None:
        for op, av in seq:
            if op is c.LITERAL:
                reqs.append(frozenset(chr(av)))
            elif op is c.IN:
                out = set()
                for iop, iav in av:
                    if iop is c.LITERAL:
                        out.add(chr(iav))
                    elif iop is c.RANGE and iav[1] - iav[0] < 256:
                        out.update(map(chr, range(iav[0], iav[1] + 1)))
                    else:
                        break
                else:
                    reqs.append(frozenset(out))
            elif op is c.SUBPATTERN:
                walk(av[-1])
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
                inner = list(av[2])
                if av[0] >= 2 and len(inner) == 1 and inner[0][0] is c.LITERAL:
                    reqs.append(chr(inner[0][1]) * av[0])  # ",{2,}": that many in a row
                else:
                    walk(av[2])

    try:
        walk(sre_parse.parse(pattern, flags))
    except Exception:  # an unexpected pattern just runs ungated
        return None
    return tuple(dict.fromkeys(reqs)) or None


def toktok_specs() -> list[RuleSpec] | None:
    """NLTK's ToktokTokenizer rules as plain specs for the stdlib `re`, or None to use NLTK's objects.

    NLTK wraps them in a ReDoS-guarded `regex` layer that costs 5x the time of the rules themselves;
    the patterns are linear, and the stdlib engine gives the same tokens (checked on 260k lines of
    Multi30k and gettext catalogs, and in tests). The parent builds the specs and hands them to the
    workers, which then never import NLTK (half a second each).
    """
    from nltk.tokenize import ToktokTokenizer

    specs = []
    for rx, sub in ToktokTokenizer.TOKTOK_REGEXES:
        inner = getattr(rx, "_rx", rx)
        try:
            flags = inner.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
            re.compile(inner.pattern, flags)
        except (re.error, TypeError, AttributeError):
            return None
        pattern = _regex_whitespace(inner.pattern)
        if pattern is None:
            return None
        specs.append((pattern, flags, sub, _gate(inner.pattern, flags)))
    # Toktok's last rule squeezes runs of spaces into one; `split()` ignores them anyway.
    if specs and specs[-1][0] == " {2,}" and specs[-1][2] == " ":
        specs.pop()
    return specs


def _regex_whitespace(pattern: str) -> str | None:
    """The pattern with the `regex` module's meaning of \\s and \\S in the stdlib engine: the stdlib
    also counts \\x1c-\\x1f as whitespace, so '0?\\x1f' split differently from NLTK. None when a
    \\s sits inside a character class (no set difference there)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            esc = pattern[i:i + 2]
            if esc == "\\s":
                if in_class:
                    return None
                esc = "[^\\S\\x1c-\\x1f]"
            elif esc == "\\S":
                esc = "\\S\\x1c-\\x1f" if in_class else "[\\S\\x1c-\\x1f]"
            out.append(esc)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":  # a leading ] is a literal
                out.append("]")
                i += 1
        elif c == "]" and in_class:
            in_class = False
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


class _Rules:
    """Compiled rules, and which of them a text can trigger, cached per set of gate characters."""

    def __init__(self, rules: list[tuple]):
        self.rules = rules  # (compiled, replacement, gate, template)
        self.chars = frozenset(ch for _, _, gate, _ in rules for req in gate or () if isinstance(req, frozenset)
                               for ch in req)
        self.strings = tuple(dict.fromkeys(req for _, _, gate, _ in rules for req in gate or ()
                                           if isinstance(req, str)))
        # Characters a rule's replacement can bring into a text (the rest is copied from the text).
        self.intro = [frozenset(template) & self.chars if isinstance(template, str) else self.chars
                      for *_, template in rules]
        self._plans: dict[tuple, tuple[int, ...]] = {}

    def plan(self, hits: frozenset[str], has: tuple[bool, ...], start: int) -> tuple[int, ...]:
        """Indices >= start of the rules whose every requirement is met by gate characters `hits`
        and the strings flagged in `has`, in order."""
        key = (hits, has, start)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 4096:  # bounded: odd inputs can make many combinations
                self._plans.clear()
            strings = {s for s, h in zip(self.strings, has) if h}
            plan = self._plans[key] = tuple(
                i for i, (_, _, gate, _) in enumerate(self.rules)
                if i >= start and (gate is None or all(
                    (not req.isdisjoint(hits)) if isinstance(req, frozenset) else req in strings for req in gate)))
        return plan


def set_toktok(specs: list[RuleSpec] | None) -> None:
    """Install the rules `tokenize` applies, compiled once per process (None: NLTK's own objects)."""
    global _TOKTOK
    if specs is None:
        from nltk.tokenize import ToktokTokenizer

        _TOKTOK = _Rules([(rx, sub, None, None) for rx, sub in ToktokTokenizer.TOKTOK_REGEXES])
    else:
        _TOKTOK = _Rules([(re.compile(p, f), _replacer(sub), gate, sub) for p, f, sub, gate in specs])


_GROUP_REF = re.compile(r"\\(\d)")


def _replacer(template: str):
    """A function doing what `template` does as a `re.sub` replacement (literals and \\N only).

    Python 3.11 expands a template with group references in Python code for every match; a plain
    function is 2-3x faster, and Toktok's rules are mostly `' \\1 '`. Anything else stays a template.
    """
    if "\\" not in template:
        return template
    parts = _GROUP_REF.split(template)  # literal, group, literal, group, ..., literal
    if any("\\" in lit for lit in parts[::2]):
        return template
    if len(parts) == 3:
        pre, k, post = parts[0], int(parts[1]), parts[2]
        return lambda m: pre + (m[k] or "") + post
    groups = [int(g) for g in parts[1::2]]
    lits = parts[::2]

    def expand(m):
        out = [lits[0]]
        for k, lit in zip(groups, lits[1:]):
            out.append(m[k] or "")
            out.append(lit)
        return "".join(out)

    return expand


def tokenize(text: str) -> list[str]:
    """ToktokTokenizer tokens (needs no downloaded data)."""
    if _TOKTOK is None:
        set_toktok(toktok_specs())
    rules: _Rules = _TOKTOK  # type: ignore[assignment]
    hits = rules.chars.intersection(text)
    due = rules.plan(hits, tuple(map(text.__contains__, rules.strings)), 0)
    k = 0
    while k < len(due):
        i = due[k]
        rx, sub, _, _ = rules.rules[i]
        new = rx.sub(sub, text)
        if new != text:
            # The new text's gate characters are among the old ones plus what the replacement
            # brings: a superset at worst, which only makes a later rule run and find nothing.
            text = new
            hits = hits | rules.intro[i]
            due = rules.plan(hits, tuple(map(text.__contains__, rules.strings)), i + 1)
            k = 0
        else:
            k += 1
    return text.strip().split()


def langid_supported() -> frozenset[str]:
    return lang_id.languages()


_LANGID_TABLES: dict[tuple[str, ...], lang_id.Tables] = {}


def install_langid(tables: lang_id.Tables | None) -> None:
    """Use these tables for their language set (a worker gets them from the parent, built once)."""
    if tables is not None:
        _LANGID_TABLES[tables.langs] = tables


def langid_tables(langs: tuple[str, ...]) -> lang_id.Tables:
    t = _LANGID_TABLES.get(langs)
    if t is None:
        t = _LANGID_TABLES[langs] = lang_id.tables(langs)
    return t


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


def check_line(src: str, tgt: str, s: FilterSettings) -> str | None:
    """The first filter before language id that rejects the (normalised) pair, or None."""
    if not _has_word(src) or not _has_word(tgt):
        return "empty"
    if s.drop_copies and src.casefold() == tgt.casefold() and s.src_lang != s.tgt_lang:
        return "copy"
    if (s.placeholder_agreement and (_may_have_placeholder(src) or _may_have_placeholder(tgt))
            and not placeholders.agree(src, tgt)):
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
    if s.number_agreement and not numbers_agree(src, tgt):
        return "numbers"
    if s.script_min_share > 0:
        # Words found on both sides (product names, identifiers: "Файл FLTK Fluid") are copied on
        # purpose and say nothing about the script of the translation; they are left out of the share.
        # An ASCII side expected in Latin script passes whatever words are left out: skipped.
        sides = [(text, scripts) for text, scripts in ((src, s.src_scripts), (tgt, s.tgt_scripts))
                 if scripts is not None and not (scripts == ("LATIN",) and text.isascii())]
        if sides:
            shared = set(src.split()) & set(tgt.split())
            for text, scripts in sides:
                # Spacing does not count, so without shared words the text itself will do.
                kept = " ".join(w for w in text.split() if w not in shared) if shared else text
                share = script_share(kept, scripts)
                if share is not None and share < s.script_min_share:
                    return "script"
    return None


def langid_rejects(pairs: list[tuple[str, str]], s: FilterSettings) -> list[bool]:
    """For each (normalised) pair, whether language id rejects it: a side it checks is long enough
    (`langid_min_chars`) and langid names another language with probability >= `langid_min_prob`.
    The texts of the whole batch are classified in one vectorised pass."""
    out = [False] * len(pairs)
    if not s.langid_langs or not pairs:
        return out
    sides = []
    if s.langid_tgt:
        sides.append((1, s.tgt_lang))
    if s.langid_source and s.langid_src:
        sides.append((0, s.src_lang))
    texts, owners = [], []
    for side, lang in sides:
        for i, pair in enumerate(pairs):
            if len(pair[side]) >= s.langid_min_chars:
                texts.append(pair[side])
                owners.append((i, lang))
    if texts:
        preds, probs = lang_id.classify(texts, langid_tables(s.langid_langs))
        for (i, lang), pred, prob in zip(owners, preds, probs.tolist()):
            if pred != base_language(lang) and prob >= s.langid_min_prob:
                out[i] = True
    return out


def check_pair(src: str, tgt: str, s: FilterSettings) -> str | None:
    """The name of the first filter that rejects the (normalised) pair, or None to keep it."""
    reason = check_line(src, tgt, s)
    if reason is None and langid_rejects([(src, tgt)], s)[0]:
        return "langid"
    return reason
