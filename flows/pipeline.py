"""The whole pipeline as a Prefect flow: one Prefect task per DVC stage.

Each task runs `dvc repro --single-item <stage>` in the project folder. DVC, not Prefect, decides
whether a stage is up to date and records what it produced in dvc.lock, so a Prefect run and a
plain `dvc repro` share one cache and one lock file and produce the same artifacts: after either,
`dvc status` lists only the always-run `inputs` stage and the other has nothing else to do.
Prefect adds what DVC lacks: per-stage task runs with logs and durations, retries, a UI, schedules
and work pools.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from babelflow.config import load_params
from babelflow.errors import BabelflowError

# The DAG order of dvc.yaml. Kept explicit so each stage shows up as its own task run.
STAGES = ["inputs", "collect", "clean", "tokenize", "train", "meta", "adapt", "evaluate", "release"]
# Only collect can touch the network (url/sacrebleu sources): transient failures there are retried.
NETWORK_STAGES = {"collect"}


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
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            log(line)
            tail = (tail + [line])[-15:]
    if proc.wait() != 0:
        raise StageFailed(f"stage {stage!r} failed (exit {proc.returncode}): " + " | ".join(tail[-5:]))


def _stage_task(stage: str):
    @task(name=stage)
    def _run(root: str) -> str:
        logger = get_run_logger()
        run_stage(stage, root, log=logger.info)
        return stage

    return _run


STAGE_TASKS = {stage: _stage_task(stage) for stage in STAGES}


def metrics_markdown(root: str | Path) -> str:
    """The run summary (babelflow.summary) as Markdown tables, for the Prefect UI."""
    from babelflow.summary import babelflow_command, load, render_markdown
    from tasks._common import Paths

    return render_markdown(load(Paths(Path(root))), babelflow_command())


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
    from babelflow.summary import babelflow_command, load, render_text
    from tasks._common import Paths

    project = sys.argv[1] if len(sys.argv) > 1 else "."
    try:
        pipeline_flow(root=project)
    except BabelflowError as exc:  # bad params or input: the user's to fix; exit 2 as every stage does
        print(f"babelflow pipeline: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print("\n" + render_text(load(Paths(Path(project))), babelflow_command()), end="")
