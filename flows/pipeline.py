"""The whole pipeline as a Prefect flow: one Prefect task per DVC stage.

Each task runs `dvc repro --single-item <stage>` in the project folder. DVC, not Prefect, decides
whether a stage is up to date and records what it produced in dvc.lock, so a Prefect run and a
plain `dvc repro` share one cache and one lock file and produce the same artifacts: after either,
`dvc status` lists only the always-run `inputs` stage and the other has nothing else to do.
Prefect adds what DVC lacks: per-stage task runs with logs and durations, retries, a UI, schedules
and work pools.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from babelflow.config import load_params
from babelflow.errors import BabelflowError, ConfigError

# The DAG order of dvc.yaml. Kept explicit so each stage shows up as its own task run.
STAGES = ["inputs", "collect", "clean", "tokenize", "train", "meta", "adapt", "evaluate", "release"]
# Only collect can touch the network (url/sacrebleu sources): transient failures there are retried.
NETWORK_STAGES = {"collect"}


def check_stages(stages: list[str] | None, flag: str = "--stages") -> None:
    """ConfigError naming any unknown stage: checked before a flow run starts, so a typo records no run."""
    unknown = [s for s in stages or [] if s not in STAGES]
    if unknown:
        raise ConfigError(f"{flag}: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")


class StageFailed(RuntimeError):
    pass


def _dvc() -> list[str]:
    # The dvc next to this interpreter, so a venv's flow runs the venv's dvc.
    exe = Path(sys.executable).with_name("dvc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dvc"]


def run_stage(stage: str, root: str | Path, log=print) -> None:
    """`dvc repro --single-item <stage>`, its output streamed line by line to `log`."""
    cmd = _dvc() + ["repro", "--single-item", stage]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Its own process group: on an interruption _stop signals the stage's command itself, which DVC
    # (ignoring SIGINT while a command runs) would not pass on.
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                log(line)
                tail = (tail + [line])[-15:]
    except BaseException:
        # Interrupted (Ctrl-C, a cancelled run): the stage stops too rather than running on without
        # the flow; SIGINT lets it leave nothing half-written (its outputs are written atomically).
        _stop(proc)
        raise
    if proc.wait() != 0:
        raise StageFailed(f"stage {stage!r} failed (exit {proc.returncode}): " + " | ".join(tail[-5:]))


def _stop(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    """Interrupt `proc`'s process group (DVC and the stage's command), killing it after `grace_s`."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            pass


def _stage_task(stage: str):
    @task(name=stage)
    def _run(root: str) -> str:
        logger = get_run_logger()
        run_stage(stage, root, log=logger.info)
        return stage

    return _run


STAGE_TASKS = {stage: _stage_task(stage) for stage in STAGES}


def metrics_markdown(root: str | Path) -> str:
    """The run's evaluation and adaptation figures as a Markdown table for the Prefect UI."""
    root = Path(root)
    lines = ["# babelflow run", ""]
    eval_path = root / "data" / "metrics" / "eval.json"
    if eval_path.exists():
        from babelflow.metrics import NOT_SCORED

        metrics = json.loads(eval_path.read_text(encoding="utf-8"))
        lines += ["## Test set (sacrebleu)", "", "| pair | BLEU | chrF++ | TER |", "|---|---|---|---|"]
        unscored = []
        for pair, m in sorted(metrics.items()):
            if isinstance(m, dict) and "bleu" in m:
                # An empty test split has None for its scores (babelflow.metrics.score), not 0.
                cells = ["–" if m.get(k) is None else f"{m[k]:.2f}" for k in ("bleu", "chrf", "ter")]
                lines.append(f"| {pair} | " + " | ".join(cells) + " |")
                if m["bleu"] is None and m.get("n") == 0:
                    unscored.append(f"{pair}: {NOT_SCORED}")
        lines += ["", *unscored, ""] if unscored else [""]
    adapt_path = root / "data" / "metrics" / "adapt.json"
    if adapt_path.exists():
        lines += ["## Adaptation (BLEU)", "", "```json", adapt_path.read_text(encoding="utf-8"), "```", ""]
    clean_md = root / "data" / "clean" / "report.json"
    if clean_md.exists():
        try:
            from babelflow.clean.report import to_markdown

            lines += ["## Cleaning", "", to_markdown(json.loads(clean_md.read_text(encoding="utf-8")))]
        except ImportError:
            pass
    return "\n".join(lines)


@flow(name="babelflow-pipeline", log_prints=True)
def pipeline_flow(root: str = ".", stages: list[str] | None = None) -> list[str]:
    """Run (or skip, when DVC finds them up to date) every stage in order.

    params.yaml is validated whole before any stage, and `inputs` always runs first, even before
    a subset: `--single-item` skips DVC's upstream stages, and the later stages' deps need its
    fingerprint refreshed."""
    root = str(Path(root).resolve())
    sched = load_params(Path(root) / "params.yaml").schedule
    done = []
    for stage in STAGES if stages is None else ["inputs"] + [s for s in stages if s != "inputs"]:
        run = STAGE_TASKS[stage]
        if stage in NETWORK_STAGES and sched.network_retries:
            delays = sched.retry_delay_s
            run = run.with_options(retries=sched.network_retries, retry_delay_seconds=[
                delays[min(i, len(delays) - 1)] for i in range(sched.network_retries)])
        done.append(run(root))
    create_markdown_artifact(markdown=metrics_markdown(root), key="babelflow-metrics",
                             description="Metrics of this pipeline run")
    return done


if __name__ == "__main__":
    try:
        pipeline_flow(root=sys.argv[1] if len(sys.argv) > 1 else ".")
    except BabelflowError as exc:  # bad params or input: the user's to fix; exit 2 as every stage does
        print(f"babelflow pipeline: error: {exc}", file=sys.stderr)
        sys.exit(2)
