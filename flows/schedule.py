"""Serve the pipeline as a scheduled Prefect deployment (`babelflow schedule --cron ...`).

`Flow.serve` registers the deployment with the Prefect API in PREFECT_API_URL and runs the flow
runs it schedules in this process: no home-made scheduler, and a work pool can take over later
(`prefect deploy`) without changing the flow.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from flows.pipeline import pipeline_flow


def serve(cron: str | None, root: str = ".", name: str = "babelflow-nightly",
          timezone: str = "UTC") -> None:
    from prefect.client.schemas.schedules import CronSchedule

    schedules = [CronSchedule(cron=cron, timezone=timezone)] if cron else None
    pipeline_flow.serve(
        name=name,
        schedules=schedules,
        parameters={"root": str(Path(root).resolve())},
        description="babelflow: collect -> clean -> tokenize -> train -> meta -> adapt -> evaluate -> release",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.schedule")
    parser.add_argument("--cron", default=None, help='e.g. "0 3 * * *"; omit to serve without a schedule')
    parser.add_argument("--root", default=".")
    parser.add_argument("--name", default="babelflow-nightly")
    parser.add_argument("--timezone", default="UTC")
    args = parser.parse_args(argv)
    serve(args.cron, args.root, args.name, args.timezone)


if __name__ == "__main__":
    main()
