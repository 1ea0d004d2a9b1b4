"""What collect will read, as one small deterministic record, so DVC can see an input change.

collect's own DVC deps are code and params; its inputs (catalogs anywhere on the machine, corpora
outside the project) are listed here with the same discovery code collect uses, so the record
names exactly the files collect reads. Files are keyed by path, size and sha256, never by mtime:
a touched but unchanged file re-runs nothing. Hashes are remembered by (size, mtime, ctime), so an
unchanged machine re-hashes nothing; ctime, which no tool can set back, catches a file rewritten
with its old size and mtime (a package unpacked with the archive's fixed timestamps).
"""
from __future__ import annotations

import logging
import os
from importlib import metadata
from pathlib import Path

from babelflow.corpus.aligned import aligned_inputs
from babelflow.corpus.download import cache_path
from babelflow.corpus.gettext import catalogs
from babelflow.io import read_json, sha256_file, write_json

log = logging.getLogger("babelflow.inputs")


class HashCache:
    """sha256 of files by absolute path, reused while (size, mtime_ns, ctime_ns) are unchanged."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.old = read_json(self.path)
        except (OSError, ValueError):  # absent or damaged: it is only a cache, hash again
            self.old = {}
        if not isinstance(self.old, dict):
            self.old = {}
        self.new: dict[str, list] = {}
        self.hashed = 0

    def file(self, path: Path) -> dict:
        st = os.stat(path)
        key, stamp = os.path.abspath(path), [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        entry = self.old.get(key)
        if not (isinstance(entry, list) and len(entry) == 4 and entry[:3] == stamp):
            entry = stamp + [sha256_file(path)]
            self.hashed += 1
        self.new[key] = entry
        return {"path": str(path), "size": st.st_size, "sha256": entry[3]}

    def save(self) -> None:
        # Only the files seen this run: the cache never outgrows the inputs.
        if self.new != self.old:
            write_json(self.path, self.new)


def _source(cfg, src_lang: str, langs: list[str], cache_dir: Path, hashes: HashCache) -> dict:
    files: list[Path] = []
    key: dict = {}
    if cfg.type == "gettext":
        files = [path for path, _lang in catalogs(cfg, langs)]
    elif cfg.type == "aligned":
        files = [f for _tag, fs, _lang in aligned_inputs(cfg, src_lang, langs) for f in fs]
    elif cfg.type == "url":
        # A declared checksum is what fetch guarantees; without one, fetch keeps whatever it cached
        # first, so that file's content is the input (none yet: collect will download it).
        sha = cfg.sha256
        cached = cache_path(cache_dir, cfg.url)
        if sha is None and cached.is_file():
            sha = hashes.file(cached)["sha256"]
        key = {"url": cfg.url, "sha256": sha}
    elif cfg.type == "sacrebleu":
        # sacrebleu verifies its own downloads; the set, split and the release that defines them
        # name the text.
        key = {"test_set": cfg.test_set, "split": cfg.split, "sacrebleu": metadata.version("sacrebleu")}
    unique = sorted(set(files), key=str)
    return {"name": cfg.name, "type": cfg.type, **key, "files": [hashes.file(f) for f in unique]}


def input_fingerprint(params, cache_dir: Path) -> dict:
    """{"sources": [per source, in params order: name, type, its key and files]}; hashes are
    remembered in `cache_dir`/inputs-sha256.json."""
    hashes = HashCache(Path(cache_dir) / "inputs-sha256.json")
    langs = params.languages.all_targets
    sources = [_source(cfg, params.languages.source, langs, Path(cache_dir), hashes)
               for cfg in params.collect.sources]
    hashes.save()
    log.info("inputs: %d files, %d hashed (the rest unchanged since the last run)",
             len(hashes.new), hashes.hashed)
    return {"sources": sources}
