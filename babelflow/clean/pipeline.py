"""Streaming clean of aligned corpora: chunked reading, per-pair filters in a process pool
(`worker.process_chunk`, which also hashes what the next steps need), then the stateful steps
(dedup, cross-split leakage) in the parent, in input order.

Memory is bounded by the chunk size times the pool's prefetch plus the dedup digests (`DigestSet`:
8 bytes per kept pair and a bounded buffer, not the ~75 bytes of a Python set entry). Chunks come
back in input order and every filter decides a pair on its own text alone, so the output bytes depend neither on the number of workers nor on the chunk size.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from babelflow.clean import filters as F
from babelflow.clean import worker
from babelflow.clean.lang_id import MODEL as LANGID_MODEL
from babelflow.clean.worker import NormSettings, process_chunk
from babelflow.corpus.split import SPLITS
from babelflow.digests import DigestSet
from babelflow.errors import BabelflowError, InputError
from babelflow.executor import DaskCluster, ordered_map, usable_cpus
from babelflow.io import MAX_LINE_BYTES, chunks
from babelflow.languages import base_language

if TYPE_CHECKING:
    from babelflow.config import CleanConfig

log = logging.getLogger("babelflow.clean")

STATEFUL_FILTERS = ("duplicate", "near_duplicate", "leakage")
INVALID = "invalid_input"

__all__ = ["NormSettings", "process_chunk", "clean_corpus", "filter_order", "settings_for"]


@dataclass
class SplitReport:
    lines_in: int = 0
    lines_out: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict]] = field(default_factory=dict)

    def remove(self, reason: str, example: dict, keep: int) -> None:
        self.removed[reason] = self.removed.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < keep:
            ex.append(example)

    def to_dict(self) -> dict:
        return {"in": self.lines_in, "out": self.lines_out, "removed": dict(sorted(self.removed.items())),
                "examples": {k: v for k, v in sorted(self.examples.items()) if v}}


def filter_order(cfg: CleanConfig) -> list[str]:
    """Names of the active filters, in the order they are applied (a pair counts under the first)."""
    on = {
        "empty": True, "copy": cfg.drop_copies, "placeholders": cfg.placeholder_agreement,
        "min_tokens": cfg.min_tokens > 0, "max_tokens": True, "max_token_chars": True,
        "length_ratio": True, "numbers": cfg.number_agreement, "script": cfg.script_min_share > 0,
        "langid": cfg.langid,
    }
    order = [INVALID] + [f for f in F.LINE_FILTERS if on[f]] + ["leakage"]
    if cfg.dedup:
        order += ["duplicate", "near_duplicate"]
    return order


def langid_candidates(cfg: CleanConfig, run_langs: list[str]) -> tuple[str, ...]:
    """The languages langid chooses among: the run's (and English) that the model knows."""
    if not cfg.langid:
        return ()
    return tuple(sorted({base_language(lang) for lang in [*run_langs, "en"]} & F.langid_supported()))


def settings_for(cfg: CleanConfig, src: str, tgt: str, run_langs: list[str]) -> tuple[F.FilterSettings, list[str]]:
    """Resolve the config for one pair; also return notes on filters skipped for unknown languages."""
    notes: list[str] = []
    src_scripts, tgt_scripts = F.script_for(src), F.script_for(tgt)
    if cfg.script_min_share > 0:
        for lang, scr in ((src, src_scripts), (tgt, tgt_scripts)):
            if scr is None:
                notes.append(f"script: no script known for {lang!r}; not checked on that side")
    langs: tuple[str, ...] = ()
    lsrc = ltgt = False
    if cfg.langid:
        known = F.langid_supported()
        langs = langid_candidates(cfg, run_langs)
        for lang in (src, tgt):
            if base_language(lang) not in known:
                notes.append(f"langid: {lang!r} unknown to the langid model; not checked on that side")
            elif F.in_other_script(lang):
                notes.append(f"langid: {lang!r} is written in another script than the langid model's "
                             f"{base_language(lang)!r}; not checked on that side")
        lsrc, ltgt = (base_language(lang) in known and not F.in_other_script(lang) for lang in (src, tgt))
    s = F.FilterSettings(
        src_lang=base_language(src), tgt_lang=base_language(tgt),
        placeholder_agreement=cfg.placeholder_agreement, min_tokens=cfg.min_tokens,
        max_tokens=cfg.max_tokens, max_token_chars=cfg.max_token_chars,
        max_length_ratio=cfg.max_length_ratio, ratio_min_tokens=cfg.ratio_min_tokens,
        number_agreement=cfg.number_agreement, script_min_share=cfg.script_min_share,
        src_scripts=src_scripts, tgt_scripts=tgt_scripts, langid_langs=langs if (lsrc or ltgt) else (),
        langid_source=cfg.langid_source, langid_src=lsrc, langid_tgt=ltgt, langid_min_prob=cfg.langid_min_prob,
        langid_min_chars=cfg.langid_min_chars, drop_copies=cfg.drop_copies,
    )
    return s, notes


def _read_pairs(src_path: Path, tgt_path: Path, on_error: str, report: SplitReport,
                keep: int) -> Iterator[tuple[int, str, str]]:
    """Aligned lines as text; bad lines are skipped (counted, with file:line) or raise InputError."""
    with open(src_path, "rb") as fs, open(tgt_path, "rb") as ft:
        line_no = 0
        while True:
            bs, bt = fs.readline(MAX_LINE_BYTES + 1), ft.readline(MAX_LINE_BYTES + 1)
            if not bs and not bt:
                return
            line_no += 1
            if not bs or not bt:
                short = src_path if not bs else tgt_path
                raise InputError(short, "file ends early: source and target line counts differ", line_no)
            report.lines_in += 1
            problem = None
            texts = []
            for path, raw, fh in ((src_path, bs, fs), (tgt_path, bt, ft)):
                if len(raw) > MAX_LINE_BYTES:
                    # Drain the rest of the long line so the next read starts on the next line.
                    while raw and not raw.endswith(b"\n"):
                        raw = fh.readline(MAX_LINE_BYTES)
                    problem = problem or (path, f"line longer than {MAX_LINE_BYTES} bytes")
                    texts.append("")
                    continue
                try:
                    texts.append(raw.decode("utf-8").rstrip("\r\n"))
                except UnicodeDecodeError as exc:
                    problem = problem or (path, f"invalid UTF-8 ({exc.reason} at byte {exc.start})")
                    texts.append("")
            if problem is not None:
                if on_error == "fail":
                    raise InputError(problem[0], problem[1], line_no)
                report.remove(INVALID, {"file": str(problem[0]), "line": line_no, "error": problem[1]}, keep)
                continue
            yield line_no, texts[0], texts[1]


class WorkerDied(BabelflowError):
    """A pool worker ended without a result (killed by a signal, e.g. the out-of-memory killer)."""


def _result(job, future, src_path: Path):
    if future is None:
        return process_chunk(job)
    try:
        return future.result()
    except BrokenProcessPool:
        # The executor fails every pending chunk at once: the first one waited on is named.
        first, last = job[2][0][0], job[2][-1][0]
        raise WorkerDied(f"{src_path}: a clean worker process died (killed by a signal, e.g. the "
                         f"out-of-memory killer) while filtering lines {first}-{last} or a later chunk; "
                         "nothing was written. Lower clean.workers or clean.chunk_lines, or free memory, "
                         "and run again") from None


class Cleaner:
    """Cleans every pair of a run; one pool shared by all files. Use as a context manager."""

    def __init__(self, cfg: CleanConfig, run_langs: list[str], address: str | None = None):
        self.cfg = cfg
        self.address = address  # a Dask scheduler: the chunks go there instead of to local processes
        self.cluster = None
        self.run_langs = run_langs
        self.norm = NormSettings(cfg.unicode_form, cfg.unescape_html, cfg.strip_markup, cfg.strip_accelerators)
        self.workers = cfg.workers or usable_cpus()
        self.pool = None

    def __enter__(self) -> "Cleaner":
        # Built once here, installed in this process (workers=1) and handed to each worker once.
        langs = langid_candidates(self.cfg, self.run_langs)
        init_args = (F.toktok_specs(), F.langid_tables(langs) if langs else None)
        worker.init(*init_args)
        if self.address:
            self.cluster = DaskCluster(self.address)
            self.remote_args = (uuid.uuid4().hex, self.cluster.share(init_args))
        elif self.workers > 1:
            # workers - 1 processes: this one filters every `workers`-th chunk itself (see _map).
            # spawn: no inherited locks or file handles from the parent (e.g. Prefect's threads).
            # An executor, not mp.Pool: a worker that dies (OOM killer) breaks it and fails the
            # pending chunks at once, where Pool replaces the worker and waits for its result forever.
            self.pool = ProcessPoolExecutor(self.workers - 1, mp_context=mp.get_context("spawn"),
                                            initializer=worker.init, initargs=init_args)
        return self

    def __exit__(self, *exc) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)  # at most the chunks in flight
            self.pool = None

    def _map(self, jobs: Iterator, src_path: Path):
        """Results in input order. Not `Pool.imap`: its feeder thread drains the whole input
        iterator at once, which would read a 10M-line file into memory; here at most
        2 x workers chunks are in flight.

        Every `workers`-th chunk is filtered in this process, when its turn comes: the parent would
        otherwise sit waiting for results, and one process fewer has to start (on a loaded 2-core
        machine, 2 pool workers + a waiting parent used 50% more CPU than one process alone)."""
        if self.cluster is not None:
            yield from ordered_map(self.cluster.submit, worker.remote_chunk,
                                   ((*self.remote_args, job) for job in jobs), self.cluster.window)
            return
        if self.pool is None:
            yield from map(process_chunk, jobs)
            return
        pending: deque = deque()
        for j, job in enumerate(jobs):
            pending.append((job, None if j % self.workers == 0 else self.pool.submit(worker.pool_chunk, job)))
            if len(pending) >= 2 * self.workers:
                yield _result(*pending.popleft(), src_path)
        while pending:
            yield _result(*pending.popleft(), src_path)

    def clean_split(self, src_path: Path, tgt_path: Path, out_src: Path, out_tgt: Path,
                    fs: F.FilterSettings, held_out_keys: set[bytes] | None,
                    collect_keys: set[bytes] | None) -> SplitReport:
        """Clean one split. `held_out_keys`: split keys of dev/test sources (train drops them);
        `collect_keys`: where to add the split keys of kept sources (dev/test)."""
        cfg = self.cfg
        keep = cfg.examples_per_filter
        report = SplitReport(removed={f: 0 for f in self._order()})
        seen_exact, seen_loose = DigestSet(), DigestSet()
        rows = _read_pairs(src_path, tgt_path, cfg.on_error, report, keep)
        jobs = ((self.norm, fs, chunk) for chunk in chunks(rows, cfg.chunk_lines))
        with open(out_src, "w", encoding="utf-8", newline="\n") as os_, \
                open(out_tgt, "w", encoding="utf-8", newline="\n") as ot:
            for result in self._map(jobs, src_path):
                out_s: list[str] = []
                out_t: list[str] = []
                if cfg.dedup:
                    keys = [k for *_, reason, k in result if reason is None]
                    seen_exact.prepare([k[8:16] for k in keys])
                    seen_loose.prepare([k[16:] for k in keys])
                for line_no, s, t, reason, k in result:
                    if reason is None:  # k: split-key, exact and loose digests (worker.keys)
                        if held_out_keys is not None and k[:8] in held_out_keys:
                            reason = "leakage"
                        elif cfg.dedup:
                            exact = k[8:16]
                            if exact in seen_exact:
                                reason = "duplicate"
                            else:
                                seen_exact.add(exact)
                                loose = k[16:]
                                if loose in seen_loose:
                                    reason = "near_duplicate"
                                seen_loose.add(loose)
                    if reason is not None:
                        report.remove(reason, {"line": line_no, "src": s, "tgt": t}, keep)
                        continue
                    if collect_keys is not None:
                        collect_keys.add(k[:8])
                    out_s.append(s + "\n")
                    out_t.append(t + "\n")
                os_.writelines(out_s)
                ot.writelines(out_t)
                report.lines_out += len(out_s)
        if report.removed.get(INVALID):  # on_error: skip never skips silently
            first = (report.examples.get(INVALID) or [{"file": src_path, "line": "?", "error": "see report.json"}])[0]
            log.warning("clean: skipped %d invalid line(s) of %s / %s (on_error: skip), first %s:%s: %s",
                        report.removed[INVALID], src_path, tgt_path.name, first["file"], first["line"], first["error"])
        return report

    def _order(self) -> list[str]:
        return filter_order(self.cfg)


def clean_corpus(raw_dir: Path, out_dir: Path, cfg: CleanConfig, source: str, targets: list[str],
                 address: str | None = None) -> dict:
    """Clean `raw_dir/<source>-<tgt>/` for every target into `out_dir` (which must exist).

    dev and test of every pair are cleaned first, so train can drop any pair whose source key is in
    any pair's dev or test: cleaning (markup, accelerators) can merge strings the collector split apart.
    `address`: a Dask scheduler to filter the chunks on (else local processes); the bytes are the same.
    Returns the report (also the content of report.json).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    pairs = [f"{source}-{t}" for t in targets]
    for pair in pairs:
        for split in SPLITS:
            for side in ("src", "tgt"):
                if not (raw_dir / pair / f"{split}.{side}").is_file():
                    raise InputError(raw_dir / pair / f"{split}.{side}", "missing raw corpus file")
    run_langs = [source, *targets]
    report: dict = {"order": filter_order(cfg), "pairs": {}, "notes": {}}
    if cfg.langid:
        report["langid"] = {"model": LANGID_MODEL, "candidates": list(langid_candidates(cfg, run_langs))}
    held_out: set[bytes] = set()
    with Cleaner(cfg, run_langs, address) as cleaner:
        settings = {}
        for pair, tgt in zip(pairs, targets):
            settings[pair], notes = settings_for(cfg, source, tgt, run_langs)
            if notes:
                report["notes"][pair] = notes
            (out_dir / pair).mkdir(parents=True, exist_ok=True)
            report["pairs"][pair] = {}
        for split in ("dev", "test", "train"):
            for pair in pairs:
                src_dir, dst = raw_dir / pair, out_dir / pair
                rep = cleaner.clean_split(
                    src_dir / f"{split}.src", src_dir / f"{split}.tgt", dst / f"{split}.src", dst / f"{split}.tgt",
                    settings[pair], held_out if split == "train" else None,
                    held_out if split != "train" else None)
                report["pairs"][pair][split] = rep.to_dict()
                log.info("clean %s %s: %d -> %d", pair, split, rep.lines_in, rep.lines_out)
    report["pairs"] = {p: {s: report["pairs"][p][s] for s in SPLITS} for p in pairs}
    report["totals"] = totals(report)
    return report


def totals(report: dict) -> dict:
    tot = {"in": 0, "out": 0, "removed": {}}
    for splits in report["pairs"].values():
        for rep in splits.values():
            tot["in"] += rep["in"]
            tot["out"] += rep["out"]
            for k, v in rep["removed"].items():
                tot["removed"][k] = tot["removed"].get(k, 0) + v
    return tot
