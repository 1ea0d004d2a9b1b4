# The two commands of the README. Each sets up .venv on its own (scripts/bootstrap.sh).
VENV ?= .venv
# Prefect stays local and quiet: its own home in the project, no telemetry, no update checks.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export DVC_NO_ANALYTICS ?= 1
# The ephemeral API server gets 20 s to start by default; a loaded 2-core machine needs more.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: setup run flow test schedule

setup:
	@bash scripts/bootstrap.sh

# The whole default pipeline (gettext catalogs of this machine, no internet) through DVC, then the run
# in one screen: scores per pair, the adaptation table, the release and how to translate with it.
# RECIPE=NAME first makes recipes/NAME.yaml params.yaml (refused if params.yaml holds edits of yours).
run: setup
	$(if $(RECIPE),PATH="$(CURDIR)/$(VENV)/bin:$$PATH" babelflow recipe $(RECIPE))
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" babelflow summary

# The same pipeline as a Prefect flow (same stages, same dvc.lock), ending with the same summary.
flow: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" python -m flows.pipeline .

# Serves into a running server (`prefect server start`, port 4200 unless PREFECT_API_URL says otherwise):
# Prefect's temporary in-process server never runs schedules.
schedule: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PREFECT_API_URL="$${PREFECT_API_URL:-http://127.0.0.1:4200/api}" \
	  python -m flows.schedule --cron "$${CRON:-0 3 * * *}" --root .

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" python -m pytest -n 2 --timeout 900 tests
