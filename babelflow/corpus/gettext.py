"""Gettext catalogs (.mo and .po) as parallel text: msgid (English) -> msgstr.

The .mo parser is our own (the stdlib one hides contexts and plural forms and raises bare
exceptions); every malformation becomes an InputError naming the file.
"""
from __future__ import annotations

import ast
import codecs
import glob
import os
import re
import struct
import sys
from pathlib import Path
from typing import Iterator

from babelflow.errors import InputError
from babelflow.io import MAX_LINE_BYTES

MO_MAGIC = 0x950412DE
# A longer string is no sentence: too_long, as a line over the cap is for every corpus reader.
MAX_STRING_BYTES = MAX_LINE_BYTES
# msgfmt stores each string once, so all of them together fit in the file. Entries may share string
# data, though: 1 MB of tables pointing at one string claims gigabytes. Past this factor: refused.
MAX_EXPANSION = 4
_CHARSET = re.compile(r"charset=([A-Za-z0-9_.:-]+)", re.IGNORECASE)

# (msgid, msgid_plural or None, msgstr forms)
Entry = tuple[str, "str | None", "list[str]"]


def _charset(header: bytes, path: Path) -> str:
    m = _CHARSET.search(header.decode("ascii", "replace"))
    name = m.group(1) if m else "utf-8"
    if name.upper() == "CHARSET":  # the template placeholder: never filled in, treat as UTF-8
        name = "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise InputError(path, f"unknown charset {name!r} in the catalog header") from None


def read_mo(path: str | Path, data: bytes | None = None) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield (index, raw msgid, raw msgstr) of a .mo file; header entry included."""
    path = Path(path)
    if data is None:
        data = path.read_bytes()
    if len(data) < 28:
        raise InputError(path, f"not a .mo file: {len(data)} bytes, shorter than the header")
    for endian in ("<", ">"):
        if struct.unpack(endian + "I", data[:4])[0] == MO_MAGIC:
            break
    else:
        raise InputError(path, f"bad .mo magic number 0x{data[:4].hex()}")
    _magic, revision, n, orig, trans = struct.unpack(endian + "5I", data[:20])
    if revision >> 16 > 1:
        raise InputError(path, f"unsupported .mo major revision {revision >> 16}")
    size = len(data)
    if orig + 8 * n > size or trans + 8 * n > size:
        raise InputError(path, f"string tables for {n} entries run past the end of the file")

    def entry(i: int) -> tuple[int, int, int, int]:
        return (*struct.unpack_from(endian + "II", data, orig + 8 * i),
                *struct.unpack_from(endian + "II", data, trans + 8 * i))

    total = 0  # checked over the whole table before any string is copied out
    for i in range(n):
        olen, ooff, tlen, toff = entry(i)
        if ooff + olen > size or toff + tlen > size:
            raise InputError(path, f"entry {i} points past the end of the file")
        total += olen + tlen
        if total > MAX_EXPANSION * size:
            raise InputError(path, f"entry {i}: entries 0-{i} claim {total} bytes of text, over "
                             f"{MAX_EXPANSION}x the file's {size} bytes (they share string data): "
                             "refused as a decompression bomb")
    for i in range(n):
        olen, ooff, tlen, toff = entry(i)
        yield i, data[ooff : ooff + olen], data[toff : toff + tlen]


def mo_entries(path: str | Path, on_error: str, record) -> Iterator[Entry]:
    """Decoded entries of a .mo; undecodable ones raise or are counted by `on_error`."""
    path = Path(path)
    raw = list(read_mo(path))
    header = next((t for _i, o, t in raw if o == b""), b"")
    charset = _charset(header, path)
    for i, o, t in raw:
        if o == b"":
            continue
        if max(len(o), len(t)) >= MAX_STRING_BYTES:  # with its newline, over the line cap
            if on_error == "fail":
                raise InputError(path, f"entry {i} is longer than {MAX_STRING_BYTES} bytes")
            record.read += 1
            record.drop("too_long")
            record.first_skip = record.first_skip or f"{path} entry {i}"
            continue
        try:
            msgid_raw = o.split(b"\x04", 1)[1] if b"\x04" in o else o
            ids = msgid_raw.decode(charset).split("\x00")
            forms = t.decode(charset).split("\x00")
        except UnicodeDecodeError as exc:
            if on_error == "fail":
                raise InputError(path, f"entry {i} is not valid {charset}: {exc.reason}") from None
            record.read += 1
            record.drop("invalid_encoding")
            continue
        yield ids[0], (ids[1] if len(ids) > 1 else None), forms


_PO_KEY = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")\s*$")


def _po_string(lit: str, path: Path, lineno: int) -> str:
    try:
        value = ast.literal_eval(lit)
    except (ValueError, SyntaxError):
        raise InputError(path, f"malformed string literal {lit[:40]!r}", lineno) from None
    if not isinstance(value, str):
        raise InputError(path, "malformed string literal", lineno)
    return value


def po_entries(path: str | Path) -> Iterator[tuple[Entry, bool, int]]:
    """Yield ((msgid, plural, forms), fuzzy, line) of a .po; obsolete (#~) entries are not entries."""
    path = Path(path)
    raw = path.read_bytes()
    # The header names the charset; it is ASCII-compatible in every encoding gettext allows.
    charset = _charset(raw[:4096], path)
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not valid {charset} at byte {exc.start}") from None
    cur: dict = {}
    fuzzy = False
    last = None
    start = 0

    def complete() -> bool:
        return "msgid" in cur and ("msgstr" in cur or any(isinstance(k, int) for k in cur))

    def entry():
        if "msgstr" in cur:
            forms = [cur["msgstr"]]
        else:
            forms = [cur[k] for k in sorted(k for k in cur if isinstance(k, int))]
        return (cur["msgid"], cur.get("msgid_plural"), forms), fuzzy, start

    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        starts_entry = s.startswith("#") or s.startswith("msgctxt") or s.startswith("msgid ")
        if starts_entry and complete():
            yield entry()
            cur, fuzzy, last = {}, False, None
        if s.startswith("#"):
            if s.startswith("#,") and "fuzzy" in s:
                fuzzy = True
            last = None  # obsolete "#~" entries and comments end any continuation
            continue
        if s.startswith('"'):
            if last is None:
                raise InputError(path, "continuation string without a keyword", lineno)
            cur[last] += _po_string(s, path, lineno)
            continue
        m = _PO_KEY.match(s)
        if not m:
            raise InputError(path, f"unrecognised line {s[:40]!r}", lineno)
        kw, idx, lit = m.groups()
        if not cur:
            start = lineno
        key = int(idx) if idx is not None else kw
        cur[key] = _po_string(lit, path, lineno)
        last = key
    if complete():
        yield entry()


def catalog_dirs(search: list[str]) -> list[Path]:
    """Folders that may hold <lang>/LC_MESSAGES/*.mo, for "system", "python" or literal paths."""
    dirs: list[Path] = []
    for item in search:
        if item == "system":
            cands = ["/usr/share/locale", "/usr/local/share/locale", "/usr/share/locale-langpack"]
            cands += sorted(glob.glob("/usr/share/vim/vim*/lang"))
            dirs += [Path(c) for c in cands if os.path.isdir(c)]
        elif item == "python":
            for entry in sys.path:
                if entry and os.path.isdir(entry) and ("site-packages" in entry or "dist-packages" in entry):
                    for pattern in ("**/locale", "**/locales"):
                        found = glob.glob(os.path.join(entry, pattern), recursive=True)
                        dirs += sorted(Path(p) for p in found)
        else:
            dirs.append(Path(item))
    return dirs


def find_catalogs(dirs: list[Path], lang: str) -> list[Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        for ext in ("*.mo", "*.po"):
            for p in (d / lang / "LC_MESSAGES").glob(ext):
                # The same catalog reached through two folders (symlinks) is read once.
                found.setdefault(os.path.realpath(p), p)
    return sorted(found.values(), key=lambda p: str(p))


def _lang_of(path: Path) -> str | None:
    parts = path.parts
    if "LC_MESSAGES" in parts:
        i = parts.index("LC_MESSAGES")
        return parts[i - 1] if i > 0 else None
    return path.stem if path.suffix == ".po" else None


def read_catalog(path: Path, lang: str, source: str, on_error: str, licence: str | None):
    """Pairs and the provenance record of one catalog. Counts are per candidate pair: a plural
    entry is two candidates (singular and plural)."""
    from babelflow.corpus.records import InputRecord, Pair, flatten
    from babelflow.io import sha256_file

    rec = InputRecord(source=source, type="gettext", path=str(path), lang=lang, licence=licence,
                      sha256=sha256_file(path), extra={"domain": path.stem})
    pairs: list[Pair] = []
    try:
        if path.suffix == ".po":
            entries = []
            for (msgid, plural, forms), fuzzy, line in po_entries(path):
                if msgid == "":
                    continue  # the header
                if fuzzy:
                    rec.read += 2 if plural is not None else 1
                    rec.drop("fuzzy", 2 if plural is not None else 1)
                    continue
                if max(len(s.encode("utf-8")) for s in (msgid, plural or "", *forms)) >= MAX_STRING_BYTES:
                    if on_error == "fail":
                        raise InputError(path, f"entry longer than {MAX_STRING_BYTES} bytes", line)
                    rec.read += 2 if plural is not None else 1
                    rec.drop("too_long", 2 if plural is not None else 1)
                    rec.first_skip = rec.first_skip or f"{path}:{line}"
                    continue
                entries.append((msgid, plural, forms))
        else:
            entries = list(mo_entries(path, on_error, rec))
    except InputError as exc:
        if on_error == "fail":
            raise
        rec.extra["error"] = str(exc)
        return [], rec
    for msgid, plural, forms in entries:
        cands = [(msgid, forms[0] if forms else "")]
        if plural is not None:
            cands.append((plural, forms[1] if len(forms) > 1 else None))
        for src, tgt in cands:
            rec.read += 1
            if tgt is None:
                rec.drop("no_plural_form")
                continue
            src, tgt = flatten(src, rec), flatten(tgt, rec)
            if not tgt:
                rec.drop("untranslated")
            elif not src:
                rec.drop("empty_source")
            else:
                pairs.append(Pair(lang, src, tgt, None, rec))
    return pairs, rec


def catalogs(cfg, langs: list[str]) -> list[tuple[Path, str]]:
    """(catalog, language) of every catalog collect reads for `langs`, in a fixed (path-sorted) order."""
    dirs = catalog_dirs(list(cfg.search))
    explicit: list[tuple[Path, str]] = []
    for p in cfg.paths:
        p = Path(p)
        if p.is_dir():
            dirs.append(p)
            for lang in langs:
                explicit += [(q, lang) for q in sorted(p.rglob(f"{lang}.po"))]
        elif p.is_file():
            lang = _lang_of(p)
            if lang is None:
                raise InputError(p, "cannot tell the catalog's language: "
                                 "expected <lang>/LC_MESSAGES/x.mo or <lang>.po")
            explicit.append((p, lang))
        else:
            raise InputError(p, "catalog path does not exist")
    seen = set()
    todo = []
    for lang in langs:
        todo += [(c, lang) for c in find_catalogs(dirs, lang)]
    todo += [(p, lang) for p, lang in explicit if lang in langs]
    out = []
    for path, lang in todo:
        key = (os.path.realpath(path), lang)
        if key in seen:
            continue
        seen.add(key)
        if cfg.domains is None or path.stem in cfg.domains:
            out.append((path, lang))
    return out


def collect_gettext(cfg, langs: list[str], on_error: str, out=None):
    pairs, records = [] if out is None else out, []
    for path, lang in catalogs(cfg, langs):  # a catalog is small: read whole, then handed on
        ps, rec = read_catalog(path, lang, cfg.name, on_error, cfg.licence)
        pairs.extend(ps)
        records.append(rec)
    return pairs, records
