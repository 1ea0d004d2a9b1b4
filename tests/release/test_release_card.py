"""MODEL_CARD.md in the Hugging Face model-card layout: YAML metadata a hub (or yaml.safe_load) reads,
the sections people look for, and limitations measured on the model's own test outputs."""
from __future__ import annotations

import re

import pytest
import yaml

from babelflow.io import read_json, write_json, write_text
from babelflow.release import ReleaseInputs, build_release, render_model_card

SECTIONS = ["## Model description", "## How to use", "## Intended use", "## Training data",
            "## Skipped inputs", "## Training procedure", "## Evaluation", "## Example translations",
            "## Adaptation to held-out languages",
            "## Limitations", "## Files and integrity"]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n"), card[:80]
    block = card[4:].split("\n---\n", 1)[0]
    meta = yaml.safe_load(block)
    assert isinstance(meta, dict)
    return meta


def section(card: str, title: str) -> str:
    return card.split(f"\n{title}", 1)[1].split("\n## ", 1)[0]


def test_front_matter_is_hugging_face_metadata(release_dir):
    card = (release_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["language"] == ["en", "de", "fr"]
    assert meta["license"] == "other"  # the default: the training data decides, not babelflow
    assert {"translation", "babelflow", "transformer"} <= set(meta["tags"])
    assert meta["pipeline_tag"] == "translation"
    assert meta["datasets"] == ["toy"]
    assert meta["metrics"] == ["bleu", "chrf", "ter"]
    [entry] = meta["model-index"]
    assert entry["name"] == "toy-model"
    metrics = read_json(release_dir / "metrics.json")["eval"]
    results = {r["dataset"]["config"]: r for r in entry["results"]}
    assert sorted(results) == ["en-de", "en-fr"]
    for pair, r in results.items():
        assert r["task"] == {"type": "translation", "name": f"Translation {pair}"}
        assert r["dataset"]["type"] == "toy" and r["dataset"]["split"] == "test"
        values = {m["type"]: m for m in r["metrics"]}
        assert sorted(values) == ["bleu", "chrf", "ter"]
        assert values["bleu"]["value"] == pytest.approx(metrics[pair]["bleu"], abs=0.01)
        assert values["chrf"]["name"].startswith("chrF++")


def test_front_matter_languages_are_iso_codes_and_license_is_a_knob():
    params = {"languages": {"source": "en", "targets": ["pt_BR", "sr@latin", "pt"], "heldout": ["ga"]},
              "release": {"name": "m", "version": "0.1.0", "license": "apache-2.0"},
              "collect": {"sources": [{"type": "gettext", "name": "gettext"}]}}
    meta = front_matter(render_model_card(params, None, None, False, None, None, None, None))
    assert meta["language"] == ["en", "pt", "sr"]  # gettext's region and script modifiers dropped
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["gettext"]
    assert "model-index" not in meta  # nothing measured, nothing claimed


def test_card_has_the_sections_and_no_raw_input_hashes(release_dir, evaluated_project):
    from babelflow.models import load_model

    card = (release_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    positions = [card.find(f"\n{s}") for s in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), dict(zip(SECTIONS, positions))
    n_params = sum(p.numel() for p in load_model(release_dir).parameters())
    assert f"{n_params:,} parameters" in section(card, "## Model description")
    assert "babelflow translate --release" in section(card, "## How to use")
    data = section(card, "## Training data")
    assert "| en-de | toy | 6 |" in data  # per pair: sources, lines collected
    assert "ab" * 32 not in card and "cd" * 32 not in card  # input hashes stay in the manifest
    assert "data/raw/manifest.json" in data
    training = section(card, "## Training procedure")
    assert "steps: 10" in training and "device: cpu" in training
    assert "tok:13a" in section(card, "## Evaluation")


def test_usage_snippet_runs(release_dir):
    card = (release_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    scope: dict = {}
    exec(code.replace('"data/release', f'"{release_dir}'), scope)
    assert isinstance(scope["translations"], list) and len(scope["translations"]) == 1


def card_for_outputs(tmp_path, project_factory, de_hyps: str, fr_hyps: str) -> str:
    """The model card of a release whose en-de and en-fr test outputs are these lines."""
    params = project_factory(tmp_path, with_adapt=False)
    data = tmp_path / "data"
    write_text(data / "eval" / "en-de.hyp", de_hyps)
    write_text(data / "eval" / "en-fr.hyp", fr_hyps)
    sig = {"bleu": "nrefs:1|tok:13a", "chrfpp": "nrefs:1|nw:2", "ter": "nrefs:1"}
    write_json(data / "eval" / "metrics.json", {
        "en-de": {"n": 4, "bleu": 3.2, "chrfpp": 9.5, "ter": 159.5, "signatures": sig},
        "en-fr": {"n": 4, "bleu": 25.0, "chrfpp": 40.0, "ter": 60.0, "signatures": sig},
        "macro": {"pairs": 2, "bleu": 14.1, "chrfpp": 24.75, "ter": 109.75}})
    inputs = ReleaseInputs(train_dir=data / "train", tokenizer_dir=data / "tokenizer",
                           eval_metrics=data / "eval" / "metrics.json", manifest=data / "raw" / "manifest.json",
                           clean_report=data / "clean" / "report.json")
    build_release(data / "release", params.model_dump(mode="json"), inputs)
    return (data / "release" / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_limitations_are_measured_on_the_test_outputs(tmp_path, project_factory):
    # en-de test sources are "a man is riding a bike", "two dogs play in the snow", ...
    card = card_for_outputs(tmp_path, project_factory, "ein mann mann mann mann fährt\n\nthe girl reads a book\neine frau\n",
                            "un homme\ndeux chiens\nla fille \ufffd\nune femme\n")
    limits = section(card, "## Limitations")
    row = next(line for line in limits.splitlines() if line.startswith("| en-de |"))
    assert row.startswith("| en-de | 4 | 3.20 | 25.0 % | 25.0 % | 25.0 % | 0.0 % |"), row
    assert "1 of 4 en-de outputs (25.0 %) repeat one word 4 or more times in a row" in limits
    assert "1 of 4 en-fr outputs (25.0 %) contain U+FFFD" in limits
    assert "BLEU below 10 on en-de (3.20)" in limits and "en-fr (25.00)" not in limits


def test_card_shows_the_runs_own_example_translations(release_dir, evaluated_project):
    """The card shows real outputs of this model: the first test lines of each pair, as evaluate's
    report does (examples: 2 in the tiny project)."""
    root, params, _ = evaluated_project
    card = (release_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    examples = section(card, "## Example translations")
    from babelflow.report import _cell

    for tgt in params.languages.targets:
        pair = params.languages.pair(tgt)
        clean = root / "data" / "clean" / pair
        src, ref = ((clean / f"test.{side}").read_text(encoding="utf-8").splitlines() for side in ("src", "tgt"))
        hyp = (root / "data" / "eval" / f"{pair}.hyp").read_text(encoding="utf-8").splitlines()
        block = examples.split(f"### {pair}\n", 1)[1].split("\n\n", 1)[0].strip()  # the table after the heading
        rows = block.splitlines()[2:]
        assert rows == [f"| {_cell(s)} | {_cell(r)} | {_cell(h)} |" for s, r, h in
                        list(zip(src, ref, hyp))[: params.evaluate.examples]], block
