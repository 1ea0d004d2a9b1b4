"""One entry point over every source type: params in, assembled splits and provenance out."""
from __future__ import annotations

import logging
from pathlib import Path

from babelflow.corpus.aligned import collect_aligned
from babelflow.corpus.assemble import assemble, count_check
from babelflow.corpus.download import collect_sacrebleu, collect_url
from babelflow.corpus.gettext import collect_gettext
from babelflow.corpus.records import skipped
from babelflow.errors import InputError

log = logging.getLogger("babelflow.collect")


def read_source(cfg, src_lang: str, langs: list[str], on_error: str, cache_dir: Path):
    if cfg.type == "gettext":
        return collect_gettext(cfg, langs, on_error)
    if cfg.type == "aligned":
        return collect_aligned(cfg, src_lang, langs, on_error)
    if cfg.type == "url":
        return collect_url(cfg, src_lang, langs, on_error, cache_dir)
    if cfg.type == "sacrebleu":
        return collect_sacrebleu(cfg, src_lang, langs, on_error)
    raise ValueError(f"unknown source type {cfg.type!r}")  # config validation makes this unreachable


def collect(params, cache_dir: Path):
    """(splits per language, input records). Raises InputError when a language gets no pairs."""
    langs = params.languages.all_targets
    src_lang = params.languages.source
    cc = params.collect
    pairs, records = [], []
    for cfg in cc.sources:
        ps, recs = read_source(cfg, src_lang, langs, cc.on_error, Path(cache_dir))
        pairs += ps
        records += recs
    for s in skipped(records):  # on_error: skip never skips silently
        if s["whole"]:
            log.warning("collect: skipped %s (%s; %d line(s) read before the error): %s", s["path"], s["lang"],
                        s["lines"], s["reason"])
        else:
            log.warning("collect: skipped %d line(s) of %s (%s): %s", s["lines"], s["path"], s["lang"], s["reason"])
    out = assemble(pairs, langs, cc.split.dev, cc.split.test, cc.split.salt, cc.max_pairs)
    count_check(records)
    empty = [lang for lang in langs if not any(out[lang].values())]
    if empty:
        names = ", ".join(f"{c.name} ({c.type})" for c in cc.sources)
        raise InputError("params.yaml", f"no pairs for language(s) {empty} from sources: {names}; "
                         "add a source that has them or remove them from languages")
    return out, records
