#!/usr/bin/env bash
# Creates .venv (or $BABELFLOW_VENV) and installs babelflow with its pinned tools into it.
# torch goes in first: with no torch present a plain "torch" requirement would resolve to the newest
# release with several GB of CUDA wheels, so we ask for the CPU build 2.13.0 explicitly; where the
# system Python already has torch (a GPU box), the venv inherits it and nothing is reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BABELFLOW_VENV:-.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[bootstrap] system torch found; creating $VENV with --system-site-packages to keep it"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    echo "[bootstrap] creating $VENV"
    "$PY" -m venv "$VENV"
  fi
fi
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "[bootstrap] installing torch==2.13.0"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
# Reinstall only when the dependency list changed, so repeated runs cost a second.
stamp="$VENV/.babelflow-deps"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing babelflow and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi
