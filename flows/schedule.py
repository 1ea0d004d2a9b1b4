"""Serve the pipeline as a scheduled Prefect deployment (`babelflow schedule --cron ...`).

`Flow.serve` registers the deployment with the Prefect API in PREFECT_API_URL and runs the flow
runs it schedules in this process: no home-made scheduler, and a work pool can take over later
(`prefect deploy`) without changing the flow.
"""
from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path

from babelflow.config import check_cron, check_timezone
from babelflow.errors import BabelflowError, ConfigError
from flows.pipeline import check_stages, pipeline_flow

# A server on this machine answers /health in milliseconds and a closed port refuses at once; this
# only bounds a firewalled address that drops packets.
API_CHECK_TIMEOUT_S = 5.0


def check_api() -> str:
    """The configured Prefect API URL, once it has answered; BabelflowError otherwise.

    Without a URL Prefect would start a temporary in-process server, which runs no scheduler: the
    deployment would be registered and never fire.
    """
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise BabelflowError("no Prefect API to register with: start one (`prefect server start --host "
                             "127.0.0.1`) and set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api")
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=API_CHECK_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        pass  # a server answered; registration reports what it objects to
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BabelflowError(f"the Prefect API at {url} is not reachable ({reason}): start it with "
                             "`prefect server start` or fix PREFECT_API_URL") from None
    return url


def serve(cron: str | None, root: str = ".", name: str = "babelflow-nightly",
          timezone: str = "UTC", stages: list[str] | None = None) -> None:
    """Check the schedule, the stages and the API, then register and serve (blocks)."""
    for flag, check, value in (("--cron", check_cron, cron), ("--timezone", check_timezone, timezone)):
        try:
            if value is not None:
                check(value)
        except ValueError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
    check_stages(stages)
    from prefect.client.schemas.schedules import CronSchedule

    schedules = [CronSchedule(cron=cron, timezone=timezone)] if cron else None
    check_api()  # before anything is registered

    parameters: dict = {"root": str(Path(root).resolve())}
    if stages:
        parameters["stages"] = list(stages)
    pipeline_flow.serve(
        name=name,
        schedules=schedules,
        parameters=parameters,
        description="babelflow: collect -> clean -> tokenize -> encode -> train -> meta -> adapt -> evaluate -> release",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.schedule")
    parser.add_argument("--cron", default=None, help='e.g. "0 3 * * *"; omit to serve without a schedule')
    parser.add_argument("--root", default=".")
    parser.add_argument("--name", default="babelflow-nightly")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--stages", nargs="*", default=None, help="subset of stages each run runs, in order")
    args = parser.parse_args(argv)
    try:
        serve(args.cron, args.root, args.name, args.timezone, args.stages)
    except BabelflowError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
