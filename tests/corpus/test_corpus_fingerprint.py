"""The inputs fingerprint, per source type: it names exactly the files collect reads, changes when
their content changes (not when they are merely touched), and re-hashes nothing on an unchanged
machine. The same behaviour through real `dvc repro` is in tests/pipeline/test_pipeline_inputs.py."""
from __future__ import annotations

import gzip
import json
import os
import sys
from importlib import metadata

import pytest

import babelflow.corpus.fingerprint as fingerprint_module
from babelflow.config import parse_params
from babelflow.corpus.download import cache_path
from babelflow.corpus.fingerprint import input_fingerprint
from babelflow.errors import InputError
from babelflow.io import read_json
from tasks._common import Paths
from tasks.collect import run as run_collect
from tests.corpus.mo_writer import make_mo

EN = ["The cat sleeps.", "A dog runs home.", "Two birds sing loudly.", "The house is red."]
DE = ["Die Katze schläft.", "Ein Hund läuft nach Hause.", "Zwei Vögel singen laut.", "Das Haus ist rot."]


def _params(*sources):
    return parse_params({"languages": {"source": "en", "targets": ["de"]}, "adapt": {"enabled": False},
                         "collect": {"sources": list(sources), "split": {"dev": 0.0, "test": 0.0}}})


def _files(fp) -> list[str]:
    return [f["path"] for s in fp["sources"] for f in s["files"]]


def _touch(path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))


def _mo(n: int = 4) -> bytes:
    return make_mo({s.encode(): t.encode() for s, t in zip(EN[:n], DE[:n])})


def _tmx(n: int) -> str:
    tus = "".join(f'<tu><tuv xml:lang="en"><seg>{s}</seg></tuv><tuv xml:lang="de"><seg>{t}</seg></tuv></tu>'
                  for s, t in zip(EN[:n], DE[:n]))
    return f'<?xml version="1.0"?><tmx version="1.4"><header/><body>{tus}</body></tmx>'


@pytest.fixture()
def local(tmp_path, monkeypatch):
    """A Moses pair (target side gzipped), a TSV, a TMX and a gettext folder; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "moses").mkdir()
    (tmp_path / "moses" / "train.en").write_text("\n".join(EN) + "\n")
    (tmp_path / "moses" / "train.de.gz").write_bytes(gzip.compress(("\n".join(DE) + "\n").encode()))
    (tmp_path / "moses" / "train.es").write_text("not read: es is no language of this run\n" * 4)
    (tmp_path / "tsv").mkdir()
    (tmp_path / "tsv" / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(EN, DE)))
    (tmp_path / "tmx").mkdir()
    (tmp_path / "tmx" / "tm.tmx").write_text(_tmx(3))
    (tmp_path / "loc" / "de" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "loc" / "de" / "LC_MESSAGES" / "app.mo").write_bytes(_mo())
    (tmp_path / "loc" / "de" / "LC_MESSAGES" / "other.mo").write_bytes(_mo(2))
    return _params(
        {"type": "aligned", "name": "moses", "path": "moses"},
        {"type": "aligned", "name": "tsv", "format": "tsv", "path": "tsv", "lang": "de",
         "splits": {"train": "train.tsv"}},
        {"type": "aligned", "name": "tmx", "format": "tmx", "path": "tmx", "splits": {"train": "tm.tmx"}},
        {"type": "gettext", "name": "cat", "search": ["loc"], "domains": ["app"]},
    )


def test_lists_exactly_the_files_collect_reads(local, tmp_path):
    fp = input_fingerprint(local, tmp_path / "cache")
    run_collect(local, Paths(tmp_path / "proj"))
    manifest = read_json(tmp_path / "proj" / "data" / "raw" / "manifest.json")
    read = {r["path"] for r in manifest["inputs"]} | {r["src_path"] for r in manifest["inputs"] if "src_path" in r}
    assert sorted(_files(fp)) == sorted(read)
    assert "moses/train.de.gz" in read and "moses/train.es" not in read  # gz found, other languages not
    assert "loc/de/LC_MESSAGES/other.mo" not in read  # outside `domains`
    # Content only: path, size, sha256; no clock reading reaches the output.
    assert all(set(f) == {"path", "size", "sha256"} for s in fp["sources"] for f in s["files"])


@pytest.mark.parametrize("path, content", [
    ("moses/train.de.gz", gzip.compress(b"\n".join(d.encode() for d in DE[::-1]) + b"\n")),
    ("tsv/train.tsv", f"{EN[0]}\t{DE[1]}\n".encode()),
    ("tmx/tm.tmx", _tmx(4).encode()),
    ("loc/de/LC_MESSAGES/app.mo", _mo(3)),
])
def test_an_edit_changes_it_and_a_touch_does_not(local, tmp_path, path, content):
    before = input_fingerprint(local, tmp_path / "cache")
    _touch(tmp_path / path)
    assert input_fingerprint(local, tmp_path / "cache") == before
    (tmp_path / path).write_bytes(content)
    assert input_fingerprint(local, tmp_path / "cache") != before


def test_gettext_catalog_added_by_a_package_install(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "pkg_a" / "locale" / "de" / "LC_MESSAGES").mkdir(parents=True)
    (site / "pkg_a" / "locale" / "de" / "LC_MESSAGES" / "a.mo").write_bytes(_mo())
    monkeypatch.setattr(sys, "path", [str(site)])
    params = _params({"type": "gettext", "name": "machine", "search": ["python"]})
    before = input_fingerprint(params, tmp_path / "cache")
    assert _files(before) == [str(site / "pkg_a" / "locale" / "de" / "LC_MESSAGES" / "a.mo")]
    (site / "pkg_b" / "locales" / "de" / "LC_MESSAGES").mkdir(parents=True)
    (site / "pkg_b" / "locales" / "de" / "LC_MESSAGES" / "b.mo").write_bytes(_mo(2))
    after = input_fingerprint(params, tmp_path / "cache")
    assert len(_files(after)) == 2 and after != before


def test_url_keyed_by_declared_sha256_else_by_the_cached_download(tmp_path):
    url = "https://example.org/corpus/en-de.tsv"
    declared = _params({"type": "url", "name": "u", "url": url, "sha256": "ab" * 32, "format": "tsv"})
    fp = input_fingerprint(declared, tmp_path / "cache")["sources"][0]
    assert (fp["url"], fp["sha256"], fp["files"]) == (url, "ab" * 32, [])

    undeclared = _params({"type": "url", "name": "u", "url": url, "format": "tsv"})
    assert input_fingerprint(undeclared, tmp_path / "cache")["sources"][0]["sha256"] is None  # not fetched yet
    cached = cache_path(tmp_path / "cache", url)  # where collect's fetch keeps it
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(f"{EN[0]}\t{DE[0]}\n")
    first = input_fingerprint(undeclared, tmp_path / "cache")["sources"][0]["sha256"]
    assert first is not None
    cached.write_text(f"{EN[1]}\t{DE[1]}\n")
    assert input_fingerprint(undeclared, tmp_path / "cache")["sources"][0]["sha256"] not in (None, first)


def test_sacrebleu_keyed_by_test_set_split_and_sacrebleu_version(tmp_path):
    params = _params({"type": "sacrebleu", "name": "wmt", "test_set": "wmt14", "split": "dev"})
    fp = input_fingerprint(params, tmp_path / "cache")["sources"][0]
    assert fp == {"name": "wmt", "type": "sacrebleu", "test_set": "wmt14", "split": "dev",
                  "sacrebleu": metadata.version("sacrebleu"), "files": []}


def test_an_unchanged_machine_rehashes_nothing_and_a_same_size_same_mtime_rewrite_is_seen(
        local, tmp_path, monkeypatch):
    hashed = []
    real = fingerprint_module.sha256_file
    monkeypatch.setattr(fingerprint_module, "sha256_file", lambda p: hashed.append(p) or real(p))
    before = input_fingerprint(local, tmp_path / "cache")
    assert len(hashed) == len(_files(before)) == 5
    hashed.clear()
    assert input_fingerprint(local, tmp_path / "cache") == before and hashed == []
    # A package unpacked with the archive's fixed timestamps: same size, same mtime, new content.
    tsv = tmp_path / "tsv" / "train.tsv"
    st = tsv.stat()
    tsv.write_bytes(tsv.read_bytes().replace(b"Die Katze", b"Der Kater"))
    os.utime(tsv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tsv.stat().st_size == st.st_size
    assert input_fingerprint(local, tmp_path / "cache") != before and len(hashed) == 1
    # A damaged cache is only a cache.
    after = input_fingerprint(local, tmp_path / "cache")
    for damaged in ("{not json", "[]", json.dumps({str(tsv): [1, 2]})):
        (tmp_path / "cache" / "inputs-sha256.json").write_text(damaged)
        assert input_fingerprint(local, tmp_path / "cache") == after


def test_a_missing_input_fails_as_collect_would(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _params({"type": "aligned", "name": "m", "path": "nowhere"})
    with pytest.raises(InputError, match="source side of the aligned corpus not found"):
        input_fingerprint(params, tmp_path / "cache")
