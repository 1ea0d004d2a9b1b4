"""The part of the clean stage that runs in worker processes: normalise and filter one chunk.

It imports nothing heavy (no NLTK, no pydantic config): a spawned worker starts in a fraction of a
second, and what it needs that is costly to build (Toktok's compiled rules, the language-id tables)
is built once in the parent and handed over by `init`, once per worker.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

from babelflow import failpoints
from babelflow.clean import filters as F
from babelflow.clean.lang_id import Tables
from babelflow.clean.normalize import normalize
from babelflow.corpus.split import split_key
from babelflow.digests import digest

_NON_WORD = re.compile(r"\W+")


@dataclass(frozen=True)
class NormSettings:
    form: str = "NFC"
    unescape: bool = True
    markup: bool = True
    accelerators: bool = True


def init(toktok: list | None, langid: Tables | None) -> None:
    """Pool initializer: install what the parent built once."""
    F.set_toktok(toktok)
    F.install_langid(langid)


_INSTALLED: list = [None]  # the token of what `init` installed in this process (a Dask worker's)
_INSTALL_LOCK = threading.Lock()


def remote_chunk(token: str, init_args: tuple, job):
    """`process_chunk` on a Dask worker: installs `init_args` (named by `token`) once per process."""
    with _INSTALL_LOCK:
        if _INSTALLED[0] != token:
            init(*init_args)
            _INSTALLED[0] = token
    return process_chunk(job)


def loose(text: str) -> str:
    """The near-duplicate form of a sentence: case and punctuation ignored."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def keys(src: str, tgt: str) -> bytes:
    """24 bytes for the parent's stateful steps: split-key digest of the source (leakage),
    digest of the exact pair (duplicates), digest of the loose pair (near duplicates).
    Computed here so the parent, which runs them in input order on one core, only looks them up."""
    lsrc = loose(src)
    # split_key is loose() after NFKC and after deleting & _ ~: when neither changes anything (most
    # sentences), it is the loose form already computed.
    cf = src.casefold()
    if "&" in cf or "_" in cf or "~" in cf or not unicodedata.is_normalized("NFKC", src):
        skey = split_key(src)
    else:
        skey = lsrc
    return digest(skey) + digest(src, tgt) + digest(lsrc, loose(tgt))


def process_chunk(job: tuple[NormSettings, F.FilterSettings, list[tuple[int, str, str]]]) -> list[tuple]:
    """Normalise and filter a chunk: (line_no, src, tgt, reason, keys) per pair, in input order.

    Kept pairs carry their normalised text and `keys`; a rejected pair is reported as it was read
    (the report's example must show what the filter saw raw) and has no keys. Language id runs last,
    once for the whole chunk, on the pairs every other filter kept.
    """
    norm, fs, rows = job
    kw = dict(form=norm.form, unescape=norm.unescape, markup=norm.markup, accelerators=norm.accelerators)
    out: list = []
    kept: list[int] = []
    for line_no, src, tgt in rows:
        s, t = normalize(src, **kw), normalize(tgt, **kw)
        reason = F.check_line(s, t, fs)
        if reason is None:
            kept.append(len(out))
            out.append((line_no, s, t))
        else:
            out.append((line_no, src, tgt, reason, None))
    rejected = F.langid_rejects([out[i][1:] for i in kept], fs) if fs.langid_langs else [False] * len(kept)
    for i, bad in zip(kept, rejected):
        line_no, s, t = out[i]
        out[i] = (line_no, rows[i][1], rows[i][2], "langid", None) if bad else (line_no, s, t, None, keys(s, t))
    return out


def pool_chunk(job):
    """`process_chunk` as a pool worker runs it: the failpoint lets a test kill a real worker mid-chunk."""
    failpoints.reach("clean_worker")
    return process_chunk(job)
