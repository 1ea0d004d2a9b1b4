"""The prepared device check of issue 18: on one NVIDIA GPU with no network, in under 9 minutes, measure
what the project claims for GPUs and write every figure to one folder.

    bash bench/gpu_check.sh [--budget-s 500]                      # on the device machine (see that file)
    python bench/gpu_check.py --data DIR [--out DIR] [--parts ...]
    python bench/gpu_check.py --dry-run --out /tmp/gpu_check      # rehearsal: tiny sizes, CPU, < 1 min

Parts, in this order, each in a process of its own under its own time limit, so that a hang, a crash or
a broken CUDA context in one is recorded and the next still runs:
  env          GPU, driver, torch and CUDA versions, and the bf16 matmul rate measured there (a ceiling
               closer to reach than the datasheet's)
  cuda_tests   `pytest -m cuda tests`: pass / skip / fail counts (cuda_tests.xml)
  train_speed  bench/train_speed.py --device cuda at the base size (6+6 layers, d=512, ffn 2048, 8 heads,
               8192-token batches): target tokens/s and bf16 MFU, babelflow vs JoeyNMT on the same
               batches (JoeyNMT when its wheels were carried, else recorded as not available)
  multi30k     bench/multi30k.py's `gpu` preset, en->de, through the pipeline's stages (bench/pipeline.py):
               500 steps are trained and timed, then train resumes to as many of the preset's steps as
               the minutes left allow; its selection on val (train.average_last), evaluate's test BLEU
  decode       sentences/s of greedy and beam-4 decoding of test_2016_flickr with that model, fp32 and
               bf16 autocast, with each output's BLEU

--data is a folder with Multi30k's {train,val,test_2016_flickr}.{en,de}: ../shared does not reach the
device, so copy them into a git-ignored folder of the repository and carry it. Without --data,
train_speed and decode run on synthetic text (recorded) and multi30k is skipped with the reason.
--dry-run runs every part at a tiny size on whatever device is there, on synthetic text unless --data
is given: the rehearsal that keeps a typo from costing a lease (tests/backbone/test_backbone_gpu_check.py).

Files in --out (the device brings back at most 8): summary.json (every figure; the GPU, torch, date;
each part's status: ok, skipped, failed, error or timeout, with the reason), log.txt (each part's
output), cuda_tests.xml, learning_curve.csv and test.de.hyp (multi30k). summary.json is rewritten
after every part, so a run stopped from outside keeps what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow import failpoints  # noqa: E402
from babelflow.io import write_json  # noqa: E402  (none of these needs a third-party package)
from bench.machine import git_commit  # noqa: E402
from bench.timing import best_of  # noqa: E402

# NVIDIA's H100 SXM and H200 datasheets: bf16 Tensor Core 1,979 TFLOP/s "with sparsity"; dense is half.
H100_H200_BF16_DENSE_PEAK_TFLOPS = 989.5
# Issue 18's goals for the base size on an H100/H200.
GOAL_MFU = 0.40
GOAL_VS_JOEYNMT = 1.2

PARTS = ("env", "cuda_tests", "train_speed", "multi30k", "decode")
# Most seconds each part may take (None: whatever is left), and the least worth starting it with:
# a part's budget is what is left minus the least of the parts after it.
CAP_S = {"env": 45, "cuda_tests": 120, "train_speed": 100, "multi30k": None, "decode": 60}
MIN_S = {"env": 10, "cuda_tests": 30, "train_speed": 40, "multi30k": 90, "decode": 45}
GRACE_S = 10  # past its budget (which the part itself watches), its process group is killed
CORPUS_FILES = [f"{split}.{lang}" for split in ("train", "val", "test_2016_flickr") for lang in ("en", "de")]

# train_speed sizes: the base Transformer, and a tiny one for the rehearsal.
BASE = {"layers": 6, "d_model": 512, "max_tokens": 8192, "vocab": 8000, "sentences": 10000, "steps": 30, "warmup": 5}
TINY = {"layers": 1, "d_model": 64, "max_tokens": 256, "vocab": 400, "sentences": 300, "steps": 2, "warmup": 1}


# ------------------------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    ap.add_argument("--data", help="folder with Multi30k's " + ", ".join(CORPUS_FILES))
    ap.add_argument("--budget-s", type=float, default=500, help="the whole check, all parts (default 500)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak for MFU (default: by GPU name)")
    ap.add_argument("--dry-run", action="store_true", help="every part at a tiny size, on CPU if no GPU")
    ap.add_argument("--label", help="kept in summary.json, e.g. the commit (the device's copy has no .git)")
    ap.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # runs one part (the child process)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.parts = [p for p in PARTS if p in args.parts]  # always in the order above: each feeds the next
    if args.part:
        return child_main(args.part, Path(args.ctx), args.budget_s)
    missing = [f for f in CORPUS_FILES if args.data and not (Path(args.data) / f).is_file()]
    if missing or args.budget_s <= 0:
        why = f"{args.data}: no {', '.join(missing)} (a Multi30k copy has {' '.join(CORPUS_FILES)})" if missing \
            else f"--budget-s must be positive, got {args.budget_s}"
        print(f"gpu_check: {why}", file=sys.stderr)
        return 2

    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))  # ours alone: removed at the end
    try:
        return drive(args, out, work, t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def drive(args, out: Path, work: Path, t0: float) -> int:
    summary: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "gpu": None, "torch": _installed_version("torch"), "dry_run": args.dry_run,
                     "commit": git_commit(ROOT), "label": args.label, "budget_s": args.budget_s, "command": sys.argv}
    data, synthetic = args.data and Path(args.data), False
    if data:
        summary["data"] = f"Multi30k from {data}"
    else:
        data, synthetic = work / "synthetic", True
        synthetic_corpus(data, *((300, 8, 8) if args.dry_run else (12000, 1000, 20)))
        summary["data"] = "synthetic text (no --data)"
    log = out / "log.txt"
    log.write_text(f"bench/gpu_check.py {summary['date']}\n", encoding="utf-8")
    ctx = {"out": str(out.resolve()), "work": str(work), "data": str(data.resolve()), "synthetic": synthetic,
           "dry_run": args.dry_run, "peak_tflops": args.peak_tflops, "earlier": {}}
    summary["parts"] = parts = {}
    for i, name in enumerate(args.parts):
        left = args.budget_s - (time.monotonic() - t0)
        budget = min(CAP_S[name] or math.inf, left - sum(MIN_S[p] for p in args.parts[i + 1:]))
        if budget < MIN_S[name] / 3:
            parts[name] = {"status": "skipped", "reason": f"{left:.0f} s left of --budget-s {args.budget_s:.0f}, "
                                                          "too few for it and the parts after it"}
        else:
            ctx_file = work / "ctx.json"
            write_json(ctx_file, ctx)
            parts[name] = run_part(name, budget, ctx_file, work, log)
        ctx["earlier"][name] = parts[name]
        if name == "env" and parts[name].get("status") == "ok":
            summary.update({k: parts[name].get(k) for k in ("gpu", "torch", "cuda", "driver")})
        summary["goals"] = goals(parts, args.dry_run)
        summary["wall_s"] = round(time.monotonic() - t0, 1)
        write_json(out / "summary.json", summary)
    summary["files"] = sorted(p.name for p in out.iterdir())
    write_json(out / "summary.json", summary)
    print(table(summary))
    return 0 if all(p["status"] in ("ok", "skipped") for p in parts.values()) else 1


def run_part(name: str, budget: float, ctx_file: Path, work: Path, log: Path) -> dict:
    """Run one part in its own process group; its figures come back in work/<name>.json."""
    result_file, part_log = work / f"{name}.json", work / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--ctx", str(ctx_file),
           "--budget-s", f"{budget:.0f}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="10",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    print(f"[gpu_check] {name}: up to {budget:.0f} s", flush=True)
    t = time.monotonic()
    with open(part_log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=budget + GRACE_S)
        except subprocess.TimeoutExpired:
            rc = None
        # The part's own workers (train_speed's, pytest) go with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    res = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else {}
    if rc is None:
        res.update(status="timeout", reason=f"killed after {budget + GRACE_S:.0f} s")
    elif res.get("status") in (None, "running"):
        res.update(status="error", reason=_last_line(part_log) or f"exit code {rc}")
    res["seconds"] = round(time.monotonic() - t, 1)
    _append_log(log, f"{name}: {res['status']} in {res['seconds']} s", part_log)
    print(f"[gpu_check] {name}: {res['status']} in {res['seconds']} s"
          + (f" ({res['reason']})" if res.get("reason") else ""), flush=True)
    return res


def goals(parts: dict, dry_run: bool) -> dict:
    """Issue 18's two GPU goals, from the train_speed part: met (True/False), or None with why."""
    ts = parts.get("train_speed", {})
    unknown = ts.get("reason") or ts.get("note") or (f"train_speed: {ts['status']}" if ts else "not run")
    joey_why = ts.get("joeynmt") if isinstance(ts.get("joeynmt"), str) else unknown
    out = {}
    for goal, value, bar, why in ((f"bf16_mfu_base_at_least_{GOAL_MFU}", (ts.get("babelflow") or {}).get("mfu"),
                                   GOAL_MFU, unknown),
                                  (f"tokens_per_s_vs_joeynmt_at_least_{GOAL_VS_JOEYNMT}", ts.get("ratio_vs_joeynmt"),
                                   GOAL_VS_JOEYNMT, joey_why)):
        out[goal] = {"value": value, "met": None, "why": "dry run: tiny sizes, not the base model on a GPU"
                     if dry_run else why} if value is None or dry_run else {"value": value, "met": value >= bar}
    return out


def table(summary: dict) -> str:
    """A few lines for the end of the console output (the device tool returns only its tail)."""
    rows = [f"gpu_check {summary['date']}: {summary['gpu'] or 'no GPU'}, torch {summary['torch']}, "
            f"{summary['data']}, {summary['wall_s']} s"]
    for name, r in summary["parts"].items():
        g = lambda *keys: _dig(r, *keys)  # noqa: E731
        headline = r.get("reason") or {
            "env": f"matmul {g('matmul', 'tflops')} TFLOP/s ({g('matmul', 'dtype')})",
            "cuda_tests": " ".join(f"{k} {v}" for k, v in r.get("counts", {}).items()) or r.get("note", ""),
            "train_speed": f"babelflow {g('babelflow', 'tokens_per_s')} tok/s, MFU {g('babelflow', 'mfu')}, "
                           f"vs JoeyNMT {r.get('ratio_vs_joeynmt')}",
            "multi30k": f"test BLEU {g('test', 'bleu')} after {g('train', 'steps')} steps",
            "decode": ", ".join(f"{k} {v.get('sent_per_s')} sent/s" for k, v in r.get("systems", {}).items()),
        }[name]
        rows.append(f"  {name:12} {r['status']:8} {r.get('seconds', 0):6.1f} s  {headline}")
    return "\n".join(rows + [f"  goal {k}: {v}" for k, v in summary["goals"].items()])


def _dig(d: dict, *keys):
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def synthetic_corpus(folder: Path, n_train: int, n_eval: int, max_words: int = 20, seed: int = 0) -> None:
    """Multi30k's file names and sentence lengths, not its language: Zipf-distributed made-up words, and a
    word-for-word 'German' a model can learn. For timing without the corpus, and for the rehearsal."""
    rng = random.Random(seed)
    lexicon = sorted({"".join(rng.choice("abcdefghijklmnoprstuvwyz") for _ in range(rng.randint(2, 9)))
                      for _ in range(4000)})
    rng.shuffle(lexicon)
    weights = [1 / (rank + 1) for rank in range(len(lexicon))]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_eval), ("test_2016_flickr", n_eval)):
        en = [rng.choices(lexicon, weights, k=rng.randint(max_words // 3, max_words)) for _ in range(n)]
        for lang, lines in (("en", en), ("de", [[w[::-1] + "en" for w in s] for s in en])):
            (folder / f"{split}.{lang}").write_text("".join(" ".join(s) + "\n" for s in lines), encoding="utf-8")


# ------------------------------------------------------------------------------------------- one part
def child_main(part: str, ctx_file: Path, budget_s: float) -> int:
    c = SimpleNamespace(**json.loads(ctx_file.read_text(encoding="utf-8")))
    c.out, c.work, c.data = Path(c.out), Path(c.work), Path(c.data)
    deadline = time.monotonic() + budget_s
    c.left = lambda: deadline - time.monotonic()
    result_file = c.work / f"{part}.json"
    res: dict = {"status": "running"}

    def record(**figures) -> None:
        """Keep figures as they come: a part killed at its limit still reports what it measured."""
        res.update(figures)
        write_json(result_file, res)

    record()
    failpoints.reach(f"gpu_check:{part}")  # a test's stand-in for a part that hangs
    try:
        if part == "multi30k" and c.synthetic and not c.dry_run:
            record(status="skipped", reason="no Multi30k (--data): a BLEU on synthetic text means nothing")
        elif part not in ("env", "cuda_tests") and not c.dry_run and not _cuda(c):
            record(status="skipped", reason="no CUDA device")
        else:
            PART_FUNCTIONS[part](c, record)
    except Exception as exc:
        traceback.print_exc()
        record(status="error", reason=f"{type(exc).__name__}: {_last_nonempty(str(exc))}")
        return 1
    if res["status"] == "running":
        record(status="ok")
    return 0


def part_env(c, record) -> None:
    import torch

    record(torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
           cpus=os.cpu_count(), platform=platform.platform())
    smi = _nvidia_smi()
    if smi:
        record(driver=smi.get("driver_version"), nvidia_smi=smi)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        record(gpu=torch.cuda.get_device_name(0), capability=f"{props.major}.{props.minor}",
               gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
        record(matmul=matmul_rate(8192, "cuda"))
    else:
        record(gpu=None, note="no CUDA device: the matmul rate is the CPU's, float32")
        record(matmul=matmul_rate(256, "cpu"))


def matmul_rate(n: int, device: str) -> dict:
    """Median rate of an n x n x n matrix product (bf16 on CUDA), over 3 rotating random input pairs
    (so neither zeros nor one cached pair flatter it), after a warm-up."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    pairs = [[torch.randn(n, n, device=device, dtype=dtype, generator=gen) for _ in range(2)] for _ in range(3)]
    # On CUDA each sample is 10 products between synchronizations, so the sync's own cost is noise.
    sync, k = (torch.cuda.synchronize, 10) if device == "cuda" else ((lambda: None), 1)
    times = []
    for i in range(23):
        a, b = pairs[i % 3]
        sync()
        t = time.perf_counter()
        for _ in range(k):
            a @ b
        sync()
        times.append((time.perf_counter() - t) / k)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "device": device,
            "tflops": round(2 * n**3 / statistics.median(times[3:]) / 1e12, 3)}


def part_cuda_tests(c, record) -> None:
    xml = c.out / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", f"--junitxml={xml}", "tests"]
    if importlib.util.find_spec("pytest_timeout"):
        cmd.insert(-1, "--timeout=90")  # one hung test fails alone instead of taking the part's whole budget
    record(command=" ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(5.0, c.left()))
    except subprocess.TimeoutExpired as exc:
        print(exc.stdout or "", exc.stderr or "", flush=True)
        return record(status="timeout", reason=f"pytest still running after {exc.timeout:.0f} s")
    print(proc.stdout, proc.stderr, flush=True)
    text = proc.stdout + proc.stderr
    if "Unknown marker" in text and "cuda" in text:
        return record(counts={}, note="no test is marked cuda yet (the marker is not registered)")
    counts, uncollected = pytest_outcome(text)
    record(counts=counts, exit_code=proc.returncode, collection_errors=uncollected)
    if counts.get("failed") or counts.get("errors", 0) > len(uncollected):
        record(status="failed", reason=f"{counts.get('failed', 0)} failed, {counts.get('errors', 0)} errors")
    elif not counts.get("passed") and not counts.get("skipped"):
        record(note="no test marked cuda was collected")


def pytest_outcome(text: str) -> tuple[dict, list[str]]:
    """The counts of pytest's last summary line ('2 passed, 1 skipped, 9 deselected, 3 errors in 4.1s'),
    and the modules it could not import (prefect or dvc are not on the device): a cuda test in one of
    those did not run, so they are named, not hidden. A test's own ERROR line names `file::test`."""
    lines = text.splitlines()
    last = next((line for line in reversed(lines) if re.search(r"\bin [\d.]+s\b", line)), "")
    counts = {("errors" if word.startswith("error") else word): int(n)
              for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", last)}
    uncollected = [line[:200] for line in lines
                   if line.startswith("ERROR tests/") and "::" not in line.split(" ")[1]]
    return counts, uncollected


def _cuda(c) -> bool:
    env = c.earlier.get("env", {})
    if env.get("status") == "ok":
        return env.get("gpu") is not None
    import torch

    return torch.cuda.is_available()


def part_train_speed(c, record) -> None:
    cuda = _cuda(c)
    size = TINY if c.dry_run else BASE
    gpu = c.earlier.get("env", {}).get("gpu") or ""
    peak = c.peak_tflops or peak_tflops(gpu)
    record(device="cuda" if cuda else "cpu", model={"layers": size["layers"], "d_model": size["d_model"],
           "ffn": 4 * size["d_model"], "heads": size["d_model"] // 64}, max_tokens=size["max_tokens"],
           peak_tflops=peak, data="synthetic" if c.synthetic else "Multi30k")
    joey = _probe_joeynmt()
    record(joeynmt=joey)
    out_json = c.work / "train_speed_out.json"
    cmd = [sys.executable, str(ROOT / "bench" / "train_speed.py"), "--device", "cuda" if cuda else "cpu",
           "--corpus", str(c.data), "--json", str(out_json), "--budget-s", f"{max(5.0, c.left() - 45):.0f}"]
    for key in ("layers", "d_model", "max_tokens", "vocab", "sentences", "steps", "warmup"):
        cmd += [f"--{key.replace('_', '-')}", str(size[key])]
    if peak:
        cmd += ["--peak-tflops", str(peak)]
    # JoeyNMT has never run on this GPU: if the pair fails, babelflow alone is timed rather than nothing.
    for peers in (["joeynmt", "--joeynmt-python", sys.executable], []) if joey == "available" else ([],):
        print(" ".join(cmd + ["--peers"] + peers), flush=True)
        rc = subprocess.run(cmd + ["--peers"] + peers, cwd=ROOT, timeout=max(5.0, c.left())).returncode
        if rc == 0:
            break
        if peers:
            record(joeynmt=f"failed: bench/train_speed.py with JoeyNMT exited with code {rc} (see log.txt)")
    if rc:
        raise RuntimeError(f"bench/train_speed.py exited with code {rc} (its output is in log.txt)")
    r = json.loads(out_json.read_text(encoding="utf-8"))
    keep = ("tokens_per_s", "mfu", "median_step_s", "seconds", "tokens", "parameters", "version", "torch",
            "first_loss_per_token")
    bf = {k: r["babelflow"][k] for k in keep if k in r["babelflow"]}
    achieved = r["model_tflops_per_step_mean"] * r["timed_steps"] / r["babelflow"]["seconds"]
    bf["achieved_tflops"] = round(achieved, 2)
    ceiling = (c.earlier.get("env", {}).get("matmul") or {}).get("tflops")
    if ceiling:
        bf["share_of_measured_matmul_rate"] = round(achieved / ceiling, 4)
    record(babelflow=bf, timed_steps=r["timed_steps"], vocab=r["vocab"],
           model_tflops_per_step=r["model_tflops_per_step_mean"])
    if "joeynmt" in r:
        record(joeynmt={k: r["joeynmt"][k] for k in keep if k in r["joeynmt"]},
               ratio_vs_joeynmt=r.get("ratio_vs_joeynmt"),
               median_step_ratio_vs_joeynmt=r.get("median_step_ratio_vs_joeynmt"))
    if not peak:
        record(note=f"no dense bf16 peak known for {gpu or 'this device'}: no MFU (pass --peak-tflops)")


def peak_tflops(gpu_name: str) -> float | None:
    """The dense bf16 peak of the SXM H100/H200 ('NVIDIA H200', 'NVIDIA H100 80GB HBM3'); the PCIe and
    NVL parts run lower clocks, so they get none rather than a flattering MFU."""
    if re.search(r"\bH(100|200)\b", gpu_name) and not re.search(r"PCIe|NVL", gpu_name):
        return H100_H200_BF16_DENSE_PEAK_TFLOPS
    return None


def _probe_joeynmt() -> str:
    """'available', or why not: JoeyNMT is not on the device unless its wheels were carried."""
    if importlib.util.find_spec("joeynmt") is None:
        return "not available (not installed; carry its wheels, see bench/gpu_check.sh)"
    proc = subprocess.run([sys.executable, "-c", "import joeynmt.model, joeynmt.vocabulary"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode:
        return f"not available (import failed: {_last_nonempty(proc.stderr)})"
    return "available"


def part_multi30k(c, record) -> None:
    from babelflow.io import read_json
    from bench.pipeline import run_stages
    from tasks import train as train_stage

    preset, params, chunk = multi30k_plan(c.dry_run, c.data)
    cfg, work = params.train, c.work / "multi30k"

    def upto(steps: int):  # the same run, ending at `steps`: train resumes from its checkpoints
        return params.model_copy(update={"train": cfg.model_copy(update={"max_steps": steps})})

    paths, seconds = run_stages(params, work, ["collect", "clean", "tokenize", "encode"])
    record(preset=preset, preset_steps=cfg.max_steps, max_tokens=cfg.max_tokens,
           model=params.model.transformer.model_dump(), stages_s=seconds)
    t = time.monotonic()
    first = train_stage.run(upto(chunk), paths)
    per_step = first["wall_time_s"] / first["steps"]
    fixed = time.monotonic() - t - first["wall_time_s"]  # data loading, model building: paid again on resume
    room = c.left() - (10 if c.dry_run else 60) - fixed  # 60 s: the evaluate stage's beam search on test
    steps = min(cfg.max_steps, chunk + max(0, int(room / per_step)) // chunk * chunk, 2 * chunk if c.dry_run else 10**9)
    record(first_chunk={"steps": first["steps"], "seconds": round(time.monotonic() - t, 1),
                        "step_s": round(per_step, 4)}, planned_steps=steps)
    metrics = train_stage.run(upto(steps), paths) if steps > chunk else first
    record(train={k: metrics.get(k) for k in ("steps", "tokens_seen", "parameters", "train_loss", "dev_loss",
                                              "dev_bleu", "device", "tokens_per_s")},
           steps_of_preset=f"{metrics['steps']} of {cfg.max_steps}", selection=metrics.get("selection"))
    evaluated = run_stages(upto(steps), work, ["evaluate"])[1]["evaluate"]
    shutil.copyfile(paths.plots("train") / "learning_curve.csv", c.out / "learning_curve.csv")
    shutil.copyfile(paths.eval / "en-de.hyp", c.out / "test.de.hyp")
    test = read_json(paths.eval / "metrics.json")["en-de"]
    record(test={k: round(test[k], 2) if isinstance(test[k], float) else test[k]
                 for k in ("bleu", "chrfpp", "ter", "n", "signatures")},
           test_decode_s=evaluated, beam=params.evaluate.beam_size)


def multi30k_plan(dry_run: bool, corpus=None):
    """bench/multi30k.py's `gpu` preset en->de (`smoke`, smaller still, for the rehearsal), and the
    chunk: the steps after which the run can be resumed, which must be a log, checkpoint and
    validation step at once (else the checkpoint serves only a run of that length)."""
    from bench.pipeline import CORPUS, preset_params

    preset = "smoke" if dry_run else "gpu"
    tiny = ["train.max_tokens=256", "train.checkpoint_every=5", "train.validate_every=5",
            "train.dev_bleu_sentences=4", "evaluate.max_sentences=16"] if dry_run else []
    params = preset_params(f"multi30k-{preset}", ["languages.targets=[de]", *tiny], corpus or CORPUS)
    cfg = params.train
    return preset, params, math.lcm(cfg.checkpoint_every, cfg.validate_every,
                                    min(100, cfg.validate_every, cfg.checkpoint_every))


def part_decode(c, record) -> None:
    cuda = _cuda(c)
    import torch

    from babelflow.decode import translate_ids
    from babelflow.metrics import score
    from babelflow.models import build_model, load_model
    from babelflow.runtime import autocast, seed_all
    from babelflow.tokenizer import Tokenizer
    from tasks._common import Paths

    device, n = torch.device("cuda" if cuda else "cpu"), 8 if c.dry_run else None
    run, tok = Paths(c.work / "multi30k"), None
    if (run.train / "model.json").is_file():
        model, tok = load_model(run.train, device), Tokenizer(run.tokenizer / "spm.model")
        src, refs = ((c.data / f"test_2016_flickr.{x}").read_text(encoding="utf-8").splitlines()[:n] for x in "en de".split())
        encoded = [tok.encode_source(s, "de") for s in src]
        ids = [e[0] for e in encoded]
        record(model="the multi30k part's selected model", sentences=len(ids))
    else:
        # Untrained weights rarely emit EOS early: every sentence runs to its length limit, the most work.
        from babelflow.config import ModelConfig, TransformerConfig
        from babelflow.specials import EOS_ID

        size = TINY if c.dry_run else BASE
        d, vocab = size["d_model"], size["vocab"]
        seed_all(0)
        model = build_model(ModelConfig(arch="transformer", transformer=TransformerConfig(
            d_model=d, ffn_dim=4 * d, heads=d // 64, encoder_layers=size["layers"], decoder_layers=size["layers"])),
            vocab).to(device).eval()
        rng = random.Random(0)
        ids = [[rng.randrange(4, vocab) for _ in range(rng.randint(8, 30))] + [EOS_ID] for _ in range(n or 1000)]
        record(model="random init (the multi30k part left no model): outputs run to the length limit",
               sentences=len(ids))
    batch, systems = 4 if c.dry_run else 128, {}
    for name, beam, bf16 in (("greedy", 1, False), ("beam4", 4, False), ("greedy-bf16", 1, True),
                             ("beam4-bf16", 4, True)):
        if c.left() < 10:
            systems[name] = {"status": "skipped", "reason": "no time left"}
            continue

        def decode(rows):
            with autocast(device, bf16):
                out = translate_ids(model, rows, beam, 1.0, 2.0, batch)
            if cuda:
                torch.cuda.synchronize()
            return out

        try:
            decode(ids[:batch])  # first-call allocations and kernel choices are not decoding speed
            secs, out = best_of(lambda: decode(ids), 1)
        except Exception as exc:  # one system failing (bf16, say) leaves the others' figures
            traceback.print_exc()
            systems[name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        systems[name] = {"seconds": round(secs, 2), "sent_per_s": round(len(ids) / secs, 1), "beam": beam,
                         "bf16_autocast": bf16, "batch": batch,
                         "out_tokens_per_s": round(sum(len(h) for h in out) / secs, 1)}
        if tok is not None:
            hyps = [tok.decode(h, e[1]) for h, e in zip(out, encoded)]
            systems[name]["bleu"] = round(score(hyps, refs, "de")["bleu"], 2)
        record(systems=systems)
    record(device=str(device), systems=systems)


PART_FUNCTIONS = {"env": part_env, "cuda_tests": part_cuda_tests, "train_speed": part_train_speed,
                  "multi30k": part_multi30k, "decode": part_decode}


# ------------------------------------------------------------------------------------------- helpers
def _nvidia_smi() -> dict | None:
    if not shutil.which("nvidia-smi"):
        return None
    fields = ["name", "driver_version", "memory.total", "clocks.max.sm", "power.limit", "temperature.gpu"]
    try:
        line = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except (subprocess.SubprocessError, OSError, IndexError):
        return None
    return dict(zip(fields, (v.strip() for v in line.split(","))))


def _installed_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return version(name)
    return None


def _last_nonempty(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")[:300]


def _last_line(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - 4096))
        return _last_nonempty(f.read().decode("utf-8", "replace"))


def _append_log(log: Path, title: str, part_log: Path, head: int = 256 << 10, tail: int = 1536 << 10) -> None:
    """Append a part's output under a title; a huge one keeps its head and tail (the files that come
    back from the device are capped at 16 MB each)."""
    size = part_log.stat().st_size
    with open(part_log, "rb") as src, open(log, "ab") as dst:
        dst.write(f"\n===== {title} =====\n".encode())
        if size <= head + tail:
            shutil.copyfileobj(src, dst)
        else:
            dst.write(src.read(head))
            dst.write(f"\n[... {size - head - tail} bytes cut ...]\n".encode())
            src.seek(size - tail)
            shutil.copyfileobj(src, dst)


if __name__ == "__main__":
    sys.exit(main())
