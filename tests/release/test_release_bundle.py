"""Evaluate stage outputs, and the release folder: complete, checksummed, byte-identical on rebuild."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from babelflow.errors import IntegrityError
from babelflow.io import read_json
from babelflow.release import ReleaseInputs, build_release, verify_release


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_stage_outputs(evaluated_project):
    root, params, summary = evaluated_project
    ev = root / "data" / "eval"
    metrics = read_json(ev / "metrics.json")
    for pair in ("en-de", "en-fr"):
        hyps = (ev / f"{pair}.hyp").read_text(encoding="utf-8").split("\n")
        assert len(hyps) == 4 + 1 and hyps[-1] == ""  # one line per test sentence
        m = metrics[pair]
        assert m["n"] == 4
        assert set(m["signatures"]) == {"bleu", "chrfpp", "ter", "bleu_lc"}
        assert "tok:13a" in m["signatures"]["bleu"] and "nw:2" in m["signatures"]["chrfpp"]  # chrF++
        assert "case:mixed" in m["signatures"]["bleu"] and "case:lc" in m["signatures"]["bleu_lc"]
    assert metrics["macro"]["pairs"] == 2
    for k in ("bleu", "bleu_lc"):
        assert metrics["macro"][k] == pytest.approx((metrics["en-de"][k] + metrics["en-fr"][k]) / 2)
    assert summary == metrics
    # The headline DVC compares: the macro averages alone, rounded as sacrebleu reports them.
    assert read_json(root / "data" / "metrics" / "eval.json") == {
        k: round(metrics["macro"][k], 1) for k in ("bleu", "chrfpp", "ter")}
    report = (ev / "report.md").read_text(encoding="utf-8")
    assert "| en-de | 4 |" in report and "a man is riding a bike" in report
    assert "](../adapt/curve.png)" in report
    assert "](learning_curve.png)" in report
    png = (ev / "learning_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_learning_curve_png_is_deterministic(evaluated_project, tmp_path):
    from babelflow.report import plot_learning_curve

    root, _, _ = evaluated_project
    plots = root / "data" / "plots" / "train"
    assert plot_learning_curve(plots, tmp_path / "a.png")
    assert plot_learning_curve(plots, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (root / "data" / "eval" / "learning_curve.png").read_bytes()


def test_release_contents_and_checksums(release_dir, evaluated_project):
    root, _, _ = evaluated_project
    names = {p.name for p in release_dir.iterdir()}
    assert names == {"model.safetensors", "model.json", "spm.model", "spm.vocab", "params.yaml",
                     "metrics.json", "MODEL_CARD.md", "curve.png", "learning_curve.png", "SHA256SUMS"}
    for name in ("model.safetensors", "model.json"):
        assert (release_dir / name).read_bytes() == (root / "data" / "train" / name).read_bytes()
    # The training curve travels with the model, not only the adaptation curve.
    drawn = root / "data" / "eval" / "learning_curve.png"
    assert (release_dir / "learning_curve.png").read_bytes() == drawn.read_bytes()
    # The standard tool agrees with our SHA256SUMS, and it covers every other file.
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=release_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = [line.split("  ", 1)[1] for line in (release_dir / "SHA256SUMS").read_text().splitlines()]
    assert listed == sorted(names - {"SHA256SUMS"})
    verify_release(release_dir)

    card = (release_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    for needle in ("# toy-model 1.2.3", "targets: de, fr", "| en-de | 4 |", "tok:13a",
                   "steps: 10", "tokens seen: 1234", "device: cpu", "| 100 | 100 | 1.00 ± 0.25 | 2.50 ± 0.25 | 3.00 ± 0.25 | +0.50 |", "meta-learning helps",
                   "](curve.png)", "](learning_curve.png)", "Intended use"):
        assert needle in card, needle
    assert "wall" not in card
    metrics = read_json(release_dir / "metrics.json")
    assert metrics["eval"]["en-fr"]["n"] == 4 and metrics["adapt"]["languages"]["ga"]["k"]["100"]["k_used"] == 100
    assert "wall_s" not in metrics["adapt"]  # run-to-run noise stays out of the release
    assert "version: 1.2.3" in (release_dir / "params.yaml").read_text()


def test_release_is_byte_identical_when_rebuilt(release_dir, evaluated_project, tmp_path):
    from tasks._common import Paths
    from tasks.release import run

    root, params, _ = evaluated_project
    first = tree_bytes(release_dir)
    run(params, Paths(root))  # in place, as `dvc repro --force` would
    assert tree_bytes(release_dir) == first
    # And from a copy of the inputs at another path: no absolute paths leak into the bytes.
    other = tmp_path / "elsewhere"
    shutil.copytree(root / "data", other / "data", ignore=shutil.ignore_patterns("release"))
    run(params, Paths(other))
    assert tree_bytes(other / "data" / "release") == first


def test_release_without_adapt_says_so(tmp_path, project_factory):
    params = project_factory(tmp_path, with_adapt=False)
    data = tmp_path / "data"
    inputs = ReleaseInputs(train_dir=data / "train", tokenizer_dir=data / "tokenizer",
                           eval_metrics=data / "eval" / "metrics.json", adapt_dir=data / "adapt",
                           manifest=data / "raw" / "manifest.json")
    files = build_release(data / "release", params.model_dump(mode="json"), inputs)
    assert "curve.png" not in files and "MODEL_CARD.md" in files
    card = (data / "release" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "adapt stage did not run" in card
    assert "No evaluation metrics" in card
    assert json.loads((data / "release" / "metrics.json").read_text()) == {"adapt": None, "eval": None}
    verify_release(data / "release")


def test_release_needs_the_model(tmp_path):
    from babelflow.errors import InputError

    inputs = ReleaseInputs(train_dir=tmp_path / "nope", tokenizer_dir=tmp_path / "nope")
    with pytest.raises(InputError, match="model.safetensors"):
        build_release(tmp_path / "release", {}, inputs)
    assert not (tmp_path / "release").exists()


def test_verify_detects_tampering(release_dir, tmp_path):
    copy = tmp_path / "rel"
    shutil.copytree(release_dir, copy)
    (copy / "spm.vocab").write_text("tampered\n")
    with pytest.raises(IntegrityError, match="spm.vocab"):
        verify_release(copy)
    (copy / "spm.vocab").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        verify_release(copy)


def test_card_states_disabled_adaptation():
    from babelflow.release import render_model_card

    card = render_model_card({"release": {"name": "m", "version": "0.1.0"}}, None,
                             {"enabled": False, "note": "adapt.enabled is false", "languages": {}},
                             False, None, None, None, None)
    assert "Adaptation was not run (adapt.enabled: false)" in card
    assert "No data/raw/manifest.json" in card and "training budget unknown" in card


def test_card_states_skipped_meta_learning():
    """meta.enabled false: data/meta is the trained model, so adapt's `meta` column is no meta-learned init."""
    from babelflow.release import render_model_card

    results = {"enabled": True, "languages": {"ga": {"pair": "en-ga", "k": {
        "100": {"k_used": 100, "meta": {"bleu_mean": 1.0, "bleu_std": 0.0}}}}}}
    card = render_model_card({"meta": {"enabled": False}}, None, results, False, None, None, None, None)
    assert "Meta-learning was not run (meta.enabled: false)" in card
    assert "the `meta` init below is a copy of the trained model" in card
    assert "copy of the trained model" not in render_model_card({}, None, results, False, None, None, None, None)


def test_card_says_which_adaptation_weights_were_kept():
    from babelflow.release import render_model_card

    entry = {"bleu_mean": 3.0, "bleu_std": 0.0, "selected_step": [30], "bleu_last": [2.5]}
    results = {"budget": {"steps": 40, "select_every": 10},
               "languages": {"ga": {"pair": "en-ga", "test_sentences": 9, "train_pool": 99, "k": {"100": {
                   "k_used": 100, "scratch": {**entry, "selected_step": [0]}, "transfer": entry,
                   "meta": {**entry, "selected_step": [40]}, "meta_minus_transfer_bleu": 0.0}}}}}
    card = render_model_card({"release": {"name": "m", "version": "0.1.0"}}, None, results,
                             False, None, None, None, None)
    assert "lowest loss on the held-out pair's dev split, checked every 10 steps" in card
    assert "| steps kept (scratch / transfer / meta) |" in card
    assert card.count("| 0 / 30 / 40 |") == 1
    results["budget"]["select_every"] = 0
    for init in ("scratch", "transfer", "meta"):
        del results["languages"]["ga"]["k"]["100"][init]["selected_step"]
    card = render_model_card({"release": {"name": "m", "version": "0.1.0"}}, None, results,
                             False, None, None, None, None)
    assert "steps kept" not in card and "dev split" not in card
