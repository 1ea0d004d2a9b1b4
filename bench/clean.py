"""Throughput of the clean stage against OpusFilter on the same filter set (Multi30k train x 3 pairs).

    python bench/clean.py [--opusfilter /tmp/opusfilter-venv/bin/opusfilter] [--workers 2] [--repeat 3]

OpusFilter runs as a subprocess from its own venv (`pip install opusfilter==3.3.1 "py3langid<0.3"`),
with `default_n_jobs` = the same worker count. Both sides: whitespace normalisation and markup
stripping, 1..80 words, length ratio 3 (word), longest word 40 chars, numbers agreement, script share
0.5 (Latin), language id (langid, both sides, p >= 0.5, among en + the three targets), source=target
copies, exact duplicates. babelflow also applies its extra filters (placeholders, accelerators,
near-duplicates); OpusFilter counts words by whitespace, babelflow by NLTK Toktok.
Prints a Markdown table. Each run of either tool is a fresh process (OpusFilter's CLI; babelflow's
`clean_corpus` in a new interpreter: no warm imports, model or caches from an earlier run), and its wall
time covers the whole process, start-up and imports included. The tools run alternately `--repeat`
times and the median wall time of each is compared: on a shared machine the load changes from one
minute to the next, and alternating exposes both tools to it alike.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.clean import clean_corpus  # noqa: E402
from babelflow.clean.normalize import MARKUP_RE  # noqa: E402
from babelflow.config import CleanConfig  # noqa: E402

TARGETS = ("de", "fr", "cs")
MULTI30K = Path(os.environ.get("BABELFLOW_SHARED", ROOT.parent / "shared")) / "corpora" / "multi30k"


def count(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def opusfilter_config(work: Path, tgt: str, workers: int, langid: bool = True) -> str:
    import yaml

    langs = ["en", *TARGETS]
    steps = [
        {"type": "preprocess", "parameters": {
            "inputs": [str(MULTI30K / "train.en"), str(MULTI30K / f"train.{tgt}")],
            "outputs": [f"pre.{tgt}.en", f"pre.{tgt}.{tgt}"],
            "preprocessors": [{"WhitespaceNormalizer": {}},
                              {"RegExpSub": {"patterns": [[MARKUP_RE.pattern, " ", 0, ["I"]]]}},
                              {"WhitespaceNormalizer": {}}]}},
        {"type": "filter", "parameters": {
            "inputs": [f"pre.{tgt}.en", f"pre.{tgt}.{tgt}"],
            "outputs": [f"filt.{tgt}.en", f"filt.{tgt}.{tgt}"],
            "filters": [
                {"LengthFilter": {"unit": "word", "min_length": 1, "max_length": 80}},
                {"SimilarityFilter": {"threshold": 1.0, "lowercase": True}},
                {"LengthRatioFilter": {"unit": "word", "threshold": 3}},
                {"LongWordFilter": {"threshold": 40}},
                {"NonZeroNumeralsFilter": {"threshold": 1.0}},
                {"CharacterScoreFilter": {"scripts": ["Latin", "Latin"], "thresholds": [0.5, 0.5]}},
                {"LanguageIDFilter": {"id_method": "langid", "languages": ["en", tgt],
                                      "thresholds": [0.5, 0.5], "langid_languages": langs}},
            ][: None if langid else -1]}},
        {"type": "remove_duplicates", "parameters": {
            "inputs": [f"filt.{tgt}.en", f"filt.{tgt}.{tgt}"],
            "outputs": [f"out.{tgt}.en", f"out.{tgt}.{tgt}"]}},
    ]
    cfg = {"common": {"output_directory": str(work), "default_n_jobs": workers}, "steps": steps}
    path = work / f"opusfilter.{tgt}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def run_opusfilter(exe: str, work: Path, workers: int, langid: bool) -> tuple[float, dict]:
    configs = [opusfilter_config(work, tgt, workers, langid) for tgt in TARGETS]
    t0 = time.perf_counter()
    for cfg in configs:
        subprocess.run([exe, "--overwrite", cfg], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return wall, {f"en-{t}": count(work / f"out.{t}.{t}") for t in TARGETS}


def run_babelflow(work: Path, workers: int, langid: bool) -> tuple[float, dict]:
    raw = work / "raw"
    for tgt in TARGETS:
        d = raw / f"en-{tgt}"
        d.mkdir(parents=True)
        shutil.copy(MULTI30K / "train.en", d / "train.src")
        shutil.copy(MULTI30K / f"train.{tgt}", d / "train.tgt")
        for split in ("dev", "test"):  # train only, like the OpusFilter run
            (d / f"{split}.src").write_text("")
            (d / f"{split}.tgt").write_text("")
    out = work / "clean"
    out.mkdir()
    cfg = CleanConfig(max_tokens=80, max_token_chars=40, max_length_ratio=3.0, ratio_min_tokens=1,
                      script_min_share=0.5, langid=langid, langid_min_prob=0.5, langid_min_chars=0,
                      langid_source=True,
                      workers=workers)
    t0 = time.perf_counter()
    report = clean_corpus(raw, out, cfg, "en", list(TARGETS))
    wall = time.perf_counter() - t0
    return wall, {p: r["train"]["out"] for p, r in report["pairs"].items()}


def run_babelflow_fresh(work: Path, workers: int, langid: bool) -> tuple[float, dict]:
    """run_babelflow in a new interpreter; wall time of the whole process (copying the input excluded)."""
    cmd = [sys.executable, __file__, "--_child", str(work), "--workers", str(workers)]
    if not langid:
        cmd.append("--no-langid")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    child = json.loads(out.strip().splitlines()[-1])
    return wall - child["setup_s"], child["kept"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--opusfilter", default="/tmp/opusfilter-venv/bin/opusfilter")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-langid", action="store_true", help="drop language id from both filter sets")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each tool (median compared)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    langid = not args.no_langid
    if args._child:
        t0 = time.perf_counter()
        _, kept = run_babelflow(Path(args._child), args.workers, langid)
        print(json.dumps({"kept": kept, "setup_s": time.perf_counter() - t0 - _}))
        return
    lines = sum(count(MULTI30K / "train.en") for _ in TARGETS)
    walls: dict[str, list[float]] = {}
    kepts: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            bw, kepts["babelflow"] = run_babelflow_fresh(Path(tmp) / f"bf{r}", args.workers, langid)
            walls.setdefault("babelflow", []).append(bw)
            if Path(args.opusfilter).exists():
                (Path(tmp) / f"of{r}").mkdir()
                ow, kepts["OpusFilter 3.3.1"] = run_opusfilter(args.opusfilter, Path(tmp) / f"of{r}", args.workers, langid)
                walls.setdefault("OpusFilter 3.3.1", []).append(ow)
    print(f"{lines} input pairs (Multi30k train x {len(TARGETS)}), workers={args.workers}, langid={langid}, "
          f"{args.repeat} alternating runs each (median)\n")
    print("| tool | wall s (median) | lines/s | runs s | " + " | ".join(f"kept en-{t}" for t in TARGETS)
          + " | kept total |")
    print("|---|---|---|---|" + "---|" * (len(TARGETS) + 1))
    med = {name: statistics.median(w) for name, w in walls.items()}
    for name, w in walls.items():
        kept = kepts[name]
        print(f"| {name} | {med[name]:.1f} | {lines / med[name]:.0f} | {', '.join(f'{x:.1f}' for x in w)} | "
              + " | ".join(str(kept[f"en-{t}"]) for t in TARGETS) + f" | {sum(kept.values())} |")
    if len(med) == 2:
        print(f"\nthroughput ratio babelflow / OpusFilter (medians): {med['OpusFilter 3.3.1'] / med['babelflow']:.2f}x")


if __name__ == "__main__":
    main()
