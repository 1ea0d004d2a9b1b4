from __future__ import annotations

import hashlib
import io
import socket
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from babelflow.config import UrlSource
from babelflow.corpus.download import cache_path, collect_url, fetch, safe_extract_zip
from babelflow.errors import InputError, IntegrityError, SourceUnavailableError


class _Server:
    """Serves in-memory files; honours Range; can cut the first response short to force a resume."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_first = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                self.send_response(206 if rng else 200)
                self.send_header("ETag", '"1"')  # a resume is only tried against a validator
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if outer.cut_first:
                    outer.cut_first = False
                    self.wfile.write(body[start : start + len(body) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _zip(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_download_resume_cache_and_checksum(server, tmp_path):
    body = b"".join(b"line %d\n" % i for i in range(20000))
    server.files["/data.txt"] = body
    server.cut_first = True
    sha = hashlib.sha256(body).hexdigest()
    path = fetch(server.base + "/data.txt", tmp_path, "t", sha256=sha, retries=2, backoff_s=0.01)
    assert path.read_bytes() == body
    assert server.requests[0][1] is None and server.requests[1][1].startswith("bytes=")  # resumed
    n = len(server.requests)
    assert fetch(server.base + "/data.txt", tmp_path, "t", sha256=sha) == path
    assert len(server.requests) == n  # cache hit: no request at all

    server.files["/other.txt"] = b"tampered"
    with pytest.raises(IntegrityError, match="expected 00"):
        fetch(server.base + "/other.txt", tmp_path, "t", sha256="0" * 64, backoff_s=0.01)
    assert not cache_path(tmp_path, server.base + "/other.txt").exists()


def test_http_404_and_offline_fail_fast(server, tmp_path):
    with pytest.raises(SourceUnavailableError, match="source 'm30k'.*HTTP 404.*aligned"):
        fetch(server.base + "/missing", tmp_path, "m30k", backoff_s=0.01)
    with socket.socket() as s:  # a port nobody listens on: connection refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceUnavailableError, match="after 2 attempts.*local copy"):
        fetch(f"http://127.0.0.1:{port}/x.zip", tmp_path, "opus", retries=1, backoff_s=0.01)


def test_opus_moses_zip_source(server, tmp_path):
    server.files["/en-de.zip"] = _zip({"Tiny.de-en.en": b"Hello\nBye\n", "Tiny.de-en.de": b"Hallo\nTschau\n",
                                       "README": b"licence: CC-BY"})
    cfg = UrlSource(type="url", name="opus", url=server.base + "/en-de.zip", retries=0)
    pairs, recs = collect_url(cfg, "en", ["de", "fr"], "fail", tmp_path)
    assert [(p.src, p.tgt) for p in pairs] == [("Hello", "Hallo"), ("Bye", "Tschau")]
    assert recs[0].extra["url"] == cfg.url and recs[0].read == 2


@pytest.mark.parametrize("members,links", [
    ({"../evil.txt": b"x"}, ()),
    ({"/abs.txt": b"x"}, ()),
    ({"a/../../evil.txt": b"x"}, ()),
    ({"ok.txt": b"x"}, ("link",)),
])
def test_zip_extraction_rejects_unsafe_members(tmp_path, members, links):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip(members, links))
    with pytest.raises(InputError, match="outside the target folder|symlink"):
        safe_extract_zip(archive, tmp_path / "out", max_bytes=10_000)
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_zip_size_limit(tmp_path):
    archive = tmp_path / "big.zip"
    archive.write_bytes(_zip({"big.en": b"a" * 5000}))
    with pytest.raises(InputError, match="max_bytes"):
        safe_extract_zip(archive, tmp_path / "out", max_bytes=1000)


def test_sacrebleu_source_via_api_and_offline_message(tmp_path, monkeypatch):
    import sacrebleu.utils

    from babelflow.config import SacrebleuSource
    from babelflow.corpus.download import collect_sacrebleu

    (tmp_path / "src.en").write_text("A test.\nAnother.\n", encoding="utf-8")
    (tmp_path / "ref.de").write_text("Ein Test.\nNoch einer.\n", encoding="utf-8")
    monkeypatch.setattr(sacrebleu.utils, "get_source_file", lambda ts, lp: str(tmp_path / "src.en"))
    monkeypatch.setattr(sacrebleu.utils, "get_reference_files", lambda ts, lp: [str(tmp_path / "ref.de")])
    cfg = SacrebleuSource(type="sacrebleu", name="wmt14", test_set="wmt14")
    pairs, [rec] = collect_sacrebleu(cfg, "en", ["de", "ga"], "fail")
    assert [(p.src, p.tgt, p.split) for p in pairs] == [("A test.", "Ein Test.", "test"),
                                                          ("Another.", "Noch einer.", "test")]
    assert rec.extra["sacrebleu"] == "wmt14/en-de"

    def offline(ts, lp):
        raise OSError("Name or service not known")

    monkeypatch.setattr(sacrebleu.utils, "get_source_file", offline)
    with pytest.raises(SourceUnavailableError, match="source 'wmt14'.*aligned"):
        collect_sacrebleu(cfg, "en", ["de"], "fail")
    with pytest.raises(InputError, match="not a sacrebleu test set"):
        collect_sacrebleu(SacrebleuSource(type="sacrebleu", name="x", test_set="no-such-set"), "en", ["de"], "fail")
