"""Resource bombs in aligned corpora: one endless line (10 GB of 'a' gzips to 10 MB), a TMX segment or
XML token of that size, entity expansion (billion laughs), zip members that lie about their size.

The class: any single line, field, segment or token is read in pieces of at most MAX_LINE_BYTES,
never whole. One longer than that is an InputError naming file:line under `on_error: fail`; under
`skip` it is skipped, counted (`too_long`) and reported with its file:line, and the lines after it
are read. A TMX token (tag, comment) that long is malformed: the whole file is refused or skipped.

The bombs run in a subprocess under an address-space limit far below their size, so a reader that
holds one whole fails there (MemoryError), not on the test machine. Crafting a gzip bomb costs one
1 MiB compression: gzip members may be concatenated, and readers must accept that.
"""
from __future__ import annotations

import gzip
import json
import logging
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from babelflow.config import AlignedSource, parse_params
from babelflow.corpus import aligned
from babelflow.corpus.aligned import collect_aligned, read_tmx
from babelflow.corpus.records import skipped
from babelflow.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
LIMIT = 256 * MiB  # the probe's address space: the readers never need more than a few MiB
BOMB = 384 * MiB  # every bomb is larger than LIMIT: holding one whole cannot succeed

PROBE = r"""
import json, resource, sys, time
from collections import Counter
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from babelflow.config import AlignedSource
from babelflow.corpus.aligned import collect_aligned
from babelflow.corpus.records import skipped
cfg = AlignedSource(type="aligned", name="t", **json.loads(sys.argv[2]))
out = {}
for on_error in ("fail", "skip"):
    t0 = time.monotonic()
    try:
        pairs, recs = collect_aligned(cfg, "en", ["de"], on_error)
        res = {"pairs": [[p.src, p.tgt] for p in pairs], "dropped": sum((r.dropped for r in recs), Counter()),
               "skipped": skipped(recs)}
    except Exception as exc:
        res = {"raised": type(exc).__name__, "error": str(exc)[:500]}
    res["s"] = time.monotonic() - t0
    out[on_error] = res
# VmHWM, not ru_maxrss: that one keeps the forking pytest process's size.
out["rss_mb"] = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps(out))
"""


def _a_member() -> bytes:
    return gzip.compress(b"a" * MiB, 9)  # ~1 KB


def _gzip_bomb(path: Path, head: bytes, size: int, tail: bytes) -> None:
    """head + `size` bytes of 'a' (no newline) + tail, gzip'd in ~size/1000 bytes."""
    member = _a_member()
    with open(path, "wb") as fh:
        fh.write(gzip.compress(head))
        for _ in range(size // MiB):
            fh.write(member)
        fh.write(gzip.compress(tail))
    assert path.stat().st_size < size // 500


def _probe(cfg: dict, limit: int = LIMIT) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, str(limit), json.dumps(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["rss_mb"] < 100, out
    for mode in ("fail", "skip"):
        assert out[mode]["s"] < 30, out
    return out


def _moses_gzip(d: Path) -> dict:
    _gzip_bomb(d / "train.en.gz", b"Hello\n", BOMB, b"\nBye\n")
    (d / "train.de").write_text("Hallo\nLang\nTschüs\n", encoding="utf-8")
    return {"path": str(d)}


def _tsv_sparse(d: Path) -> dict:
    # A plain file: line 2 is BOMB bytes (NULs, a sparse hole: no disk) without a newline until the end.
    with open(d / "pairs.tsv", "wb") as fh:
        fh.write(b"Hello\tHallo\n")
        fh.seek(BOMB)
        fh.write("\nBye\tTschüs\n".encode())
    return {"format": "tsv", "lang": "de", "path": str(d), "splits": {"train": "pairs.tsv"}}


def _tatoeba_gzip(d: Path) -> dict:
    # One field of a Tatoeba line is the bomb.
    _gzip_bomb(d / "tat.tsv.gz", b"eng\tdeu\tHello\tHallo\neng\tdeu\tLong\t", BOMB,
               "\ndeu\teng\tTschüs\tBye\n".encode())
    return {"format": "tatoeba", "path": str(d), "splits": {"train": "tat.tsv"}}


TMX_HEAD = b"""<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4"><header srclang="en"/><body>
<tu><tuv xml:lang="en"><seg>Hello</seg></tuv><tuv xml:lang="de"><seg>Hallo</seg></tuv></tu>
"""
TMX_BYE = """<tu><tuv xml:lang="en"><seg>Bye</seg></tuv><tuv xml:lang="de"><seg>Tschüs</seg></tuv></tu>
</body></tmx>
""".encode()


def _tmx_segment(d: Path) -> dict:
    head = TMX_HEAD + b'<tu><tuv xml:lang="en"><seg>Long</seg></tuv>\n<tuv xml:lang="de"><seg>'
    _gzip_bomb(d / "big.tmx.gz", head, BOMB, b"</seg></tuv></tu>\n" + TMX_BYE)
    return {"format": "tmx", "path": str(d), "splits": {"train": "big.tmx"}}


def _tmx_comment(d: Path) -> dict:
    _gzip_bomb(d / "big.tmx.gz", TMX_HEAD + b"<!-- ", BOMB, b" -->\n" + TMX_BYE)
    return {"format": "tmx", "path": str(d), "splits": {"train": "big.tmx"}}


@pytest.mark.parametrize("make,where", [
    (_moses_gzip, "train.en.gz:2"),
    (_tsv_sparse, "pairs.tsv:2"),
    (_tatoeba_gzip, "tat.tsv.gz:2"),
    (_tmx_segment, "big.tmx.gz:4"),
], ids=["moses-gzip", "tsv-plain", "tatoeba-gzip", "tmx-gzip-segment"])
def test_endless_line_is_refused_or_skipped_in_bounded_memory(tmp_path, make, where):
    out = _probe(make(tmp_path))
    fail, skip = out["fail"], out["skip"]
    assert fail.get("raised") == "InputError", out
    assert where in fail["error"] and "longer than" in fail["error"], fail
    assert skip.get("pairs") == [["Hello", "Hallo"], ["Bye", "Tschüs"]], skip  # the lines after it are read
    assert skip["dropped"].get("too_long") == 1, skip
    [s] = skip["skipped"]
    assert not s["whole"] and s["lines"] == 1 and "too_long 1" in s["reason"] and where in s["reason"], s


def test_endless_tmx_comment_is_refused_in_bounded_memory(tmp_path):
    """expat holds one token (tag, comment) whole before it reports it: one over MAX_LINE_BYTES is refused."""
    out = _probe(_tmx_comment(tmp_path))
    fail, skip = out["fail"], out["skip"]
    assert fail.get("raised") == "InputError" and "big.tmx.gz:4" in fail["error"], out
    assert skip.get("pairs") == [], skip
    [s] = skip["skipped"]
    assert s["whole"] and "big.tmx.gz:4" in s["reason"], s


def test_tmx_billion_laughs_is_refused_in_bounded_memory(tmp_path):
    """Nested entities: 1 KB claiming 3 GB of 'lol'. expat (>= 2.4) stops the expansion; checked here
    so a parser without that protection cannot come in unnoticed."""
    ents = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    (tmp_path / "lol.tmx").write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE tmx [<!ENTITY lol0 "lollollollollollollollollollol">{ents}]>\n'
        '<tmx version="1.4"><header srclang="en"/><body>\n'
        '<tu><tuv xml:lang="en"><seg>&lol9;</seg></tuv><tuv xml:lang="de"><seg>x</seg></tuv></tu>\n'
        '<tu><tuv xml:lang="en"><seg>a</seg></tuv><tuv xml:lang="de" x="&lol9;"><seg>y</seg></tuv></tu>\n'
        '</body></tmx>\n', encoding="utf-8")
    out = _probe({"format": "tmx", "path": str(tmp_path), "splits": {"train": "lol.tmx"}})
    fail, skip = out["fail"], out["skip"]
    assert fail.get("raised") == "InputError" and "lol.tmx:" in fail["error"], out
    assert skip.get("pairs") == [] and skip["skipped"][0]["whole"], skip
    for mode in (fail, skip):
        assert mode["s"] < 5, out


def test_deeply_nested_tmx_is_refused_in_bounded_memory(tmp_path):
    """expat keeps every open element: 9 MB of "<x>" (or a gzip of gigabytes) must not be followed down."""
    (tmp_path / "deep.tmx").write_bytes(TMX_HEAD + b"<x>" * 3_000_000)
    out = _probe({"format": "tmx", "path": str(tmp_path), "splits": {"train": "deep.tmx"}})
    fail, skip = out["fail"], out["skip"]
    assert fail.get("raised") == "InputError" and "deep.tmx:4: elements nested deeper" in fail["error"], out
    assert skip.get("pairs") == [] and skip["skipped"][0]["whole"], skip


def _many_lines(path: Path, unit: bytes, size: int) -> None:
    """`size` bytes of `unit` repeated (many short lines, not one long one), gzip'd ~1000:1."""
    member = gzip.compress(unit * (MiB // len(unit)), 9)
    with open(path, "wb") as fh:
        for _ in range(size // MiB):
            fh.write(member)


@pytest.mark.parametrize("name,fmt,unit", [
    ("pairs.tsv", "tsv", b"Hello\tHallo\n"),
    ("pairs.tmx", "tmx", b'<tu><tuv xml:lang="en"><seg>Hi</seg></tuv><tuv xml:lang="de"><seg>Hallo</seg></tuv></tu>'),
], ids=["tsv", "tmx"])
def test_gzip_of_many_short_lines_is_refused_in_bounded_memory(tmp_path, name, fmt, unit):
    """collect keeps every pair (~250 bytes each): 23 KB of gzip'd TSV took 250 MB, 10 MB would take
    100 GB. A gzip that inflates over MAX_INFLATE times is refused as a decompression bomb."""
    head = TMX_HEAD.split(b"<tu>")[0] if fmt == "tmx" else b""
    path = tmp_path / (name + ".gz")
    path.write_bytes(gzip.compress(head))
    with open(path, "ab") as fh:
        _many_lines(tmp_path / "body.gz", unit, BOMB)
        fh.write((tmp_path / "body.gz").read_bytes())
    out = _probe({"format": fmt, "lang": "de", "path": str(tmp_path), "splits": {"train": name}})
    fail, skip = out["fail"], out["skip"]
    assert fail.get("raised") == "InputError" and name + ".gz:" in fail["error"], out
    assert "decompression bomb" in fail["error"], out
    assert skip.get("pairs") == [] and skip["skipped"][0]["whole"], skip
    assert "decompression bomb" in skip["skipped"][0]["reason"], skip


# --- small caps: the rules, fast --------------------------------------------------------------------

@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(aligned, "MAX_LINE_BYTES", 64)
    return 64


def test_long_moses_target_side_names_its_file(tmp_path, small_cap):
    (tmp_path / "train.en").write_text("Hello\nLong\nBye\n", encoding="utf-8")
    (tmp_path / "train.de.gz").write_bytes(gzip.compress(b"Hallo\n" + b"x" * 65 + b"\nTsch\n"))
    cfg = AlignedSource(type="aligned", name="t", path=str(tmp_path))
    with pytest.raises(InputError) as ei:
        collect_aligned(cfg, "en", ["de"], "fail")
    assert ei.value.path.endswith("train.de.gz") and ei.value.line == 2
    assert "longer than 64 bytes" in str(ei.value)
    pairs, [rec] = collect_aligned(cfg, "en", ["de"], "skip")
    assert [(p.src, p.tgt) for p in pairs] == [("Hello", "Hallo"), ("Bye", "Tsch")]
    assert rec.read == 3 and rec.dropped == {"too_long": 1}


def test_line_at_the_cap_is_kept(tmp_path, small_cap):
    # The cap counts the newline, as the clean stage does: what collect keeps, clean can read.
    (tmp_path / "train.en").write_bytes(b"e" * 63 + b"\n" + b"f" * 64 + b"\n")
    (tmp_path / "train.de").write_bytes(b"d" * 63 + b"\n" + b"g\n")
    cfg = AlignedSource(type="aligned", name="t", path=str(tmp_path))
    pairs, [rec] = collect_aligned(cfg, "en", ["de"], "skip")
    assert [len(p.src) for p in pairs] == [63] and rec.dropped == {"too_long": 1}


def test_tmx_gzip_and_long_segment_rules(tmp_path, small_cap):
    long_tu = b'<tu><tuv xml:lang="en"><seg>' + b"y" * 70 + b'</seg></tuv><tuv xml:lang="de"><seg>z</seg></tuv></tu>\n'
    data = TMX_HEAD + long_tu + TMX_BYE
    (tmp_path / "m.tmx.gz").write_bytes(gzip.compress(data))
    with pytest.raises(InputError, match=r"m\.tmx\.gz:4: .*longer than 64 bytes"):
        read_tmx(tmp_path / "m.tmx.gz", "en", ["de"], None, "fail", "t", None)
    pairs, recs = read_tmx(tmp_path / "m.tmx.gz", "en", ["de"], None, "skip", "t", None)
    assert [(p.src, p.tgt) for p in pairs] == [("Hello", "Hallo"), ("Bye", "Tschüs")]
    assert recs[0].dropped == {"too_long": 1} and recs[0].read == 3


def test_collect_warns_once_naming_file_and_line(tmp_path, small_cap, caplog):
    from babelflow.corpus.sources import collected

    (tmp_path / "train.en").write_text("".join(f"Sentence {i}\n" for i in range(30)) + "x" * 100 + "\n",
                                       encoding="utf-8")
    (tmp_path / "train.de").write_text("".join(f"Satz {i}\n" for i in range(31)), encoding="utf-8")
    params = parse_params({
        "languages": {"source": "en", "targets": ["de"], "heldout": []}, "adapt": {"enabled": False},
        "collect": {"on_error": "skip", "split": {"dev": 0.1, "test": 0.1},
                    "sources": [{"type": "aligned", "name": "c", "path": str(tmp_path)}]}})
    with caplog.at_level(logging.WARNING):
        with collected(params, tmp_path / "cache"):
            pass
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "too_long 1" in warned[0], warned
    assert f"{tmp_path / 'train.en'}:31" in warned[0], warned  # the side that was too long, and where


# --- zip archives ------------------------------------------------------------------------------------

def _zip_member_bomb(path: Path, members: dict[str, tuple[bytes, int, bytes]]) -> None:
    """Each member: head + n bytes of 'a' + tail, deflated (streamed: never in memory whole)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (head, n, tail) in members.items():
            with zf.open(name, "w") as fh:
                fh.write(head)
                for _ in range(n // MiB):
                    fh.write(b"a" * MiB)
                fh.write(tail)


def _declare_size(path: Path, size: int) -> None:
    """Make every member's local and central header claim `size` uncompressed bytes (zip32)."""
    data = bytearray(path.read_bytes())
    cd_offset = struct.unpack_from("<I", data, len(data) - 22 + 16)[0]  # end record, no comment
    pos = cd_offset
    while data[pos : pos + 4] == b"PK\x01\x02":
        struct.pack_into("<I", data, pos + 24, size)
        local = struct.unpack_from("<I", data, pos + 42)[0]
        struct.pack_into("<I", data, local + 22, size)
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + n + m + k
    path.write_bytes(bytes(data))


ZIP_PROBE = r"""
import json, resource, sys, time
from collections import Counter
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from babelflow.corpus.aligned import read_moses
from babelflow.corpus.download import safe_extract_zip
archive, dest = Path(sys.argv[2]), Path(sys.argv[3])
out = {}
t0 = time.monotonic()
try:
    files = safe_extract_zip(archive, dest, 2_000_000_000)
    out["files"] = [[f.name, f.stat().st_size] for f in files]
    en, de = (next(f for f in files if f.suffix == suffix) for suffix in (".en", ".de"))
    for on_error in ("fail", "skip"):
        try:
            pairs, rec = read_moses(en, de, "de", None, on_error, "t", None)
            out[on_error] = {"pairs": [[p.src, p.tgt] for p in pairs], "dropped": rec.dropped}
        except Exception as exc:
            out[on_error] = {"raised": type(exc).__name__, "error": str(exc)[:500]}
except Exception as exc:
    out["extract"] = {"raised": type(exc).__name__, "error": str(exc)[:500]}
out["s"] = time.monotonic() - t0
# VmHWM, not ru_maxrss: that one keeps the forking pytest process's size.
out["rss_mb"] = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps(out))
"""


def _zip_probe(archive: Path, dest: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", ZIP_PROBE, str(LIMIT), str(archive), str(dest)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["rss_mb"] < 100 and out["s"] < 30, out
    return out


def test_zip_member_with_an_endless_line_extracts_and_reads_in_bounded_memory(tmp_path):
    # Honest sizes within max_bytes (a 1000:1 ratio is allowed: max_bytes bounds the disk it costs);
    # the line in it is the reader's to bound.
    archive = tmp_path / "en-de.zip"
    _zip_member_bomb(archive, {"T.de-en.en": (b"Hello\n", BOMB, b"\nBye\n"),
                               "T.de-en.de": ("Hallo\nLang\nTschüs\n".encode(), 0, b"")})
    assert archive.stat().st_size < BOMB // 500
    out = _zip_probe(archive, tmp_path / "x.d")
    assert out.get("fail", {}).get("raised") == "InputError", out
    assert "T.de-en.en:2" in out["fail"]["error"] and "longer than" in out["fail"]["error"], out
    assert out["skip"] == {"pairs": [["Hello", "Hallo"], ["Bye", "Tschüs"]], "dropped": {"too_long": 1}}, out


def test_zip_member_that_understates_its_size_is_cut_there_and_refused(tmp_path):
    # The central directory says 1000 bytes; the deflate stream holds BOMB bytes. zipfile stops at the
    # declared size and the CRC then fails: at most 1000 bytes are written, and they are removed.
    archive = tmp_path / "liar.zip"
    _zip_member_bomb(archive, {"T.de-en.en": (b"", BOMB, b""), "T.de-en.de": (b"x\n", 0, b"")})
    _declare_size(archive, 1000)
    out = _zip_probe(archive, tmp_path / "x.d")
    assert out.get("extract", {}).get("raised") == "InputError", out
    assert "liar.zip" in out["extract"]["error"] and "corrupt" in out["extract"]["error"], out
    assert not (tmp_path / "x.d").exists() and not (tmp_path / "x.d.tmp").exists()


def test_zip_that_claims_more_than_max_bytes_is_refused_before_writing(tmp_path):
    archive = tmp_path / "claims.zip"
    _zip_member_bomb(archive, {"T.de-en.en": (b"Hello\n", 0, b""), "T.de-en.de": (b"Hallo\n", 0, b"")})
    _declare_size(archive, 0xFFFF0000)  # ~4 GiB each, over the default max_bytes (2 GB)
    out = _zip_probe(archive, tmp_path / "x.d")
    assert "max_bytes=2000000000" in out.get("extract", {}).get("error", ""), out
    assert not (tmp_path / "x.d").exists() and not (tmp_path / "x.d.tmp").exists()


# --- the clean stage's reader ------------------------------------------------------------------------

CLEAN_PROBE = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from pathlib import Path
from babelflow.clean.pipeline import SplitReport, _read_pairs
d = Path(sys.argv[2])
out = {}
for on_error in ("fail", "skip"):
    rep = SplitReport()
    try:
        rows = [r[1:] for r in _read_pairs(d / "train.src", d / "train.tgt", on_error, rep, 5)]
        out[on_error] = {"rows": rows, "removed": rep.removed}
    except Exception as exc:
        out[on_error] = {"raised": type(exc).__name__, "error": str(exc)[:500]}
# VmHWM, not ru_maxrss: that one keeps the forking pytest process's size.
out["rss_mb"] = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps(out))
"""


def test_clean_reads_an_endless_raw_line_in_bounded_memory(tmp_path):
    with open(tmp_path / "train.src", "wb") as fh:  # line 2: BOMB NUL bytes, a sparse hole
        fh.write(b"Hello\n")
        fh.seek(BOMB)
        fh.write(b"\nBye\n")
    (tmp_path / "train.tgt").write_text("Hallo\nLang\nTschüs\n", encoding="utf-8")
    res = subprocess.run([sys.executable, "-c", CLEAN_PROBE, str(LIMIT), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["fail"].get("raised") == "InputError" and "train.src:2" in out["fail"]["error"], out
    assert out["skip"]["rows"] == [["Hello", "Hallo"], ["Bye", "Tschüs"]], out
    assert out["skip"]["removed"] == {"invalid_input": 1}, out
    assert out["rss_mb"] < 200, out


def test_genuine_gzip_text_is_not_a_bomb(tmp_path, multi30k_dir):
    # Multi30k inflates 3.3x (the most repetitive real corpora ~10x); MAX_INFLATE leaves a wide margin.
    for lang in ("en", "de"):
        data = (multi30k_dir / f"train.{lang}").read_bytes()
        (tmp_path / f"train.{lang}.gz").write_bytes(gzip.compress(data, 9))
    cfg = AlignedSource(type="aligned", name="t", path=str(tmp_path))
    pairs, [rec] = collect_aligned(cfg, "en", ["de"], "fail")
    assert rec.read == 29000 and len(pairs) == 29000 - sum(rec.dropped.values())
