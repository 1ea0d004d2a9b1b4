"""Network sources: resumable, checksummed, cached downloads and safe archive extraction."""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from babelflow.errors import InputError, IntegrityError, SourceUnavailableError
from babelflow.io import sha256_file


def _offline_hint(name: str, url: str, why: object) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"source {name!r}: cannot download {url}: {why}. Offline? Download it elsewhere and point an "
        f"`aligned` source at the local copy (or place the file in the cache folder).")


def cache_path(cache_dir: Path, url: str) -> Path:
    base = os.path.basename(url.split("?", 1)[0]) or "download"
    return Path(cache_dir) / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{base}"


def fetch(url: str, cache_dir: str | Path, name: str, sha256: str | None = None, retries: int = 4,
          timeout_s: float = 60.0, max_bytes: int = 2_000_000_000, backoff_s: float = 1.0) -> Path:
    """The cached file for `url`, downloading (or resuming) it only when it is not complete yet."""
    final = cache_path(Path(cache_dir), url)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_file():
        if sha256 is None or sha256_file(final) == sha256:
            return final
        final.unlink()  # a stale cache entry for a changed checksum: fetch again
    part = final.with_name(final.name + ".part")
    last: object = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "babelflow"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                # A server that ignores Range sends the whole file (200): start over.
                mode = "ab" if have and resp.status == 206 else "wb"
                size = have if mode == "ab" else 0
                with open(part, mode) as fh:
                    while block := resp.read(1 << 16):
                        size += len(block)
                        if size > max_bytes:
                            part.unlink()
                            raise InputError(url, f"download exceeds max_bytes={max_bytes}")
                        fh.write(block)
                length = resp.headers.get("Content-Length")
                if length is not None and size - (have if mode == "ab" else 0) < int(length):
                    last = "connection closed before the end of the file"
                    continue
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to fetch: the part file is complete
                break
            if 400 <= exc.code < 500 and exc.code != 429:
                raise _offline_hint(name, url, f"HTTP {exc.code}") from None
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last = getattr(exc, "reason", exc)
    else:
        raise _offline_hint(name, url, f"{last} (after {retries + 1} attempts)")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise IntegrityError(f"source {name!r}: {url} has sha256 {got}, expected {sha256}")
    os.replace(part, final)
    return final


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
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(dest / info.filename)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return sorted(out)


def collect_url(cfg, src_lang: str, langs: list[str], on_error: str, cache_dir: Path):
    from babelflow.corpus import aligned

    path = fetch(cfg.url, cache_dir, cfg.name, cfg.sha256, cfg.retries, cfg.timeout_s, cfg.max_bytes)
    pairs, records = [], []
    if cfg.format == "opus-moses-zip":
        files = safe_extract_zip(path, path.with_name(path.name + ".d"), cfg.max_bytes)
        by_name = {f.name: f for f in files}
        src_files = [f for f in files if f.suffix == f".{src_lang}"]
        for sf in src_files:
            for lang in langs:
                tf = by_name.get(sf.name[: -len(src_lang)] + lang)
                if tf is not None:
                    ps, rec = aligned.read_moses(sf, tf, lang, None, on_error, cfg.name, cfg.licence)
                    pairs += ps
                    records.append(rec)
        if not records:
            raise InputError(path, f"archive has no <stem>.{src_lang} + <stem>.<lang> files for {langs}")
    elif cfg.format == "tmx":
        pairs, records = aligned.read_tmx(path, src_lang, langs, None, on_error, cfg.name, cfg.licence)
    elif cfg.format in ("tsv", "tatoeba"):
        lang = cfg.members.get("lang") or (langs[0] if len(langs) == 1 else None)
        pairs, records = aligned.read_tsv(path, src_lang, langs, lang, cfg.format == "tatoeba", None,
                                          on_error, cfg.name, cfg.licence)
    else:
        raise InputError(cfg.url, "a single URL cannot hold both Moses sides; use opus-moses-zip or tsv")
    for rec in records:
        rec.extra["url"] = cfg.url
    return pairs, records


def collect_sacrebleu(cfg, src_lang: str, langs: list[str], on_error: str):
    """A named test set via sacrebleu's API; sacrebleu fetches into its own cache (~/.sacrebleu)."""
    from babelflow.corpus import aligned

    try:
        from sacrebleu.dataset import DATASETS
        from sacrebleu.utils import get_reference_files, get_source_file
    except ImportError as exc:  # pragma: no cover - sacrebleu is a dependency
        raise SourceUnavailableError(f"source {cfg.name!r}: sacrebleu is not installed ({exc})") from None
    if cfg.test_set not in DATASETS:
        raise InputError(cfg.test_set, "not a sacrebleu test set name")
    pairs, records = [], []
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
        ps, rec = aligned.read_moses(src_file, ref_file, lang, cfg.split, on_error, cfg.name, cfg.licence)
        rec.extra["sacrebleu"] = f"{cfg.test_set}/{lp}"
        pairs += ps
        records.append(rec)
    return pairs, records
