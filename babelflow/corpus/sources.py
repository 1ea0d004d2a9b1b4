"""One entry point over every source type: params in, assembled splits (streamed) and provenance out."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from babelflow.corpus.aligned import collect_aligned
from babelflow.corpus.assemble import PairSink, count_check
from babelflow.corpus.download import collect_sacrebleu, collect_url
from babelflow.corpus.gettext import collect_gettext
from babelflow.corpus.records import skipped
from babelflow.errors import InputError

log = logging.getLogger("babelflow.collect")


def read_source(cfg, src_lang: str, langs: list[str], on_error: str, cache_dir: Path, out: PairSink):
    """The source's provenance records; its pairs go to `out`."""
    if cfg.type == "gettext":
        return collect_gettext(cfg, langs, on_error, out)[1]
    if cfg.type == "aligned":
        return collect_aligned(cfg, src_lang, langs, on_error, out)[1]
    if cfg.type == "url":
        return collect_url(cfg, src_lang, langs, on_error, cache_dir, out)[1]
    if cfg.type == "sacrebleu":
        return collect_sacrebleu(cfg, src_lang, langs, on_error, out)[1]
    raise ValueError(f"unknown source type {cfg.type!r}")  # config validation makes this unreachable


@contextmanager
def collected(params, cache_dir: Path, spill_parent: Path | None = None):
    """Yields (splits, records): per language {"train", "dev", "test"} -> pairs in output order,
    streamed (train is merged from sorted runs spilled under `spill_parent`, removed on exit), and
    the input records, whose counts are complete once every split has been read; then call `check`."""
    langs = params.languages.all_targets
    cc = params.collect
    with PairSink(langs, cc.split.dev, cc.split.test, cc.split.salt, spill_parent) as sink:
        records = []
        for cfg in cc.sources:
            records += read_source(cfg, params.languages.source, langs, cc.on_error, Path(cache_dir), sink)
        for s in skipped(records):  # on_error: skip never skips silently
            if s["whole"]:
                log.warning("collect: skipped %s (%s; %d line(s) read before the error): %s", s["path"], s["lang"],
                            s["lines"], s["reason"])
            else:
                log.warning("collect: skipped %d line(s) of %s (%s): %s", s["lines"], s["path"], s["lang"],
                            s["reason"])
        yield sink.finish(cc.max_pairs), records


def check(params, counts: dict[str, int], records) -> None:
    """After the splits were read: every line is accounted for, and every language got pairs
    (InputError otherwise, before anything is published)."""
    count_check(records)
    empty = [lang for lang in params.languages.all_targets if not counts.get(lang)]
    if empty:
        names = ", ".join(f"{c.name} ({c.type})" for c in params.collect.sources)
        raise InputError("params.yaml", f"no pairs for language(s) {empty} from sources: {names}; "
                         "add a source that has them or remove them from languages")
