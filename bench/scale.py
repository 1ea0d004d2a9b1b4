"""Corpus scale (issue 19): collect -> clean -> tokenize -> encode -> 50 train steps on en-de corpora of
growing size, each stage in its own process, with its wall time and peak RSS.

Each corpus is made of Multi30k train: line i joins two Multi30k pairs (a, b) = the i-th value of a
bijection of [0, 29000^2), so every line is real text and no two lines join the same two pairs; dev and
test are Multi30k's own. It is written as a Moses-style aligned source (train.en/train.de, val.*,
test_2016_flickr.*) and the stages run on it through `bench.pipeline.run_stages`, as the pipeline runs
them, one child process per stage (`python -m bench.scale --child STAGE ...`), so the peak RSS the
parent reads with os.wait4 is that stage's (the largest of its processes, pool workers included).

The train child also records: start-up (this process's exec to the first training step starts), the
step times, the time the training loop waits on the batch iterator (the loader's share; it collates
in a prefetch thread), and then the same model and optimizer on the same 50 batches given as ready
tensors. The model is small (preset multi30k-cpu with d_model 128, 2+2 layers, 1 thread) so that
the data path's cost is not hidden behind a large model.

    nice -n 10 .venv/bin/python -m bench.scale --sizes 30000 300000 3000000 --work /tmp/babelflow-scale
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.pipeline import CORPUS, ROOT, SPLITS, preset_params, run_stages
from tasks._common import Paths

STAGES = ["collect", "clean", "tokenize", "encode", "train", "meta", "adapt"]
CHILDREN = [*STAGES, "ready"]  # ready: the update on ready tensors, its own process so train's RSS is its own
STEPS = 50
N_BASE = 29000  # Multi30k train pairs
OVERRIDES = [
    # fr (Multi30k's own 29k pairs, a second source) is the held-out pair adapt fine-tunes on; meta and
    # adapt run a few steps each, enough for their peak RSS (meta reads the whole de corpus).
    "languages.targets=[de]", "languages.heldout=[fr]", "clean.dedup=true",
    "meta={enabled: true, meta_steps: 10, tasks_per_step: 2, inner_steps: 2, checkpoint_every: 1000}",
    "adapt={enabled: true, k: [1000], steps: 10, seeds: [1], inits: [transfer, meta], eval_sentences: 20}",
    "model.transformer={d_model: 128, ffn_dim: 512, heads: 4, encoder_layers: 2, decoder_layers: 2, dropout: 0.1}",
    f"train.max_steps={STEPS}", "train.warmup_steps=10", "train.checkpoint_every=1000", "train.validate_every=1000",
    "train.dev_bleu_sentences=0", "train.average_last=1", "train.threads=1", "train.max_len=100",
]


# ----------------------------------------------------------------------------------------- corpus
def build_corpus(folder: Path, n: int, source: Path = CORPUS) -> None:
    """`n` lines, line i = Multi30k pairs a and b joined, (a, b) from the bijection i -> (i*P + Q) mod 29000^2."""
    en = (source / "train.en").read_text(encoding="utf-8").splitlines()
    de = (source / "train.de").read_text(encoding="utf-8").splitlines()
    assert len(en) == len(de) == N_BASE
    folder.mkdir(parents=True, exist_ok=True)
    p, q, m = 1_000_003, 12_345, N_BASE * N_BASE  # P is prime and divides neither 2, 5 nor 29: a bijection
    with open(folder / "train.en", "w", encoding="utf-8") as fe, open(folder / "train.de", "w", encoding="utf-8") as fd:
        for start in range(0, n, 100_000):
            js = [(i * p + q) % m for i in range(start, min(n, start + 100_000))]
            fe.write("".join(f"{en[j // N_BASE]} {en[j % N_BASE]}\n" for j in js))
            fd.write("".join(f"{de[j // N_BASE]} {de[j % N_BASE]}\n" for j in js))
    for stem in ("val", "test_2016_flickr"):
        for lang in ("en", "de"):
            shutil.copyfile(source / f"{stem}.{lang}", folder / f"{stem}.{lang}")
    fr = folder.parent / "corpus-fr"  # the held-out pair: Multi30k en-fr as it is
    fr.mkdir(exist_ok=True)
    for stem in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "fr"):
            shutil.copyfile(source / f"{stem}.{lang}", fr / f"{stem}.{lang}")


def _params(corpus: Path):
    both = (f"collect.sources=[{{type: aligned, name: scaled, path: {json.dumps(str(corpus))}, splits: {SPLITS}}}, "
            f"{{type: aligned, name: multi30k-fr, path: {json.dumps(str(corpus.parent / 'corpus-fr'))}, "
            f"splits: {SPLITS}}}]")
    return preset_params("multi30k-cpu", [*OVERRIDES, both], corpus=corpus)


# ------------------------------------------------------------------------------------- the children
def child(stage: str, work: Path) -> None:
    """One stage in this process; the train stage also writes its timings to work/train_timing.json."""
    params = _params(work / "corpus")
    if stage == "ready":
        (work / "ready_timing.json").write_text(json.dumps(ready_steps(params, Paths(work)), indent=1))
        return
    if stage != "train":
        run_stages(params, work, [stage])
        return
    import torch

    import babelflow.train as train_mod
    from babelflow.data import TokenBatcher

    marks: dict[str, float] = {}
    steps: list[float] = []
    waits: list[float] = []
    call, iterate = train_mod.Seq2SeqUpdate.__call__, TokenBatcher.__iter__

    def timed_call(self, step):
        t = time.time()
        marks.setdefault("first_step", t)
        out = call(self, step)
        steps.append(time.time() - t)
        return out

    def timed_iter(self):
        it = iterate(self)
        while True:
            t = time.monotonic()
            batch = next(it, None)
            if batch is None:
                return
            if self.infinite:  # the training stream, not the dev batches of the final validation
                waits.append(time.monotonic() - t)
            yield batch

    train_mod.Seq2SeqUpdate.__call__, TokenBatcher.__iter__ = timed_call, timed_iter
    run_stages(params, work, ["train"])
    startup = marks["first_step"] - float(os.environ["BENCH_T0"])
    out = {"startup_s": round(startup, 2), "step_s": _stats(steps[1:]), "loader_wait_s": _stats(waits[1:]),
           "loader_share": round(sum(waits[1:]) / sum(steps[1:]), 4), "threads": torch.get_num_threads()}
    (work / "train_timing.json").write_text(json.dumps(out, indent=1))


def ready_steps(params, paths) -> dict:
    """The train stage's update on the same batches, collated beforehand: the step without a loader."""
    from babelflow.data import TokenBatcher, load_encoded
    from babelflow.models import build_model
    from babelflow.runtime import seed_all, start
    from babelflow.train import Seq2SeqUpdate

    cfg = params.train
    pairs = {lang: params.languages.pair(lang) for lang in params.languages.targets}
    ex = {lang: load_encoded(paths.encoded, pair, "train", cfg.max_len) for lang, pair in pairs.items()}
    batcher = TokenBatcher(ex, cfg.max_tokens, shuffle=True, seed=params.seed, temperature=cfg.temperature,
                           infinite=True, prefetch=0)
    t = time.monotonic()
    it = iter(batcher)
    batches = [next(it) for _ in range(STEPS)]
    collate_s = (time.monotonic() - t) / STEPS  # the first includes planning the epoch

    class Ready:
        def __iter__(self):
            return iter(batches)

    rt = start("cpu", cfg.threads, bf16=False, bf16_cpu=False, distributed=False)
    seed_all(params.seed)
    vocab = json.loads((paths.encoded / "manifest.json").read_text())["vocab_size"]
    update = Seq2SeqUpdate(build_model(params.model, vocab), rt, Ready(), cfg)
    times = []
    for step in range(1, STEPS + 1):
        t = time.monotonic()
        update(step)
        times.append(time.monotonic() - t)
    return {"ready_step_s": _stats(times[1:]), "loader_per_batch_s": round(collate_s, 4)}


def _stats(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 4), "mean": round(statistics.fmean(xs), 4)} if xs else {}


# ------------------------------------------------------------------------------------------ driver
def run_size(n: int, root: Path, keep: bool, source: Path, only: list[str] | None = None) -> dict:
    """Every stage on a fresh corpus of `n` pairs; `only`: just those, on the project a --keep run left."""
    work = root / str(n)
    result: dict = {"pairs": n, "stages": {}}
    if not only:
        if work.exists():
            shutil.rmtree(work)
        t = time.monotonic()
        build_corpus(work / "corpus", n, source)
        result["build_corpus_s"] = round(time.monotonic() - t, 1)
    for stage in only or CHILDREN:
        env = {**os.environ, "BENCH_T0": repr(time.time()), "PYTHONPATH": str(ROOT)}
        t = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "bench.scale", "--child", stage, "--work", str(work)],
                                cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{stage} at {n} pairs failed with exit code {proc.returncode}")
        result["stages"][stage] = {"wall_s": round(time.monotonic() - t, 1),
                                   "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # KiB on Linux
        print(f"{n} {stage}: {result['stages'][stage]}", flush=True)
    if only:
        keep = True
    result["train"] = {**json.loads((work / "train_timing.json").read_text()),
                       **json.loads((work / "ready_timing.json").read_text())}
    manifest = json.loads((work / "data" / "encoded" / "manifest.json").read_text())
    tokens = sum(r["src_tokens"] + r["tgt_tokens"] for splits in manifest["pairs"].values() for r in splits.values())
    enc_bytes = sum(f.stat().st_size for f in (work / "data" / "encoded").rglob("*.bin")) + sum(
        f.stat().st_size for f in (work / "data" / "encoded").rglob("*.len"))
    clean_train = manifest["pairs"]["en-de"]["train"]
    result["encoded"] = {"tokens": tokens, "bytes": enc_bytes, "bytes_per_token": round(enc_bytes / tokens, 4),
                         "train_pairs": clean_train["sentences"], "len_dtype": clean_train["len_dtype"],
                         "pairs_per_s": round(clean_train["sentences"] / result["stages"]["encode"]["wall_s"])
                         if "encode" in result["stages"] else None}
    result["disk_mb"] = {d: round(sum(f.stat().st_size for f in (work / "data" / d).rglob("*") if f.is_file()) / 2**20, 1)
                         for d in ("raw", "clean", "encoded")}
    print(json.dumps(result), flush=True)
    if not keep:
        shutil.rmtree(work)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[30_000, 300_000, 3_000_000, 10_000_000])
    ap.add_argument("--work", default="/tmp/babelflow-scale")
    ap.add_argument("--corpus", type=Path, default=Path(os.environ["BABELFLOW_SHARED"]) / "corpora" / "multi30k"
                    if os.environ.get("BABELFLOW_SHARED") else CORPUS, help="folder of the Multi30k files")
    ap.add_argument("--json", help="append each size's figures to this JSON-lines file")
    ap.add_argument("--keep", action="store_true", help="keep each size's project folder")
    ap.add_argument("--only", nargs="+", choices=CHILDREN, help="rerun these stages on the project --keep left")
    ap.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.work))
        return
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    for n in args.sizes:
        result = run_size(n, Path(args.work), args.keep, args.corpus, args.only)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps({**result, "load": os.getloadavg()}) + "\n")


if __name__ == "__main__":
    main()
