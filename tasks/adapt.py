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

# The inits DVC compares between runs: does the meta-learned init beat fine-tuning the multilingual
# model? scratch, the control, is in results.json, the curve and the run summary.
HEADLINE_INITS = ("transfer", "meta")


def headline(results: dict) -> dict:
    """data/metrics/adapt.json: {init: {"k<K>": test BLEU}} for the transfer and meta inits, the mean
    over seeds and over the held-out languages (each language's own table is in results.json). Flat and
    short so `dvc metrics show` and `dvc exp show` stay one screen wide."""
    bleu: dict[str, dict[str, list[float]]] = {}
    for entry in results["languages"].values():
        for k, row in entry["k"].items():
            for init in HEADLINE_INITS:
                if init in row:
                    bleu.setdefault(init, {}).setdefault(f"k{k}", []).append(row[init]["bleu_mean"])
    # One decimal, as sacrebleu reports BLEU and as the eval headline does.
    return {init: {k: round(sum(v) / len(v), 1) for k, v in per_k.items()} for init, per_k in bleu.items()}


def write_curve(paths: Paths, rows: list[dict]) -> None:
    from babelflow.adapt import INITS

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
    write_metrics(paths, "adapt", {})  # nothing to compare; results.json says why
    return {"enabled": False, "note": note}


def run(params: Params, paths: Paths) -> dict:
    from babelflow.adapt import adapt_experiment, curve_rows, plot_curve
    from babelflow.tokenizer import Tokenizer

    if not params.adapt.enabled:
        return _disabled(paths)
    spm_model = paths.tokenizer / "spm.model"
    if not spm_model.is_file():
        raise InputError(spm_model, "missing tokenizer; run the tokenize stage first")
    with atomic_dir(paths.adapt) as out:
        tokenizer = Tokenizer(spm_model, max_placeholders=params.tokenizer.max_placeholders)
        results = adapt_experiment(params, paths.clean, tokenizer, paths.train, paths.meta, log,
                                   encoded_dir=paths.encoded)
        first = next(iter(results["languages"]))
        results["curve_language"] = first  # curve.csv holds one language: DVC plots want one x/y table
        results["enabled"] = True
        wall_s = results.pop("wall_s")
        write_json(out / "results.json", results)
        plot_curve(results, out / "curve.png")
    write_curve(paths, curve_rows(results, first))
    write_metrics(paths, "adapt", {**headline(results), "wall_s": wall_s})
    return results


if __name__ == "__main__":
    stage_main("adapt", run)
