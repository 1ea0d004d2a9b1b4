"""Evaluate stage: translate every pair's test split with the trained model and score it with sacrebleu.

Outputs (data/eval, swapped in atomically): <pair>.hyp, metrics.json (every pair's scores with n and
signatures, macro averages, external test sets), report.md. The headline, the macro averages alone,
goes to data/metrics/eval.json, which DVC tracks as metrics so `dvc metrics diff` compares runs.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from babelflow.config import ExternalTestSet, Params
from babelflow.errors import BabelflowError, InputError, SourceUnavailableError
from babelflow.io import atomic_dir, write_json, write_text
from babelflow.metrics import NOT_SCORED, SCORES, repetition, score, single_line
from babelflow.report import plot_learning_curve, render_report
from tasks._common import Paths, stage_main

log = logging.getLogger("babelflow.evaluate")

# The adapt stage is not a dependency of this one, so whether its picture exists depends on run
# order; the link is written always (the same report bytes either way) and resolves once adapt ran.
ADAPT_CURVE = ("Adaptation: held-out test BLEU vs K (adapt stage)", "../adapt/curve.png")


def read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(path, "not valid UTF-8", line=line) from None
    if not text:
        return []  # an empty file has no lines, not one empty line
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines


def load_aligned(src_path: Path, ref_path: Path, limit: int) -> tuple[list[str], list[str]]:
    src, ref = read_lines(src_path), read_lines(ref_path)
    if len(src) != len(ref):
        raise InputError(ref_path, f"{len(ref)} lines but {src_path} has {len(src)}: not aligned")
    if limit:
        src, ref = src[:limit], ref[:limit]
    return src, ref


def load_sacrebleu_set(name: str, langpair: str, limit: int) -> tuple[list[str], list[str]]:
    from sacrebleu.dataset import DATASETS
    from sacrebleu.utils import get_reference_files, get_source_file

    if name not in DATASETS:
        raise BabelflowError(f"evaluate.external: {name!r} is not a sacrebleu test set")
    try:
        src_file = get_source_file(name, langpair)
        ref_files = get_reference_files(name, langpair)
    except BaseException as exc:  # sacrebleu calls sys.exit() on download failures
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SourceUnavailableError(
            f"sacrebleu test set {name} ({langpair}) is not cached in "
            f"{os.environ.get('SACREBLEU', '~/.sacrebleu')} and could not be downloaded "
            f"(offline?): {exc}"
        ) from None
    return load_aligned(Path(src_file), Path(ref_files[0]), limit)


def _translate(model, tokenizer, sentences: list[str], tgt: str, params: Params, source: str) -> list[str]:
    """`sentences` are the lines of `source`: a line cut to the model's length is logged as source:line."""
    from babelflow.validation import Decoding, translate_all

    hyps = translate_all(model, tokenizer, sentences, tgt, Decoding.of(params.evaluate), source)
    if len(hyps) != len(sentences):
        raise BabelflowError(f"decoder returned {len(hyps)} translations for {len(sentences)} inputs")
    return [single_line(h) for h in hyps]


def _external(ext: ExternalTestSet, params: Params) -> tuple[list[str], list[str]]:
    limit = params.evaluate.max_sentences
    if ext.sacrebleu is not None:
        return load_sacrebleu_set(ext.sacrebleu, params.languages.pair(ext.tgt), limit)
    return load_aligned(Path(ext.src_path), Path(ext.ref_path), limit)


def macro_average(metrics: dict[str, dict]) -> dict:
    """Over the pairs that were scored (an empty test split is not a score of 0); "pairs" counts them.
    `repeats` is not averaged but summed: the test outputs of every pair that repeat a word, with their
    share of all test outputs."""
    scored = [m for m in metrics.values() if m["bleu"] is not None]
    n = len(scored)
    outputs = sum(m["n"] for m in metrics.values())
    repeats = sum(m.get("repeats", 0) for m in metrics.values())
    return {
        "pairs": n,
        **{k: sum(m[k] for m in scored) / n if n else None for k in SCORES},
        "repeats": repeats, "repeats_share": repeats / outputs if outputs else None,
    }


def headline(macro: dict) -> dict:
    """What DVC compares between runs (data/metrics/eval.json): the macro averages, rounded to one decimal
    as sacrebleu's command line reports them (its default --width 1; two decimals made the table 121
    columns wide at TER >= 100). Flat and short so `dvc metrics show` and `dvc exp show` stay one
    screen wide; every pair's scores with n and signatures are in data/eval/metrics.json."""
    return {k: None if macro[k] is None else round(macro[k], 1) for k in ("bleu", "chrfpp", "ter")}


def run(params: Params, paths: Paths) -> dict:
    from babelflow.models import load_model
    from babelflow.runtime import start
    from babelflow.tokenizer import Tokenizer

    rt = start(params.train.device, params.train.threads)  # decoding runs in fp32
    model = load_model(paths.train, device=rt.device)
    model.eval()
    tokenizer = Tokenizer(paths.tokenizer / "spm.model")
    ev = params.evaluate

    pair_metrics: dict[str, dict] = {}
    external: dict[str, dict] = {}
    hyp_files: dict[str, list[str]] = {}
    examples: dict[str, list[tuple[str, str, str]]] = {}
    for tgt in params.languages.targets:
        pair = params.languages.pair(tgt)
        src, ref = load_aligned(paths.clean / pair / "test.src", paths.clean / pair / "test.tgt",
                                ev.max_sentences)
        log.info("%s: translating %d sentences (beam %d)", pair, len(src), ev.beam_size)
        hyps = _translate(model, tokenizer, src, tgt, params, str(paths.clean / pair / "test.src"))
        pair_metrics[pair] = {**score(hyps, ref, tgt), **repetition(hyps)}
        hyp_files[f"{pair}.hyp"] = hyps
        examples[pair] = list(zip(src, ref, hyps))[: ev.examples]
        if src:
            log.info("%s: BLEU %.2f chrF++ %.2f TER %.2f", pair, pair_metrics[pair]["bleu"],
                     pair_metrics[pair]["chrfpp"], pair_metrics[pair]["ter"])
        else:
            log.warning("%s: empty test split (%s): %s", pair, paths.clean / pair / "test.src", NOT_SCORED)

    for ext in ev.external:
        src, ref = _external(ext, params)
        hyps = _translate(model, tokenizer, src, ext.tgt, params, ext.src_path or f"{ext.sacrebleu} ({ext.tgt})")
        external[ext.name] = {**score(hyps, ref, ext.tgt), **repetition(hyps), "tgt": ext.tgt}
        hyp_files[f"external.{ext.name}.hyp"] = hyps

    macro = macro_average(pair_metrics)
    settings = {"beam_size": ev.beam_size, "length_penalty": ev.length_penalty,
                "max_length_ratio": ev.max_length_ratio, "max_run": ev.max_run}
    full = {**pair_metrics, "macro": macro}
    if external:
        full["external"] = external

    with atomic_dir(paths.eval) as out:
        for name, hyps in hyp_files.items():
            write_text(out / name, "".join(h + "\n" for h in hyps))
        write_json(out / "metrics.json", full)
        images = [ADAPT_CURVE]
        # The trainer writes its curve as CSV (DVC plots); the report and the release get a picture of it.
        if plot_learning_curve(paths.plots("train"), out / "learning_curve.png"):
            images.insert(0, ("Training curve", "learning_curve.png"))
        write_text(out / "report.md",
                   render_report(pair_metrics, macro, examples, images, external, settings))
    write_json(paths.metrics("eval"), headline(macro))
    return full


if __name__ == "__main__":
    stage_main("evaluate", run)
