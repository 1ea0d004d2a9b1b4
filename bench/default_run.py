"""Benchmark of issue 2: the README's run command on a fresh clone, timed, then the DVC checks.

    python bench/default_run.py [--repo .] [--work /tmp/babelflow_default_run] [--write]

Clones the repository's committed HEAD into --work (as a new user would; an existing --work is
deleted first only if an earlier run made it), runs `make run` (venv set-up
included) timing each stage as DVC starts it, then checks that a second `dvc repro` runs nothing and
that changing one training knob re-runs only train and the stages after it (a real `dvc repro`). Prints a Markdown
section with the per-stage times and the per-language scores; --write puts it into bench/RESULTS.md.
Run it on an idle machine: the budget it checks (20 minutes on 2 cores) is about this command alone.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.io import read_json, write_text  # noqa: E402
from bench.machine import cpu_description, git_commit  # noqa: E402
from bench.results_file import replace_section  # noqa: E402

SECTION = "## Default pipeline run (issue 2): `make run`"
BUDGET_S = 20 * 60
STAGE_LINE = re.compile(r"Running stage '([\w-]+)'")
EXPECTED_AFTER_TRAIN_CHANGE = ["train", "meta", "adapt", "evaluate", "release"]
# Written into the clone's .git/ (git status stays clean): --work is deleted before each run, and only
# a folder carrying this marker is this benchmark's own to delete.
MARKER = "babelflow_default_run"


def work_folder_problem(work: Path) -> str | None:
    """Why --work may not be deleted and cloned into, or None."""
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        return "is not a folder"
    if work.is_dir() and any(work.iterdir()) and not (work / ".git" / MARKER).is_file():
        return (f"is not empty and not an earlier run of this benchmark (no .git/{MARKER}); "
                "choose another --work or remove it yourself")
    return None


# Runs on every `dvc repro` by design (it fingerprints the inputs); a no-op repro runs only it.
ALWAYS_RUNS = {"inputs"}


def timed_make_run(clone: Path, log_path: Path) -> tuple[float, list[tuple[str, float]], int]:
    """Runs `make run`, streaming its output to a log; returns total seconds, stage start offsets."""
    starts: list[tuple[str, float]] = [("setup", 0.0)]
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(["make", "run"], cwd=clone, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            match = STAGE_LINE.search(line)
            if match:
                starts.append((match.group(1), time.monotonic() - t0))
        rc = proc.wait()
    return time.monotonic() - t0, starts, rc


def stage_durations(starts: list[tuple[str, float]], total: float) -> list[tuple[str, float]]:
    ends = [s for _, s in starts[1:]] + [total]
    return [(name, end - start) for (name, start), end in zip(starts, ends)]


def repro(clone: Path) -> tuple[list[str], float]:
    """`dvc repro` in the clone's venv: the stages it ran (the always-run one left out) and its seconds."""
    t0 = time.monotonic()
    out = subprocess.run(["dvc", "repro"], cwd=clone, capture_output=True, text=True, check=True,
                         env=dict(os.environ, PATH=f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}")).stdout
    return [s for s in STAGE_LINE.findall(out) if s not in ALWAYS_RUNS], time.monotonic() - t0


def raise_max_steps(clone: Path) -> None:
    """Raises train.max_steps by 10 in params.yaml (the clone is left at the new value).

    A `dvc repro --dry` cannot tell what re-runs: it lists the stages whose own params or deps changed,
    not the ones that re-run because train's output changes (evaluate reads no train param). Raising
    max_steps keeps the real repro cheap: the trainer resumes from its step-N checkpoint and adds 10 steps.
    """
    params = clone / "params.yaml"
    changed, n = re.subn(r"(?m)^(  max_steps: )(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 10}",
                         params.read_text(encoding="utf-8"), count=1)
    if n != 1:
        raise SystemExit("bench/default_run.py: no 'train.max_steps' line found in params.yaml")
    params.write_text(changed, encoding="utf-8")


def run_outputs(clone: Path, rc: int) -> dict:
    """What the first `make run` left, read before the re-run check changes it: the release files, every
    pair's test scores with n (data/metrics/eval.json holds only the macro averages), adapt's table and
    the sacrebleu signatures."""
    if rc != 0:
        return {"release": [], "scores": "(run failed)", "adapt": "", "signatures": ""}
    evaluation = read_json(clone / "data/eval/metrics.json")

    def cells(m: dict) -> str:  # an empty test split has no scores (n = 0, not scored)
        return " | ".join(["–" if m.get(k) is None else f"{m[k]:.1f}" for k in ("bleu", "chrfpp", "ter")]
                          + [str(m.get("repeats", "–"))])

    # The last column is issue 20's check: outputs that repeat one word 4+ times in a row.
    scores = ["| pair | test sentences | BLEU | chrF++ | TER | outputs repeating a word 4+ times |",
              "|---|---|---|---|---|---|"]
    scores += [f"| {pair} | {m['n']} | {cells(m)} |" for pair, m in evaluation.items() if pair not in ("macro", "external")]
    if macro := evaluation.get("macro"):  # its `repeats` is the evaluate stage's sum over the pairs
        total_repeats = f"{macro.get('repeats', '–')} in all"
        scores += [f"| macro average | | {cells({**macro, 'repeats': total_repeats})} |"]
    sigs = next((m["signatures"] for m in evaluation.values() if isinstance(m, dict) and "signatures" in m), {})
    results, inits, adapt = read_json(clone / "data/adapt/results.json"), ["scratch", "transfer", "meta"], []
    for entry in results["languages"].values() if results.get("enabled") else ():
        adapt += [f"Held-out pair {entry['pair']} ({entry['test_sentences']} test sentences), test BLEU "
                  "(chrF++) after the same fine-tuning budget from each init:", "",
                  "| K | " + " | ".join(inits) + " |", "|---" * (len(inits) + 1) + "|"]
        adapt += ["| " + " | ".join([k] + [f"{row[i]['bleu_mean']:.1f} ({row[i]['chrfpp_mean']:.1f})" if i in row
                                           else "-" for i in inits]) + " |"
                  for k, row in sorted(entry["k"].items(), key=lambda kv: int(kv[0]))] + [""]
    return {"release": sorted(p.name for p in (clone / "data/release").iterdir()), "scores": "\n".join(scores),
            "adapt": "\n".join(adapt).rstrip() if results.get("enabled") else "(adapt disabled)",
            "signatures": "\n".join(f"    {name}: {sig}" for name, sig in sigs.items()) or "    (none found)"}


def render(total: float, durations, rc: int, noop: bool, noop_s: float, rerun: list[str],
           rerun_s: float, outputs: dict, commit: str | None) -> str:
    load = os.getloadavg()
    verdict = "met" if rc == 0 and total <= BUDGET_S else "NOT met"
    stage_rows = "\n".join(f"| {name} | {sec / 60:.1f} |" for name, sec in durations)
    release = outputs["release"]
    return f"""- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC
- Machine: {cpu_description()}, Python {platform.python_version()},
  no GPU; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)
- Commit: {commit}
- Command: `python bench/default_run.py --write` (fresh `git clone`, then the README's `make run`,
  venv set-up from the local package index included)

| step | minutes |
|---|---|
{stage_rows}
| **total** | **{total / 60:.1f}** |

Exit status {rc}; budget 20 minutes: **{verdict}**. A second `dvc repro` ran
{"nothing" if noop else "SOME STAGES AGAIN"} ({noop_s:.0f} s). Then `train.max_steps` was raised by 10 and
`dvc repro` re-ran: {", ".join(rerun) or "nothing"} (expected: {", ".join(EXPECTED_AFTER_TRAIN_CHANGE)};
{rerun_s / 60:.1f} min, train resuming from its last checkpoint).

Release folder: {", ".join(f"`{n}`" for n in release)}.

Test split scores (held-out English source strings, beam search; sacrebleu):

{outputs["scores"]}

{outputs["adapt"]}

Signatures:

{outputs["signatures"]}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=ROOT)
    ap.add_argument("--work", type=Path, default=Path("/tmp/babelflow_default_run"))
    ap.add_argument("--write", action="store_true", help="replace the section in bench/RESULTS.md")
    args = ap.parse_args(argv)
    problem = work_folder_problem(args.work)
    if problem:
        print(f"default_run: error: {args.work}: {problem}", file=sys.stderr)
        return 2
    if args.work.exists():
        shutil.rmtree(args.work)
    subprocess.run(["git", "clone", "-q", str(args.repo), str(args.work)], check=True)
    (args.work / ".git" / MARKER).write_text("")
    # Inside the clone's .git/: beside --work it would overwrite whatever file has that name.
    log_path = args.work / ".git" / "default_run.log"
    print(f"make run log: {log_path}", file=sys.stderr)
    total, starts, rc = timed_make_run(args.work, log_path)
    durations = stage_durations(starts, total)
    outputs = run_outputs(args.work, rc)
    noop, noop_s, rerun, rerun_s = False, 0.0, [], 0.0
    if rc == 0:
        ran, noop_s = repro(args.work)
        noop = not ran
        raise_max_steps(args.work)
        rerun, rerun_s = repro(args.work)
    text = render(total, durations, rc, noop, noop_s, rerun, rerun_s, outputs, git_commit(args.work))
    print(f"{SECTION}\n\n{text}")
    if args.write:
        results = ROOT / "bench" / "RESULTS.md"
        write_text(results, replace_section(results.read_text(encoding="utf-8"), SECTION, text))
    return 0 if rc == 0 and noop and rerun == EXPECTED_AFTER_TRAIN_CHANGE else 1


if __name__ == "__main__":
    sys.exit(main())
