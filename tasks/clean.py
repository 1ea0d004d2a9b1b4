"""Stage clean: data/raw -> data/clean (normalised, filtered pairs) + report.json + metrics."""
from __future__ import annotations

from babelflow.clean import clean_corpus
from babelflow.config import Params
from babelflow.io import atomic_dir, write_json
from tasks._common import Paths, stage_main


def run(params: Params, paths: Paths) -> dict:
    langs = params.languages
    with atomic_dir(paths.clean) as tmp:
        report = clean_corpus(paths.raw, tmp, params.clean, langs.source, langs.all_targets, params.executor.address)
        write_json(tmp / "report.json", report)
    metrics = {
        "pairs": {pair: {split: {"in": r["in"], "out": r["out"], "removed": r["removed"]}
                         for split, r in splits.items()}
                  for pair, splits in report["pairs"].items()},
        "total_in": report["totals"]["in"],
        "total_out": report["totals"]["out"],
        "removed": report["totals"]["removed"],
        "skipped_lines": report["totals"]["removed"].get("invalid_input", 0),  # under clean.on_error: skip
    }
    paths.metrics("clean").parent.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics("clean"), metrics)
    return metrics


if __name__ == "__main__":
    stage_main("clean", run)
