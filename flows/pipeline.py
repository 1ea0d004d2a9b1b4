"""The whole pipeline as a Prefect flow: one Prefect task per DVC stage.

Each task runs `dvc repro --single-item <stage>` in the project folder. DVC, not Prefect, decides
whether a stage is up to date and records what it produced in dvc.lock, so a Prefect run and a
plain `dvc repro` share one cache and one lock file and produce the same artifacts: after either,
`dvc status` lists only the always-run `inputs` stage and the other has nothing else to do.
Prefect adds what DVC lacks: per-stage task runs with logs and durations, retries, a UI, schedules
and work pools.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed

from babelflow.config import load_params
from babelflow.errors import BabelflowError, ConfigError

# The DAG order of dvc.yaml. Kept explicit so each stage shows up as its own task run.
STAGES = ["inputs", "collect", "clean", "tokenize", "encode", "train", "meta", "adapt", "evaluate", "release"]
# Only collect can touch the network (url/sacrebleu sources): transient failures there are retried.
NETWORK_STAGES = {"collect"}


def check_stages(stages: list[str] | None, flag: str = "--stages") -> None:
    """ConfigError naming any unknown stage: checked before a flow run starts, so a typo records no run."""
    unknown = [s for s in stages or [] if s not in STAGES]
    if unknown:
        raise ConfigError(f"{flag}: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")


# The lines that say why a stage failed: the stage's own one-line error (tasks._common.stage_main) and
# DVC's. They are logged once, as errors, as they arrive; the failure itself then names only the stage.
ERROR_LINE = re.compile(r"^(babelflow [\w-]+: error: |ERROR: )")


class StageFailed(RuntimeError):
    pass


def _dvc() -> list[str]:
    # The dvc next to this interpreter, so a venv's flow runs the venv's dvc.
    exe = Path(sys.executable).with_name("dvc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dvc"]


def run_stage(stage: str, root: str | Path, log=print, error=print) -> None:
    """`dvc repro --single-item <stage>`, its output streamed line by line to `log`, the lines saying why it
    failed to `error`. A failure raises StageFailed naming the stage and the stage's exit status only:
    its reason was streamed once already, and Prefect repeats an exception's message in every state it
    reports."""
    cmd = _dvc() + ["repro", "--single-item", stage]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Its own process group: on an interruption _stop signals the stage's command itself, which DVC
    # (ignoring SIGINT while a command runs) would not pass on.
    proc = subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )
    status = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if ERROR_LINE.match(line):
                error(line)
                status = re.search(r"exited with (-?\d+)", line) or status  # DVC exits 255 whatever the stage did
            elif line:
                log(line)
    except BaseException:
        # Interrupted (Ctrl-C, a cancelled run): the stage stops too rather than running on without
        # the flow; SIGINT lets it leave nothing half-written (its outputs are written atomically).
        _stop(proc)
        raise
    if proc.wait() != 0:
        raise StageFailed(f"stage {stage!r} failed (exit {status[1] if status else proc.returncode})")


class _NoEmptyTraceback(logging.Filter):
    """Prefect logs a task that returns a Failed state with exc_info=True outside any exception, which
    prints "NoneType: None" under the message; drop that empty traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


_NO_EMPTY_TRACEBACK = _NoEmptyTraceback()


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
    def _run(root: str):
        logger = get_run_logger()
        try:
            run_stage(stage, root, log=logger.info, error=logger.error)
        except StageFailed as exc:
            # A state, not an exception: Prefect logs a raised one with its traceback at the task and
            # again at the flow; a Failed state is retried all the same (network stages).
            return Failed(message=str(exc))
        return stage

    return _run


STAGE_TASKS = {stage: _stage_task(stage) for stage in STAGES}


def metrics_markdown(root: str | Path) -> str:
    """The run summary (babelflow.summary) as Markdown tables, for the Prefect UI."""
    from babelflow.summary import babelflow_command, load, render_markdown
    from tasks._common import Paths

    return render_markdown(load(Paths(Path(root))), babelflow_command())


@flow(name="babelflow-pipeline", log_prints=True)
def pipeline_flow(root: str = ".", stages: list[str] | None = None):
    """Run (or skip, when DVC finds them up to date) every stage in order; the run fails at the first
    stage that fails, naming it (its own error was logged once in its task run) and runs nothing after.

    params.yaml is validated whole before any stage, and `inputs` always runs first, even before
    a subset: `--single-item` skips DVC's upstream stages, and the later stages' deps need its
    fingerprint refreshed."""
    root = str(Path(root).resolve())
    sched = load_params(Path(root) / "params.yaml").schedule
    logging.getLogger("prefect.task_runs").addFilter(_NO_EMPTY_TRACEBACK)
    done = []
    for stage in STAGES if stages is None else ["inputs"] + [s for s in stages if s != "inputs"]:
        run = STAGE_TASKS[stage]
        if stage in NETWORK_STAGES and sched.network_retries:
            delays = sched.retry_delay_s
            run = run.with_options(retries=sched.network_retries, retry_delay_seconds=[
                delays[min(i, len(delays) - 1)] for i in range(sched.network_retries)])
        state = run(root, return_state=True)
        if not state.is_completed():  # failed, or crashed
            return Failed(message=state.message)
        done.append(stage)
    create_markdown_artifact(markdown=metrics_markdown(root), key="babelflow-metrics",
                             description="Scores, adaptation and release of this pipeline run")
    return done


def run_pipeline(root: str | Path = ".", stages: list[str] | None = None, out: TextIO | None = None) -> int:
    """The flow from a command line (`make flow`, `babelflow run`): the run summary at the end, or exit
    status 1 after a failed stage with nothing more than the flow logged (no traceback), 2 on bad params."""
    from babelflow.summary import babelflow_command, load, render_text
    from tasks._common import Paths

    state = pipeline_flow(root=str(Path(root).resolve()), stages=stages, return_state=True)
    if not state.is_completed():
        exc = state.result(raise_on_failure=False)
        if isinstance(exc, BabelflowError):  # bad params or input: the user's to fix, as every stage says
            print(f"babelflow pipeline: error: {exc}", file=sys.stderr)
            return 2
        return 1
    (out or sys.stdout).write("\n" + render_text(load(Paths(Path(root))), babelflow_command()))
    return 0


if __name__ == "__main__":
    sys.exit(run_pipeline(sys.argv[1] if len(sys.argv) > 1 else "."))
