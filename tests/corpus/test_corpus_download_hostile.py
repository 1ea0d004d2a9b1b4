"""Hostile or broken HTTP servers, without a declared sha256: a real server on 127.0.0.1 per scenario.

Nothing incomplete or spliced is ever cached as complete, the whole fetch ends within `timeout_s`,
and a corrupt archive is an InputError naming the URL that leaves nothing in the cache.
"""
from __future__ import annotations

import gzip
import io
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from babelflow.config import UrlSource
from babelflow.corpus.download import cache_path, collect_url, fetch, safe_extract_zip
from babelflow.errors import InputError, IntegrityError, SourceUnavailableError

ROOT = Path(__file__).resolve().parents[2]
BODY_V1 = b"".join(b"version one, line %d\n" % i for i in range(4000))
BODY_V2 = b"".join(b"VERSION TWO, LINE %d\n" % i for i in range(4000))


class Server:
    """One file at /f. `mode` picks the misbehaviour; `cut` cuts the next response after a third."""

    def __init__(self, mode: str = "ok"):
        self.mode, self.body, self.etag, self.cut = mode, BODY_V1, '"v1"', False
        self.requests: list[dict] = []
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if mode == "chunked" else "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append(dict(self.headers))
                try:
                    outer.serve(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/f"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        body, mode = self.body, self.mode
        if mode == "trickle_headers":
            h.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
            while not self.stop.wait(0.1):
                h.wfile.write(b"a")
                h.wfile.flush()
            return
        rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
        start = 0
        if rng and mode in ("ok", "ignores_if_range", "no_validators"):
            if mode != "ok" or if_range is None or if_range == self.etag:  # RFC 9110 If-Range
                start = int(rng.split("=")[1].rstrip("-"))
        h.send_response(206 if start else 200)
        if mode != "no_validators":
            h.send_header("ETag", self.etag)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if mode == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
        elif mode not in ("unframed", "trickle"):
            h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        if mode == "trickle":
            while not self.stop.wait(0.1):
                h.wfile.write(b"x")
                h.wfile.flush()
            return
        part = body[start:]
        if self.cut:
            self.cut = False
            part = part[: len(part) // 3]
            h.close_connection = True
        if mode == "chunked":
            h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            if len(part) == len(body) - start:
                h.wfile.write(b"0\r\n\r\n")
            else:
                h.close_connection = True
        else:
            h.wfile.write(part)

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def serve():
    servers = []

    def make(mode="ok"):
        servers.append(Server(mode))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _cached(tmp_path: Path, url: str) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(cache_path(tmp_path, url).name))


def test_truncated_body_without_content_length_is_never_cached(serve, tmp_path):
    # HTTP/1.0, no Content-Length: the body ends when the connection closes, so an early close
    # looks like the end of the file. Without a sha256 nothing can tell them apart: refused.
    s = serve("unframed")
    s.cut = True
    with pytest.raises(IntegrityError, match=r"Content-Length.*sha256"):
        fetch(s.url, tmp_path, "t", retries=0)
    assert _cached(tmp_path, s.url) == []
    s.body = b"complete, but nothing proves it\n"
    with pytest.raises(IntegrityError, match="sha256"):
        fetch(s.url, tmp_path, "t", retries=0)
    assert _cached(tmp_path, s.url) == []


def test_chunked_body_cut_short_is_retried_never_cached(serve, tmp_path):
    s = serve("chunked")
    s.cut = True
    with pytest.raises(SourceUnavailableError):
        fetch(s.url, tmp_path, "t", retries=0)
    assert not cache_path(tmp_path, s.url).exists()
    s.cut = True
    assert fetch(s.url, tmp_path, "t", retries=2, backoff_s=0.01).read_bytes() == BODY_V1


@pytest.mark.parametrize("mode", ["ok", "ignores_if_range", "no_validators"])
def test_resume_never_splices_two_versions(serve, tmp_path, mode):
    s = serve(mode)
    s.cut = True  # the first run ends with a third of version 1 in the .part file
    with pytest.raises(SourceUnavailableError):
        fetch(s.url, tmp_path, "t", retries=0)
    s.body, s.etag = BODY_V2, '"v2"'  # then the file changes on the server
    assert fetch(s.url, tmp_path, "t", retries=1, backoff_s=0.01).read_bytes() == BODY_V2
    resumed = s.requests[1]
    if mode == "no_validators":
        assert "Range" not in resumed  # nothing to check a resume against: start from zero
    else:
        assert resumed["If-Range"] == '"v1"'


def test_resume_of_an_unchanged_file_appends(serve, tmp_path):
    s = serve("ok")
    s.cut = True
    with pytest.raises(SourceUnavailableError):
        fetch(s.url, tmp_path, "t", retries=0)
    assert fetch(s.url, tmp_path, "t", retries=0).read_bytes() == BODY_V1
    assert s.requests[1]["Range"] == f"bytes={len(BODY_V1) // 3}-"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["trickle", "trickle_headers"])
def test_timeout_bounds_the_whole_transfer(serve, tmp_path, mode):
    s = serve(mode)  # one byte every 0.1 s, forever: no single read ever times out
    box: list = []

    def run():
        try:
            fetch(s.url, tmp_path, "t", retries=3, timeout_s=1.0, backoff_s=0.01)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            box.append(exc)

    t0 = time.monotonic()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(10)
    assert not th.is_alive(), "fetch still running 10 s after timeout_s=1"
    assert time.monotonic() - t0 < 3.0
    assert isinstance(box[0], SourceUnavailableError) and "timeout_s=1.0" in str(box[0]), box
    assert not cache_path(tmp_path, s.url).exists()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


GOOD_ZIP = _zip({"T.de-en.en": b"Hello\nBye\n" * 500, "T.de-en.de": b"Hallo\nTschau\n" * 500})


GOOD_GZ = gzip.compress("".join(f"Hello {i}\tHallo {i}\n" for i in range(3000)).encode())


def _corrupt(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 16]) + data[mid + 16 :]


@pytest.mark.parametrize("fmt,good,bad", [
    ("opus-moses-zip", GOOD_ZIP, GOOD_ZIP[: len(GOOD_ZIP) // 2]),  # truncated: no central directory
    ("opus-moses-zip", GOOD_ZIP, _corrupt(GOOD_ZIP)),  # a member fails its CRC
    ("tsv", GOOD_GZ, GOOD_GZ[: len(GOOD_GZ) // 2]),  # truncated gzip
    ("tsv", GOOD_GZ, _corrupt(GOOD_GZ)),  # a damaged deflate stream or CRC
])
def test_corrupt_archive_is_an_input_error_and_not_cached(serve, tmp_path, fmt, good, bad):
    s = serve("ok")
    s.body = bad
    cfg = UrlSource(type="url", name="opus", url=s.url, format=fmt, members={"lang": "de"}, retries=0)
    for on_error in ("fail", "skip"):
        with pytest.raises(InputError, match=r"http://127\.0\.0\.1:\d+/f: .*(corrupt|truncated)"):
            collect_url(cfg, "en", ["de"], on_error, tmp_path)
        assert [n for n in _cached(tmp_path, s.url) if not n.endswith(".corrupt")] == []
    s.body = good  # the next run downloads again and succeeds
    pairs, _recs = collect_url(cfg, "en", ["de"], "skip", tmp_path)
    assert pairs


def test_corrupt_cache_entry_is_moved_aside_and_downloaded_again(serve, tmp_path):
    s = serve("ok")
    s.body = GOOD_ZIP
    cached = cache_path(tmp_path, s.url)
    cached.write_bytes(GOOD_ZIP[:100])  # e.g. a truncated body an older version cached
    assert fetch(s.url, tmp_path, "t", retries=0).read_bytes() == GOOD_ZIP
    assert cached.with_name(cached.name + ".corrupt").read_bytes() == GOOD_ZIP[:100]  # kept, not deleted


def test_collect_stage_exits_2_on_a_corrupt_download(serve, tmp_path):
    s = serve("ok")
    s.body = GOOD_ZIP[: len(GOOD_ZIP) // 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "languages": {"source": "en", "targets": ["de"], "heldout": []}, "adapt": {"enabled": False},
        "collect": {"sources": [{"type": "url", "name": "opus", "url": s.url, "retries": 0}]},
    }))
    res = subprocess.run([sys.executable, "-m", "tasks.collect", "--params", str(tmp_path / "params.yaml"),
                          "--root", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and last.startswith("babelflow collect: error: " + s.url), res.stderr[-2000:]
    assert not (tmp_path / "data" / "raw").exists()


def test_extracting_a_corrupt_member_is_an_input_error(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_corrupt(GOOD_ZIP))
    with pytest.raises(InputError, match=r"a\.zip: .*corrupt"):
        safe_extract_zip(archive, tmp_path / "out", max_bytes=10**6)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()
