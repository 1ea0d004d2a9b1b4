""".mo resource bombs: entries may share string data, so a small catalog can claim gigabytes of text.

The reader must refuse such a catalog (naming the file and the entry) in bounded memory and time,
and skip (and count) strings no line of the corpus could ever hold. The bomb runs in a subprocess
with an address-space limit, so a reader that expands it fails there, not on the test machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from babelflow.corpus.gettext import MAX_STRING_BYTES, read_catalog
from babelflow.corpus.records import skipped
from babelflow.errors import InputError

from tests.corpus.mo_writer import make_mo, make_shared_mo

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, resource, sys, time, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from babelflow.corpus.gettext import read_catalog
out = {}
for on_error in ("fail", "skip"):
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        pairs, rec = read_catalog(__import__("pathlib").Path(sys.argv[1]), "de", "t", on_error, None)
        res = {"pairs": len(pairs), "error": rec.extra.get("error")}
    except Exception as exc:
        res = {"raised": type(exc).__name__, "error": str(exc)}
    res["s"] = time.monotonic() - t0
    res["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    out[on_error] = res
print(json.dumps(out))
"""


def test_shared_string_bomb_is_refused_in_bounded_memory_and_time(tmp_path):
    d = tmp_path / "de" / "LC_MESSAGES"
    d.mkdir(parents=True)
    bomb = d / "bomb.mo"
    bomb.write_bytes(make_shared_mo(40_000, b"x" * 400_000))  # ~1 MB claiming ~32 GB
    assert bomb.stat().st_size < 1_100_000
    res = subprocess.run([sys.executable, "-c", PROBE, str(bomb)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    fail, skip = out["fail"], out["skip"]
    assert fail.get("raised") == "InputError", fail
    assert "bomb.mo" in fail["error"] and "entry " in fail["error"], fail
    assert skip.get("pairs") == 0 and "bomb.mo" in skip["error"], skip  # skip: recorded, not raised
    for r in (fail, skip):
        assert r["peak_mb"] < 20 and r["s"] < 5, r


def test_overlong_string_is_refused_or_skipped_and_counted(tmp_path):
    # As every corpus reader treats a line over MAX_LINE_BYTES: fail names it, skip counts it.
    d = tmp_path / "de" / "LC_MESSAGES"
    d.mkdir(parents=True)
    path = d / "long.mo"
    path.write_bytes(make_mo({b"Open": b"\xc3\x96ffnen", b"Huge": b"y" * (MAX_STRING_BYTES + 1)}))
    with pytest.raises(InputError, match=r"long\.mo: entry \d+ .*longer than 1048576 bytes"):
        read_catalog(path, "de", "t", "fail", None)
    pairs, rec = read_catalog(path, "de", "t", "skip", None)
    assert [(p.src, p.tgt) for p in pairs] == [("Open", "Öffnen")]
    assert rec.dropped == {"too_long": 1} and rec.read == 2
    assert "too_long 1; first at " in skipped([rec])[0]["reason"]  # reported, not a silent drop


def test_overlong_po_string_is_refused_or_skipped_naming_its_line(tmp_path):
    path = tmp_path / "de.po"
    path.write_text('msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                    'msgid "Open"\nmsgstr "Öffnen"\n\n'
                    f'msgid "Huge"\nmsgstr "{"y" * MAX_STRING_BYTES}"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"de\.po:7: .*longer than 1048576 bytes"):
        read_catalog(path, "de", "t", "fail", None)
    pairs, rec = read_catalog(path, "de", "t", "skip", None)
    assert [(p.src, p.tgt) for p in pairs] == [("Open", "Öffnen")]
    assert rec.dropped == {"too_long": 1} and rec.read == 2
    assert "de.po:7" in skipped([rec])[0]["reason"]
