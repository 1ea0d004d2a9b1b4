"""Stage adapt: fine-tune scratch / transfer / meta inits on K pairs of each held-out language and
score them on its test split -> data/adapt/{results.json,curve.png}, data/plots/adapt/curve.csv."""
from __future__ import annotations

import csv
import logging

from babelflow.config import Params
from babelflow.errors import InputError
from babelflow.io import atomic_dir, atomic_open, write_json
from tasks._common import Paths, stage_main, write_metrics

log = logging.getLogger("babelflow.adapt")


def write_curve(paths: Paths, rows: list[dict]) -> None:
    from babelflow.meta.adapt import INITS

    with atomic_open(paths.plots("adapt") / "curve.csv") as fh:
        writer = csv.DictWriter(fh, fieldnames=["k", *INITS], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in ["k", *INITS]})


def _disabled(paths: Paths) -> dict:
    """adapt.enabled false: every output dvc.yaml declares is still written (an empty curve), each
    saying that no experiment ran, so `dvc repro` completes and the release can say so."""
    note = "adapt.enabled is false: adaptation was not run"
    log.info(note)
    with atomic_dir(paths.adapt) as out:
        write_json(out / "results.json", {"enabled": False, "note": note, "languages": {}})
    write_curve(paths, [])
    return write_metrics(paths, "adapt", {"enabled": False, "note": note})


def run(params: Params, paths: Paths) -> dict:
    from babelflow.meta.adapt import INITS, adapt_experiment, curve_rows, plot_curve
    from babelflow.tokenizer import Tokenizer

    if not params.adapt.enabled:
        return _disabled(paths)
    spm_model = paths.tokenizer / "spm.model"
    if not spm_model.is_file():
        raise InputError(spm_model, "missing tokenizer; run the tokenize stage first")
    with atomic_dir(paths.adapt) as out:
        tokenizer = Tokenizer(spm_model, max_placeholders=params.tokenizer.max_placeholders)
        results = adapt_experiment(params, paths.clean, tokenizer, paths.train, paths.meta, log)
        first = next(iter(results["languages"]))
        results["curve_language"] = first  # curve.csv holds one language: DVC plots want one x/y table
        results["enabled"] = True
        wall_s = results.pop("wall_s")
        write_json(out / "results.json", results)
        plot_curve(results, out / "curve.png")
    write_curve(paths, curve_rows(results, first))
    metrics: dict = {"enabled": True, "curve_language": first, "wall_s": wall_s}
    for lang, entry in results["languages"].items():
        for k, row in entry["k"].items():
            for init in INITS:
                if init in row:
                    metrics[f"{lang}.k{k}.{init}.bleu"] = row[init]["bleu_mean"]
                    metrics[f"{lang}.k{k}.{init}.chrf"] = row[init]["chrf_mean"]
                    if "bleu_last_mean" in row[init]:  # dev selection on: what the last step scored
                        metrics[f"{lang}.k{k}.{init}.bleu_last"] = row[init]["bleu_last_mean"]
            if "meta_minus_transfer_bleu" in row:
                metrics[f"{lang}.k{k}.meta_minus_transfer_bleu"] = row["meta_minus_transfer_bleu"]
    write_metrics(paths, "adapt", metrics)
    return metrics


if __name__ == "__main__":
    stage_main("adapt", run)
