"""Throughput of the collect readers: pairs/second for gettext over this machine's catalogs and for
the aligned reader over the full Multi30k train set (en + de/fr/cs; a 4th target would be read if
present). Run: .venv/bin/python bench/collect.py [--multi30k DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.config import AlignedSource, GettextSource  # noqa: E402
from babelflow.corpus.aligned import collect_aligned  # noqa: E402
from babelflow.corpus.gettext import collect_gettext  # noqa: E402
from bench.timing import best_of  # noqa: E402
LANGS = ["de", "fr", "es", "ru", "sv", "ga"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--multi30k", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")

    cfg = GettextSource(type="gettext", search=["system", "python"])
    secs, (pairs, recs) = best_of(lambda: collect_gettext(cfg, LANGS, "skip"), args.repeats)
    read = sum(r.read for r in recs)
    print(f"gettext: {len(recs)} catalogs, {read} entries read, {len(pairs)} pairs in {secs:.2f}s "
          f"= {len(pairs) / secs:,.0f} pairs/s")

    cfg = AlignedSource(type="aligned", name="multi30k", path=args.multi30k)
    secs, (pairs, recs) = best_of(lambda: collect_aligned(cfg, "en", ["de", "fr", "cs"], "fail"), args.repeats)
    print(f"aligned: Multi30k train, {len(recs)} target files, {len(pairs)} pairs in {secs:.2f}s "
          f"= {len(pairs) / secs:,.0f} pairs/s")


if __name__ == "__main__":
    main()
