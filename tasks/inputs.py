"""Stage inputs: always runs, first. Two jobs that must precede every other stage:

1. `stage_main` validates the whole params.yaml before anything else runs: a typo in any section
   stops `dvc repro` here, before DVC deletes a later stage's outputs to re-run it.
2. data/inputs/fingerprint.json names every file collect would read (path, size, sha256), so an
   edited corpus or a new gettext catalog re-runs collect, and an unchanged machine re-runs nothing.
"""
from __future__ import annotations

from babelflow.config import Params
from babelflow.corpus.fingerprint import input_fingerprint
from babelflow.io import write_json
from tasks._common import Paths, stage_main


def run(params: Params, paths: Paths) -> dict:
    fingerprint = input_fingerprint(params, paths.root / params.collect.cache_dir)
    write_json(paths.inputs / "fingerprint.json", fingerprint)
    return {"files": sum(len(s["files"]) for s in fingerprint["sources"])}


if __name__ == "__main__":
    stage_main("inputs", run)
