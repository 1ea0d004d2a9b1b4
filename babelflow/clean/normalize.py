"""Text normalisers applied to both sides of a pair, always in the order of `normalize`.

Order and why:
1. HTML unescape first, so `&lt;b&gt;` and `&amp;Open` are seen as the markup and accelerators
   they encode by the later steps.
2. Markup tags (a closed list of HTML/Pango tag names, so usage strings like `<file>` survive).
3. Unicode normal form (NFC or NFKC), after unescaping produced new characters.
4. Zero-width characters, BOM and control characters removed (tabs/newlines become spaces).
5. Keyboard accelerators removed (`_File`, `&Open`, `O&pen`, `~Save`, CJK-style `(&F)`).
6. Whitespace collapsed last, because every earlier step can leave double or edge spaces.
Words are never removed.
"""
from __future__ import annotations

import html
import re
import unicodedata

_MARKUP_TAGS = (
    "a|abbr|b|big|blockquote|br|center|code|div|em|font|h[1-6]|hr|i|img|kbd|li|ol|p|pre|q|s|samp|"
    "small|span|strike|strong|sub|sup|table|td|th|tr|tt|u|ul|var"
)
MARKUP_RE = re.compile(rf"</?(?:{_MARKUP_TAGS})(?:\s[^<>]*)?/?>", re.IGNORECASE)

# Cf (format: zero-width, BOM, bidi marks), Cc (control) and Cs/Co never belong in a sentence.
_DROP_CATEGORIES = {"Cf", "Cc", "Cs", "Co"}
_SPACE_CONTROLS = {"\t", "\n", "\r", "\x0b", "\x0c", "\x85"}

# "Datei(&F)", "ファイル(_F)..." : the accelerator repeated in brackets after a CJK label.
CJK_ACCEL_RE = re.compile(r"\s*\([&_~][A-Za-z0-9]\)")
# `_File`, `Save _As`: only at a word start, so snake_case and `__init__` are untouched.
UNDERSCORE_ACCEL_RE = re.compile(r"(?<![\w])_(?=[^\W\d_])")
# `&Open`, `O&pen`: a single `&` glued to a letter; `&&` (an escaped ampersand) and `a & b` stay.
AMP_ACCEL_RE = re.compile(r"(?<!&)&(?=[^\W\d_])")
TILDE_ACCEL_RE = re.compile(r"(?<![\w~/])~(?=[^\W\d_])")


def unescape_html(text: str) -> str:
    return html.unescape(text) if "&" in text else text


def strip_markup(text: str) -> str:
    return MARKUP_RE.sub(" ", text) if "<" in text else text


def unicode_form(text: str, form: str = "NFC") -> str:
    return unicodedata.normalize(form, text)


def remove_invisible(text: str) -> str:
    # A printable string has no Cc/Cf/Cs/Co character (nor a tab or newline): nothing to remove.
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _SPACE_CONTROLS:
            out.append(" ")
        elif unicodedata.category(ch) not in _DROP_CATEGORIES:
            out.append(ch)
    return "".join(out)


def strip_accelerators(text: str) -> str:
    """Remove accelerator marks; `&&` stays (Qt's escaped ampersand) as does `&` before `;`-entities."""
    if "(" in text:
        text = CJK_ACCEL_RE.sub("", text)
    if "_" in text:
        text = UNDERSCORE_ACCEL_RE.sub("", text, count=1)
    if "&" in text and "&&" not in text and text.count("&") == 1:
        # A string carries one accelerator at most; several `&` are prose ("R&D & more"), not marks.
        text = AMP_ACCEL_RE.sub("", text, count=1)
    if "~" in text:
        text = TILDE_ACCEL_RE.sub("", text, count=1)
    return text


def collapse_whitespace(text: str) -> str:
    # str.split() splits on exactly what `\s` matches (checked over all of Unicode in the tests).
    return " ".join(text.split())


def normalize(text: str, *, form: str = "NFC", unescape: bool = True, markup: bool = True,
              accelerators: bool = True) -> str:
    if unescape:
        text = unescape_html(text)
    if markup:
        text = strip_markup(text)
    text = unicode_form(text, form)
    text = remove_invisible(text)
    if accelerators:
        text = strip_accelerators(text)
    return collapse_whitespace(text)
