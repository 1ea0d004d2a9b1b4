"""Parallel text as MT engineers store it: Moses files, TSV, Tatoeba TSV, TMX; gzip transparently.

Readers yield candidate pairs and fill a provenance record. Whole-file problems (missing, empty,
truncated gzip, unequal sides, TMX without the languages) raise InputError with file and line, or,
under `on_error: skip`, are recorded on the input and its lines counted as dropped.

Memory stays bounded whatever the input holds: lines (and TMX segments) are read in pieces of
MAX_LINE_BYTES, never whole. A longer one is no sentence (a gzip of a 10 GB line is 10 MB): an
InputError naming file:line, or under `skip` counted as too_long. A gzip whose kept text inflates
over MAX_INFLATE times is refused whole: short lines, each one a pair kept in memory.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO, Iterator
from xml.parsers import expat

from babelflow.corpus.records import InputRecord, Pair, PairList, flatten
from babelflow.errors import InputError
from babelflow.io import MAX_LINE_BYTES, sha256_file

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


# A gzip'd corpus is 3-10x smaller than its text; deflate goes up to 1000x on repeated short lines,
# and collect keeps every pair (~250 bytes each): 10 MB of gzip would be 100 GB of memory. Past this
# factor (over the first MAX_LINE_BYTES, counting the text kept: a too-long line costs time only),
# a gzip is refused as a decompression bomb.
MAX_INFLATE = 100


def _check_inflate(fh: IO[bytes], kept: int, path: Path, line: int) -> None:
    if isinstance(fh, gzip.GzipFile) and kept > MAX_LINE_BYTES + MAX_INFLATE * fh.fileobj.tell():
        raise InputError(path, f"inflates over {MAX_INFLATE}x its compressed bytes: refused as a "
                         "decompression bomb (gunzip it if the data is genuine)", line)


def _open(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it starts with gzip's magic (whatever its name)."""
    with open(path, "rb") as fh:
        is_gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if is_gz else open(path, "rb")


def _too_long(path: Path, line: int, what: str = "line") -> InputError:
    return InputError(path, f"{what} longer than {MAX_LINE_BYTES} bytes", line)


def _skip_too_long(rec: InputRecord, path: Path, line: int) -> None:
    """Count a line (or TMX unit) over MAX_LINE_BYTES that `on_error: skip` drops."""
    rec.read += 1
    rec.drop("too_long")
    rec.first_skip = rec.first_skip or f"{path}:{line}"


def read_lines(path: Path, on_error: str) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line, raw bytes without the newline); gzip detected by its magic, not the name.
    A line over MAX_LINE_BYTES (its newline counted, as clean counts it) raises under `fail`; under
    `skip` it is read past in pieces and comes as None."""
    n = kept = check_at = 0
    try:
        with _open(path) as fh:
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                n += 1
                if len(raw) - raw.endswith(b"\n") < MAX_LINE_BYTES:
                    kept += len(raw)
                    if kept >= check_at:  # every 64 KB kept: tell() costs as much as a readline
                        _check_inflate(fh, kept, path, n)
                        check_at = kept + (1 << 16)
                    yield n, raw.rstrip(b"\n").rstrip(b"\r")
                    continue
                if on_error == "fail":
                    raise _too_long(path, n)
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(MAX_LINE_BYTES)
                yield n, None
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
               source: str, licence: str | None, out=None) -> tuple[list[Pair], InputRecord]:
    rec = InputRecord(source, "aligned", str(tgt_path), lang, sha256_file(tgt_path), licence,
                      extra={"src_path": str(src_path), "src_sha256": sha256_file(src_path), "split": split})
    pairs = PairList() if out is None else out
    # A counting pass first (it finds a bad file before any pair is made), then the two sides are
    # read side by side: holding both sides' raw lines took ~450 bytes a pair on top of the pairs.
    try:
        n_src = sum(1 for _ in read_lines(src_path, on_error))
        n_tgt = sum(1 for _ in read_lines(tgt_path, on_error))
    except InputError as exc:
        _fail_or_record(exc, rec, on_error)
        return pairs, rec
    if n_src != n_tgt:
        short, n = (src_path, n_src) if n_src < n_tgt else (tgt_path, n_tgt)
        exc = InputError(short, f"has {n} lines but {src_path.name} has {n_src} and "
                         f"{tgt_path.name} has {n_tgt}: the sides are not aligned", n + 1)
        _fail_or_record(exc, rec, on_error)
        rec.read = max(n_src, n_tgt)
        rec.drop("mismatched_line_count", rec.read)
        return pairs, rec
    for (n, s), (_n, t) in zip(read_lines(src_path, on_error), read_lines(tgt_path, on_error)):
        if s is None or t is None:
            _skip_too_long(rec, src_path if s is None else tgt_path, n)
            continue
        _emit(rec, lang, _decode(s, src_path, n, on_error, rec), _decode(t, tgt_path, n, on_error, rec),
              split, pairs)
    return pairs, rec


def read_tsv(path: Path, src_lang: str, langs: list[str], tsv_lang: str | None, tatoeba: bool,
             split: str | None, on_error: str, source: str, licence: str | None, out=None):
    """TSV `src\\ttgt` (one target language, `tsv_lang`) or Tatoeba `l1\\tl2\\ts1\\ts2` (any)."""
    sha = sha256_file(path)
    recs: dict[str, InputRecord] = {}
    pairs = PairList() if out is None else out

    def rec_for(lang: str) -> InputRecord:
        if lang not in recs:
            recs[lang] = InputRecord(source, "aligned", str(path), lang, sha, licence, extra={"split": split})
        return recs[lang]

    other = InputRecord(source, "aligned", str(path), "*", sha, licence, extra={"split": split})
    try:
        for n, raw in read_lines(path, on_error):
            if raw is None:
                _skip_too_long(other, path, n)
                continue
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
            r.drop("file_error", pairs.emitted(r))
        pairs.discard(recs.values())
    records = list(recs.values())
    if other.read or "error" in other.extra:
        records.append(other)
    return pairs, records


class _TmxUnits:
    """expat callbacks that collect each <tu> as (line, {language: text of the tuv's first <seg>}),
    its nested markup's text included. A segment over MAX_LINE_BYTES raises under `fail`, else its
    text is dropped as it arrives and it comes as None."""

    # TMX nests a few levels; expat keeps every open element, so "<a>" * 10**9 (gzip'd: 3 MB) would not fit.
    MAX_DEPTH = 64

    def __init__(self, parser, path: Path, on_error: str):
        self.parser, self.path, self.on_error = parser, path, on_error
        self.done: list[tuple[int, dict[str, str | None]]] = []
        self.unit: dict[str, str | None] | None = None  # the open <tu>'s segments
        self.line = 0  # of the open <tu>
        self.lang: str | None = None  # of the open <tuv>, until its first <seg> ends
        self.seg: list[str] | None = None  # text of the open <seg>
        self.size = self.inner = self.depth = 0
        self.dropped = 0  # bytes of too-long segments' text, which cost time only
        parser.StartElementHandler, parser.EndElementHandler = self.start, self.end
        parser.CharacterDataHandler = self.data

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > self.MAX_DEPTH:
            raise InputError(self.path, f"elements nested deeper than {self.MAX_DEPTH}",
                             self.parser.CurrentLineNumber)
        if self.seg is not None:
            self.inner += 1
        elif tag == "tu":
            self.unit, self.line = {}, self.parser.CurrentLineNumber
        elif tag == "tuv" and self.unit is not None:
            self.lang = norm_lang(attrs.get("xml:lang") or attrs.get("lang") or "")
        elif tag == "seg" and self.lang is not None:
            self.seg, self.size, self.inner = [], 0, 0

    def end(self, tag: str) -> None:
        self.depth -= 1
        if self.seg is not None and self.inner:
            self.inner -= 1
        elif self.seg is not None:  # </seg>
            self.unit[self.lang] = "".join(self.seg) if self.size < MAX_LINE_BYTES else None
            self.seg = self.lang = None
        elif tag == "tuv":
            self.lang = None
        elif tag == "tu" and self.unit is not None:
            self.done.append((self.line, self.unit))
            self.unit = None

    def data(self, text: str) -> None:
        if self.seg is None:
            return
        if self.size >= MAX_LINE_BYTES:
            self.dropped += len(text)
            return
        self.size += len(text.encode("utf-8"))
        if self.size < MAX_LINE_BYTES:
            self.seg.append(text)
        elif self.on_error == "fail":
            raise _too_long(self.path, self.line, "segment")
        else:
            self.seg = []


def tmx_units(path: Path, on_error: str) -> Iterator[tuple[int, dict[str, str | None]]]:
    """The <tu>s of a TMX file (gzip or not), parsed in pieces: memory is bounded by MAX_LINE_BYTES.
    expat holds a tag or comment whole until its end, so one that long is refused as malformed."""
    parser = expat.ParserCreate()
    units = _TmxUnits(parser, path, on_error)
    fed = 0
    try:
        with _open(path) as fh:
            while piece := fh.read(1 << 16):
                parser.Parse(piece, False)
                fed += len(piece)
                if fed - parser.CurrentByteIndex >= MAX_LINE_BYTES:  # unparsed: one token so far
                    raise InputError(path, f"malformed TMX: a tag or comment longer than "
                                     f"{MAX_LINE_BYTES} bytes", parser.CurrentLineNumber)
                _check_inflate(fh, fed - units.dropped, path, parser.CurrentLineNumber)
                yield from units.done
                units.done.clear()
            parser.Parse(b"", True)
            yield from units.done
    except expat.ExpatError as exc:
        raise InputError(path, f"malformed TMX: {exc}", exc.lineno) from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InputError(path, f"corrupt or truncated gzip: {exc}") from None


def read_tmx(path: Path, src_lang: str, langs: list[str], split: str | None, on_error: str,
             source: str, licence: str | None, out=None):
    sha = sha256_file(path)
    recs = {lang: InputRecord(source, "aligned", str(path), lang, sha, licence, extra={"split": split})
            for lang in langs}
    pairs = PairList() if out is None else out
    seen_langs: set[str] = set()
    n_tu = 0
    try:
        for line, segs in tmx_units(path, on_error):
            n_tu += 1
            seen_langs |= set(segs)
            for lang in langs:
                if lang in segs and src_lang in segs:
                    if segs[lang] is None or segs[src_lang] is None:
                        _skip_too_long(recs[lang], path, line)
                    else:
                        _emit(recs[lang], lang, segs[src_lang], segs[lang], split, pairs)
                elif lang in segs:
                    recs[lang].read += 1
                    recs[lang].drop("missing_source_language")
    except InputError as err:
        if on_error == "fail":
            raise
        for r in recs.values():
            r.extra["error"] = str(err)
            r.drop("file_error", pairs.emitted(r))
        pairs.discard(recs.values())
        return pairs, list(recs.values())
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


def collect_aligned(cfg, src_lang: str, langs: list[str], on_error: str, out=None):
    """(pairs, records); the pairs go to `out` (a `PairSink`) when given, else to a list."""
    pairs = PairList() if out is None else out
    records: list[InputRecord] = []
    for tag, files, lang in aligned_inputs(cfg, src_lang, langs):
        if cfg.format == "moses":
            _, rec = read_moses(*files, lang, tag, on_error, cfg.name, cfg.licence, out=pairs)
            recs = [rec]
        elif cfg.format == "tmx":
            _, recs = read_tmx(files[0], src_lang, langs, tag, on_error, cfg.name, cfg.licence, out=pairs)
        else:
            _, recs = read_tsv(files[0], src_lang, langs, lang, cfg.format == "tatoeba", tag,
                               on_error, cfg.name, cfg.licence, out=pairs)
        records += recs
    return pairs, records
