"""Network sources: resumable, checksummed, cached downloads and safe archive extraction."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from babelflow.errors import InputError, IntegrityError, SourceUnavailableError
from babelflow.io import read_json, sha256_file, write_json

log = logging.getLogger("babelflow.collect")


def _offline_hint(name: str, url: str, why: object) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"source {name!r}: cannot download {url}: {why}. Offline? Download it elsewhere and point an "
        f"`aligned` source at the local copy (or place the file in the cache folder).")


def cache_path(cache_dir: Path, url: str) -> Path:
    base = os.path.basename(url.split("?", 1)[0]) or "download"
    return Path(cache_dir) / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{base}"


_STALL_S = 60.0  # one read that waits longer fails the attempt (a retry resumes), within timeout_s


class _Incomplete(Exception):
    """This attempt did not bring the whole file; the next one may (or resumes it)."""


class _Watchdog:
    """Shuts this fetch's connections down at `deadline`. A socket timeout bounds one read only: a
    server that sends a byte a second, in its headers or its body, would never trip it."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.guards: list[tuple[threading.Timer, socket.socket]] = []
        dog = self

        class Watched:
            def do_open(self, http_class, req, **kw):
                return super().do_open(dog.connection(http_class), req, **kw)

        self.opener = urllib.request.build_opener(type("H", (Watched, urllib.request.HTTPHandler), {})(),
                                                  type("S", (Watched, urllib.request.HTTPSHandler), {})())

    def connection(self, base):
        dog = self

        class Conn(base):
            def connect(self):
                super().connect()
                # A duplicate descriptor: shutting it down ends this connection, and it cannot have
                # been reused for another file by the time the timer fires.
                dup = socket.fromfd(self.sock.fileno(), self.sock.family, self.sock.type)
                timer = threading.Timer(max(0.0, dog.deadline - time.monotonic()), _shutdown, (dup,))
                timer.daemon = True
                dog.guards.append((timer, dup))
                timer.start()

        return Conn

    def close(self) -> None:
        for timer, dup in self.guards:
            timer.cancel()
            timer.join()  # a shutdown under way finishes before its descriptor is closed
            dup.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _validator(headers) -> str | None:
    """What If-Range can compare (RFC 9110 13.1.5): a strong ETag, else Last-Modified."""
    etag = headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")


def _get(url: str, part: Path, meta: Path, watchdog: _Watchdog, max_bytes: int) -> bool:
    """One request into `part`, resuming it when it may be; True when the response's framing
    (Content-Length or chunked) proves every byte arrived. Raises _Incomplete to retry."""
    have = part.stat().st_size if part.exists() else 0
    try:
        started_with = read_json(meta)["validator"] if have else None
    except (OSError, ValueError, KeyError, TypeError):
        started_with = None
    req = urllib.request.Request(url, headers={"User-Agent": "babelflow"})
    if started_with:
        # If-Range: the server sends the rest only if the file is still the version the .part began
        # with, else the whole new file (200). Without a validator nothing proves that: start over.
        req.add_header("Range", f"bytes={have}-")
        req.add_header("If-Range", started_with)
    try:
        resp = watchdog.opener.open(req, timeout=max(0.01, min(_STALL_S, watchdog.deadline - time.monotonic())))
    except urllib.error.HTTPError as exc:
        total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
        if exc.code == 416 and started_with and total == str(have):
            return True  # nothing left to fetch: the .part is the whole (same) file
        raise
    with resp:
        resumed = (resp.status == 206 and bool(started_with) and _validator(resp.headers) == started_with
                   and (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-"))
        if resp.status == 206 and not resumed:  # a server that ignores If-Range, or another range
            _discard(part, meta)
            raise _Incomplete("the server answered the resume with another version or range; starting over")
        if not resumed:
            have = 0
            part.unlink(missing_ok=True)  # first: a crash must not pair the old bytes with the new validator
            write_json(meta, {"validator": _validator(resp.headers)})
        size, received = have, 0
        with open(part, "ab" if resumed else "wb") as fh:
            while block := resp.read1(1 << 16):
                size += len(block)
                received += len(block)
                if size > max_bytes:
                    _discard(part, meta)
                    raise InputError(url, f"download exceeds max_bytes={max_bytes}")
                fh.write(block)
        if time.monotonic() >= watchdog.deadline:
            raise _Incomplete("cut at the deadline")
        length = resp.headers.get("Content-Length")
        if length is not None and received < int(length):
            raise _Incomplete("connection closed before the end of the file")
        return length is not None or "chunked" in (resp.headers.get("Transfer-Encoding") or "").lower()


def check_archive(path: Path, max_bytes: int) -> bool:
    """True for a zip or gzip file that opens and decompresses whole (its CRCs and sizes prove it
    complete), False for any other file; InputError for a corrupt, truncated or oversize one."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    try:
        if magic[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                n = 0
                while block := gz.read(1 << 20):
                    n += len(block)
                    if n > max_bytes:
                        raise InputError(path, f"uncompressed size exceeds max_bytes={max_bytes}")
            return True
        if magic in (b"PK\x03\x04", b"PK\x05\x06"):
            with zipfile.ZipFile(path) as zf:
                if sum(i.file_size for i in zf.infolist()) > max_bytes:
                    raise InputError(path, f"uncompressed size exceeds max_bytes={max_bytes}")
                bad = zf.testzip()
            if bad is not None:
                raise InputError(path, f"corrupt zip member {bad!r} (CRC mismatch)")
            return True
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError) as exc:
        raise InputError(path, f"corrupt or truncated archive: {exc}") from None
    return False


def fetch(url: str, cache_dir: str | Path, name: str, sha256: str | None = None, retries: int = 4,
          timeout_s: float = 3600.0, max_bytes: int = 2_000_000_000, backoff_s: float = 1.0) -> Path:
    """The cached file for `url`, downloading (or resuming) it only when it is not complete yet.

    Only a file proved complete is cached: by `sha256`, else by the server's framing (Content-Length
    or chunked) or a zip/gzip's own checks; a corrupt archive is an InputError and is not kept.
    `timeout_s` bounds the whole call, retries included.
    """
    final = cache_path(Path(cache_dir), url)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_file():
        if sha256 is not None:
            if sha256_file(final) == sha256:
                return final
            final.unlink()  # a stale cache entry for a changed checksum: fetch again
        else:
            try:
                check_archive(final, max_bytes)
                return final
            except InputError as exc:
                # Cached by an older version, or put there by hand: kept aside, never deleted.
                aside = final.with_name(final.name + ".corrupt")
                os.replace(final, aside)
                log.warning("source %r: %s; moved aside to %s, downloading it again", name, exc, aside.name)
    part = final.with_name(final.name + ".part")
    meta = final.with_name(final.name + ".part.json")  # the validator the .part was started with
    deadline = time.monotonic() + timeout_s
    watchdog = _Watchdog(deadline)
    last: object = None
    framed: bool | None = None  # stays None when the deadline ends the loop
    try:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(max(0.0, min(backoff_s * 2 ** (attempt - 1), deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
            try:
                framed = _get(url, part, meta, watchdog, max_bytes)
                break
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code not in (416, 429):
                    raise _offline_hint(name, url, f"HTTP {exc.code}") from None
                if exc.code == 416:
                    _discard(part, meta)  # the .part is longer than the file now: start over
                last = f"HTTP {exc.code}"
            except _Incomplete as exc:
                last = exc
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                last = getattr(exc, "reason", exc)
        else:
            raise _offline_hint(name, url, f"{last} (after {retries + 1} attempts)")
    finally:
        watchdog.close()
    if framed is None:
        raise _offline_hint(name, url, f"not finished within timeout_s={timeout_s} ({last}); "
                            "a partial file is kept to resume")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            _discard(part, meta)
            raise IntegrityError(f"source {name!r}: {url} has sha256 {got}, expected {sha256}")
    try:
        is_archive = check_archive(part, max_bytes)
    except InputError as exc:
        _discard(part, meta)
        raise InputError(url, f"{exc.reason}; nothing was cached, the next run downloads it again") from None
    if sha256 is None and not framed and not is_archive:
        got, size = sha256_file(part), part.stat().st_size
        _discard(part, meta)
        raise IntegrityError(
            f"source {name!r}: {url}: the server sent no Content-Length (nor chunked framing), so a "
            "connection closed early cannot be told from the end of the file; nothing was cached. "
            f"Declare the source's sha256 once you have checked the file (the {size} bytes received "
            f"hash to {got})")
    os.replace(part, final)
    meta.unlink(missing_ok=True)
    return final


def _discard(part: Path, meta: Path) -> None:
    part.unlink(missing_ok=True)
    meta.unlink(missing_ok=True)


def safe_extract_zip(archive: Path, dest: Path, max_bytes: int) -> list[Path]:
    """Extract into `dest`, refusing absolute paths, `..`, symlinks and oversize content."""
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise InputError(archive, f"not a valid zip archive: {exc}") from None
    with zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            name = info.filename
            if name.startswith(("/", "\\")) or ":" in name.split("/")[0] or ".." in Path(name).parts \
                    or ".." in name.replace("\\", "/").split("/"):
                raise InputError(archive, f"member {name!r} would land outside the target folder")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(archive, f"member {name!r} is a symlink")
            total += info.file_size
            if total > max_bytes:
                raise InputError(archive, f"uncompressed size exceeds max_bytes={max_bytes}")
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        out = []
        for info in infos:
            if info.is_dir():
                continue
            target = tmp / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise InputError(archive, f"member {info.filename!r} is corrupt: {exc}") from None
            out.append(dest / info.filename)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return sorted(out)


def collect_url(cfg, src_lang: str, langs: list[str], on_error: str, cache_dir: Path, out=None):
    from babelflow.corpus import aligned
    from babelflow.corpus.records import PairList

    path = fetch(cfg.url, cache_dir, cfg.name, cfg.sha256, cfg.retries, cfg.timeout_s, cfg.max_bytes)
    pairs, records = PairList() if out is None else out, []
    if cfg.format == "opus-moses-zip":
        files = safe_extract_zip(path, path.with_name(path.name + ".d"), cfg.max_bytes)
        by_name = {f.name: f for f in files}
        src_files = [f for f in files if f.suffix == f".{src_lang}"]
        for sf in src_files:
            for lang in langs:
                tf = by_name.get(sf.name[: -len(src_lang)] + lang)
                if tf is not None:
                    _, rec = aligned.read_moses(sf, tf, lang, None, on_error, cfg.name, cfg.licence, out=pairs)
                    records.append(rec)
        if not records:
            raise InputError(path, f"archive has no <stem>.{src_lang} + <stem>.<lang> files for {langs}")
    elif cfg.format == "tmx":
        _, records = aligned.read_tmx(path, src_lang, langs, None, on_error, cfg.name, cfg.licence, out=pairs)
    elif cfg.format in ("tsv", "tatoeba"):
        lang = cfg.members.get("lang") or (langs[0] if len(langs) == 1 else None)
        _, records = aligned.read_tsv(path, src_lang, langs, lang, cfg.format == "tatoeba", None,
                                      on_error, cfg.name, cfg.licence, out=pairs)
    else:
        raise InputError(cfg.url, "a single URL cannot hold both Moses sides; use opus-moses-zip or tsv")
    for rec in records:
        rec.extra["url"] = cfg.url
    return pairs, records


def collect_sacrebleu(cfg, src_lang: str, langs: list[str], on_error: str, out=None):
    """A named test set via sacrebleu's API; sacrebleu fetches into its own cache (~/.sacrebleu)."""
    from babelflow.corpus import aligned

    try:
        from sacrebleu.dataset import DATASETS
        from sacrebleu.utils import get_reference_files, get_source_file
    except ImportError as exc:  # pragma: no cover - sacrebleu is a dependency
        raise SourceUnavailableError(f"source {cfg.name!r}: sacrebleu is not installed ({exc})") from None
    if cfg.test_set not in DATASETS:
        raise InputError(cfg.test_set, "not a sacrebleu test set name")
    from babelflow.corpus.records import PairList

    pairs, records = PairList() if out is None else out, []
    available = set(DATASETS[cfg.test_set].langpairs)
    for lang in langs:
        lp = f"{src_lang}-{lang}"
        if lp not in available:
            continue
        try:
            src_file = Path(get_source_file(cfg.test_set, lp))
            ref_file = Path(get_reference_files(cfg.test_set, lp)[0])
        except (SystemExit, OSError, Exception) as exc:  # sacrebleu exits the process on download failure
            raise _offline_hint(cfg.name, f"sacrebleu:{cfg.test_set}/{lp}", exc) from None
        _, rec = aligned.read_moses(src_file, ref_file, lang, cfg.split, on_error, cfg.name, cfg.licence, out=pairs)
        rec.extra["sacrebleu"] = f"{cfg.test_set}/{lp}"
        records.append(rec)
    return pairs, records
