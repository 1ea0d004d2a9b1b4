"""Placeholders in software strings (`%s`, `%(name)s`, `{0}`, `%1$s`, `$VAR`): find, compare, protect.

The model must copy a placeholder, never translate or split it. At the model boundary (training
data and translation input alike) each placeholder is replaced by an atomic symbol `<ph0>`,
`<ph1>`, ... in order of appearance in the source; the same placeholder in the target gets the same
symbol. After decoding, `unmask` puts the original text back. The cleaning stage uses `find` to drop
pairs whose placeholder multisets disagree.
"""
from __future__ import annotations

import re
from collections import Counter

# Order matters: the longest, most specific forms first so `%1$s` is not read as `%1`.
PLACEHOLDER_RE = re.compile(
    r"""
      %\d+\$[-+ 0#']*\d*(?:\.\d+)?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspn]   # %1$s positional printf
    | %\([A-Za-z_][A-Za-z0-9_.-]*\)[-+ 0#']*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]      # %(name)s python
    | %[-+0#]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGaAcspn]  # %s %5.2f %lu (no space flag: French "50 % des")
    | %\d+                                                                      # %1 (Qt)
    | \{[A-Za-z_0-9][A-Za-z0-9_.]*(?:![rsa])?(?::[^{}]*)?\}                     # {0} {name} {0:.2f}
    | \$\{[A-Za-z_][A-Za-z0-9_]*\}                                              # ${VAR}
    | \$[A-Z_][A-Z0-9_]*\b                                                      # $VAR
    """,
    re.VERBOSE,
)
SYMBOL_RE = re.compile(r"<ph(\d+)>")


def symbol(i: int) -> str:
    return f"<ph{i}>"


def symbols(n: int) -> list[str]:
    """The user-defined SentencePiece symbols reserved for placeholders."""
    return [symbol(i) for i in range(n)]


def find(text: str) -> list[str]:
    """Placeholders in order of appearance. `%%` is an escaped percent sign, not a placeholder."""
    return [m.group(0) for m in PLACEHOLDER_RE.finditer(text.replace("%%", "\x00\x00"))]


def agree(src: str, tgt: str) -> bool:
    """True when both sides carry the same multiset of placeholders (order may differ)."""
    return Counter(find(src)) == Counter(find(tgt))


def mask(text: str, mapping: list[str] | None = None, limit: int = 10) -> tuple[str, list[str]]:
    """Replace placeholders by `<phN>`. With `mapping` (from the source side), reuse its indices.

    Returns the masked text and the mapping (index -> original placeholder). Placeholders beyond
    `limit` distinct ones, or (on the target side) absent from the source mapping, stay literal.
    """
    grow = mapping is None
    mapping = [] if mapping is None else list(mapping)
    protected = text.replace("%%", "\x00\x00")

    def repl(m: re.Match[str]) -> str:
        ph = m.group(0)
        if ph in mapping:
            return symbol(mapping.index(ph))
        if grow and len(mapping) < limit:
            mapping.append(ph)
            return symbol(len(mapping) - 1)
        return ph

    masked = PLACEHOLDER_RE.sub(repl, protected).replace("\x00\x00", "%%")
    return masked, mapping


def mask_pair(src: str, tgt: str, limit: int = 10) -> tuple[str, str, list[str]]:
    msrc, mapping = mask(src, limit=limit)
    mtgt, _ = mask(tgt, mapping=mapping, limit=limit)
    return msrc, mtgt, mapping


def unmask(text: str, mapping: list[str], counts: list[int] | None = None) -> str:
    """Restore placeholders. `counts[i]`, where given, is how often the source holds `<phi>`: a model that
    emits the symbol more often gets it restored that many times, never duplicated. A symbol beyond its
    count, or one the source never had, is dropped with the space before it rather than left as `<phN>`."""
    left = list(counts) if counts is not None else [len(text)] * len(mapping)

    def repl(m: re.Match[str]) -> str:
        i = int(m.group(2))
        if i < len(mapping) and left[i] > 0:
            left[i] -= 1
            return m.group(1) + mapping[i]
        return ""

    out = re.sub(r"(\s*)" + SYMBOL_RE.pattern, repl, text)
    # A dropped symbol that opened the text leaves the space after it in front.
    return out.lstrip() if out[:1].isspace() and not text[:1].isspace() else out
