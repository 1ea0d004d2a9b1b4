"""Parallel text as MT engineers store it: Moses files, TSV, Tatoeba TSV, TMX; gzip transparently.

Readers yield candidate pairs and fill a provenance record. Whole-file problems (missing, empty,
truncated gzip, unequal sides, TMX without the languages) raise InputError with file and line, or,
under `on_error: skip`, are recorded on the input and its lines counted as dropped.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterator
from xml.etree import ElementTree as ET

from babelflow.corpus.records import InputRecord, Pair, flatten
from babelflow.errors import InputError
from babelflow.io import sha256_file

# Tatoeba/OPUS use ISO 639-3; the pipeline uses the shortest code.
ISO3 = {"eng": "en", "deu": "de", "fra": "fr", "spa": "es", "rus": "ru", "swe": "sv", "gle": "ga",
        "ces": "cs", "cym": "cy", "eus": "eu", "ast": "ast", "ita": "it", "por": "pt", "nld": "nl",
        "pol": "pl", "fin": "fi", "jpn": "ja", "zho": "zh", "cmn": "zh", "ukr": "uk", "dan": "da"}


def norm_lang(code: str) -> str:
    code = code.strip().replace("-", "_")
    base = code.split("_")[0].lower()
    return ISO3.get(base, base)


def find_file(path: Path) -> Path | None:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return p
    return None


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line, raw bytes without the newline); gzip detected by its magic, not the name."""
    with open(path, "rb") as fh:
        is_gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if is_gz else open
    n = 0
    try:
        with opener(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                yield n, raw.rstrip(b"\n").rstrip(b"\r")
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InputError(path, f"corrupt or truncated gzip after line {n}: {exc}", n + 1) from None
    if n == 0:
        raise InputError(path, "empty file")


def _decode(raw: bytes, path: Path, line: int, on_error: str, rec: InputRecord) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if on_error == "fail":
            raise InputError(path, f"invalid UTF-8 at byte {exc.start}", line) from None
        return None


def _emit(rec, lang, src, tgt, split, out):
    rec.read += 1
    if src is None or tgt is None:
        rec.drop("invalid_utf8")
        return
    src, tgt = flatten(src, rec), flatten(tgt, rec)
    if not src or not tgt:
        rec.drop("empty")
        return
    out.append(Pair(lang, src, tgt, split, rec))


def _fail_or_record(exc: InputError, rec: InputRecord, on_error: str) -> None:
    if on_error == "fail":
        raise exc
    rec.extra["error"] = str(exc)


def read_moses(src_path: Path, tgt_path: Path, lang: str, split: str | None, on_error: str,
               source: str, licence: str | None) -> tuple[list[Pair], InputRecord]:
    rec = InputRecord(source, "aligned", str(tgt_path), lang, sha256_file(tgt_path), licence,
                      extra={"src_path": str(src_path), "src_sha256": sha256_file(src_path), "split": split})
    pairs: list[Pair] = []
    try:
        s_lines = list(read_lines(src_path))
        t_lines = list(read_lines(tgt_path))
    except InputError as exc:
        _fail_or_record(exc, rec, on_error)
        return [], rec
    if len(s_lines) != len(t_lines):
        short, n = (src_path, len(s_lines)) if len(s_lines) < len(t_lines) else (tgt_path, len(t_lines))
        exc = InputError(short, f"has {n} lines but {src_path.name} has {len(s_lines)} and "
                         f"{tgt_path.name} has {len(t_lines)}: the sides are not aligned", n + 1)
        _fail_or_record(exc, rec, on_error)
        rec.read = max(len(s_lines), len(t_lines))
        rec.drop("mismatched_line_count", rec.read)
        return [], rec
    for (n, s), (_n, t) in zip(s_lines, t_lines):
        _emit(rec, lang, _decode(s, src_path, n, on_error, rec), _decode(t, tgt_path, n, on_error, rec),
              split, pairs)
    return pairs, rec


def read_tsv(path: Path, src_lang: str, langs: list[str], tsv_lang: str | None, tatoeba: bool,
             split: str | None, on_error: str, source: str, licence: str | None):
    """TSV `src\\ttgt` (one target language, `tsv_lang`) or Tatoeba `l1\\tl2\\ts1\\ts2` (any)."""
    sha = sha256_file(path)
    recs: dict[str, InputRecord] = {}
    pairs: list[Pair] = []

    def rec_for(lang: str) -> InputRecord:
        if lang not in recs:
            recs[lang] = InputRecord(source, "aligned", str(path), lang, sha, licence, extra={"split": split})
        return recs[lang]

    other = InputRecord(source, "aligned", str(path), "*", sha, licence, extra={"split": split})
    try:
        for n, raw in read_lines(path):
            text = _decode(raw, path, n, on_error, other)
            if text is None:
                other.read += 1
                other.drop("invalid_utf8")
                continue
            cols = text.split("\t")
            want = 4 if tatoeba else 2
            if len(cols) != want:
                if on_error == "fail":
                    raise InputError(path, f"expected {want} tab-separated fields, got {len(cols)}", n)
                other.read += 1
                other.drop("bad_field_count")
                continue
            if tatoeba:
                l1, l2, s1, s2 = norm_lang(cols[0]), norm_lang(cols[1]), cols[2], cols[3]
                if l2 == src_lang:
                    l1, l2, s1, s2 = l2, l1, s2, s1
                if l1 != src_lang or l2 not in langs:
                    other.read += 1
                    other.drop("other_language")
                    continue
                _emit(rec_for(l2), l2, s1, s2, split, pairs)
            else:
                _emit(rec_for(tsv_lang), tsv_lang, cols[0], cols[1], split, pairs)
    except InputError as exc:
        _fail_or_record(exc, other, on_error)
        # Pairs before the failure are kept only when they can all be accounted for; a truncated
        # file under skip loses them all, counted against the file.
        for r in recs.values():
            r.drop("file_error", sum(1 for p in pairs if p.record is r))
        pairs = []
    records = list(recs.values())
    if other.read or "error" in other.extra:
        records.append(other)
    return pairs, records


def read_tmx(path: Path, src_lang: str, langs: list[str], split: str | None, on_error: str,
             source: str, licence: str | None):
    sha = sha256_file(path)
    recs = {lang: InputRecord(source, "aligned", str(path), lang, sha, licence, extra={"split": split})
            for lang in langs}
    pairs: list[Pair] = []
    seen_langs: set[str] = set()
    n_tu = 0
    try:
        for _ev, elem in ET.iterparse(path, events=("end",)):
            if elem.tag != "tu":
                continue
            n_tu += 1
            segs: dict[str, str] = {}
            for tuv in elem.iter("tuv"):
                lang = tuv.get("{http://www.w3.org/XML/1998/namespace}lang") or tuv.get("lang") or ""
                seg = tuv.find("seg")
                if seg is not None:
                    segs[norm_lang(lang)] = "".join(seg.itertext())
            seen_langs |= set(segs)
            for lang in langs:
                if lang in segs or src_lang in segs:
                    if lang in segs and src_lang in segs:
                        _emit(recs[lang], lang, segs[src_lang], segs[lang], split, pairs)
                    elif lang in segs:
                        recs[lang].read += 1
                        recs[lang].drop("missing_source_language")
            elem.clear()
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        err = InputError(path, f"malformed TMX: {exc}", line)
        if on_error == "fail":
            raise err from None
        for r in recs.values():
            r.extra["error"] = str(err)
            r.drop("file_error", sum(1 for p in pairs if p.record is r))
        return [], list(recs.values())
    if n_tu == 0:
        _fail_or_record(InputError(path, "TMX has no translation units"), recs[langs[0]], on_error)
    elif src_lang not in seen_langs or not (seen_langs & set(langs)):
        exc = InputError(path, f"TMX has languages {sorted(seen_langs)}, not {src_lang} and any of {langs}")
        _fail_or_record(exc, recs[langs[0]], on_error)
    return pairs, [r for r in recs.values() if r.read or "error" in r.extra]


def aligned_inputs(cfg, src_lang: str, langs: list[str]):
    """What collect_aligned reads, in order: (split tag, files, target language). A file it needs but
    cannot find raises InputError here, so listing the inputs fails exactly where reading them would."""
    base = Path(cfg.path)
    explicit = set(cfg.splits) - {"train"}
    for split, stem in sorted(cfg.splits.items()):
        # Without an explicit dev/test, every line goes through the hash split.
        tag = split if explicit else None
        if cfg.format == "moses":
            src_file = find_file(base / f"{stem}.{src_lang}")
            if src_file is None:
                raise InputError(base / f"{stem}.{src_lang}", "source side of the aligned corpus not found")
            for lang in langs:
                tgt_file = find_file(base / f"{stem}.{lang}")
                if tgt_file is not None:  # else another source may provide this language
                    yield tag, (src_file, tgt_file), lang
        else:
            path = find_file(base / stem) if base.is_dir() else (base if split == "train" else None)
            if path is None:
                raise InputError(base / stem, f"{cfg.format} file for split {split!r} not found")
            lang = cfg.lang or (langs[0] if len(langs) == 1 else None)
            if cfg.format == "tsv" and lang is None:
                raise InputError(path, "a two-column TSV needs `lang:` (its target language) in params")
            yield tag, (path,), lang


def collect_aligned(cfg, src_lang: str, langs: list[str], on_error: str):
    pairs: list[Pair] = []
    records: list[InputRecord] = []
    for tag, files, lang in aligned_inputs(cfg, src_lang, langs):
        if cfg.format == "moses":
            ps, rec = read_moses(*files, lang, tag, on_error, cfg.name, cfg.licence)
            recs = [rec]
        elif cfg.format == "tmx":
            ps, recs = read_tmx(files[0], src_lang, langs, tag, on_error, cfg.name, cfg.licence)
        else:
            ps, recs = read_tsv(files[0], src_lang, langs, lang, cfg.format == "tatoeba", tag,
                                on_error, cfg.name, cfg.licence)
        pairs += ps
        records += recs
    return pairs, records
