"""bench/meta_select.py: variants change only meta-learning, stay inside the matched budget, and the
report shows each init's dev scores (it never reads test)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import meta_select as select

_ROOT = Path(__file__).resolve().parents[2]


def test_fomaml_counts_the_query_batches_it_trains_on():
    reptile = select.variant_params("cpu", [])
    fomaml = select.variant_params("cpu", ["meta.algorithm=fomaml", "meta.meta_steps=90", "meta.inner_steps=10"])
    assert select.meta_padded_tokens(reptile.meta) == 200 * 2 * 5 * 1024
    assert select.meta_padded_tokens(fomaml.meta) == 90 * 2 * (10 * 1024 + 1024)


def test_variant_over_the_matched_budget_is_refused():
    with pytest.raises(SystemExit, match="more than the preset's 2,048,000"):
        select.variant_params("cpu", ["meta.algorithm=fomaml"])  # 100 steps x 11 batches > 100 x 10
    with pytest.raises(SystemExit, match="more than"):
        select.variant_params("cpu", ["meta.meta_steps=201"])


def test_variant_may_not_change_the_adaptation():
    with pytest.raises(SystemExit, match="only meta"):
        select.variant_params("cpu", ["adapt.steps=400"])


META = select.meta_settings(select.variant_params("cpu", []))


def test_record_key_settings_leave_out_checkpointing():
    assert "checkpoint_every" not in META and META["meta_steps"] == 200 and META["inner_steps"] == 5


def _scores(kept: float, last: float) -> select.AtK:
    return select.AtK(select.Spread(kept, 0.5, []), select.Spread(last, 0.25, []), [200, 180])


def _row(name, key, tokens, dev, k500, k2000) -> select.Row:
    return select.Row(name, key, tokens, None, 1, "dev_bleu", dev, {"500": k500, "2000": k2000})


def test_report_lists_every_init_with_its_dev_scores(tmp_path):
    rows = [
        _row("transfer", {"overrides": []}, None, {"de": 12.0, "fr": 17.4}, _scores(4.07, 4.0), _scores(4.25, 4.2)),
        _row("meta", {"overrides": [], "meta": META}, 2_048_000, {"de": 10.0, "fr": 11.7}, _scores(4.3, 4.1),
             _scores(5.2, 5.1)),
        _row("fomaml", {"overrides": ["meta.algorithm=fomaml"], "meta": {**META, "algorithm": "fomaml", "meta_steps": 90}},
             2_027_520, {"de": 9.0, "fr": 10.0}, _scores(6.0, 5.5), _scores(7.0, 6.5)),
    ]
    # A row survives its trip through dev.json.
    from dataclasses import asdict

    from babelflow.io import write_json
    write_json(tmp_path / "dev.json", asdict(rows[2]))
    assert select.Row.load(tmp_path / "dev.json") == rows[2]
    body = select.render("cpu", rows, [500, 2000])
    assert "| cs dev BLEU kept, K=500 | cs dev BLEU kept, K=2000 | cs dev BLEU last step, K=500 |" in body
    assert "| transfer | - | - | 12.00 / 17.40 | 4.07 ± 0.50 | 4.25 ± 0.50 | 4.00 ± 0.25 | 4.20 ± 0.25 |" in body
    assert "| meta | reptile 200 x 2 tasks x 5 inner adam (lr 0.001), outer lr 0.5 | 2,048,000 | 10.00 / 11.70 |" in body
    assert ("| fomaml | fomaml 90 x 2 tasks x 5 inner adam (lr 0.001), outer lr 0.5 | 2,027,520 | 9.00 / 10.00 | "
            "6.00 ± 0.50 | 7.00 ± 0.50 |") in body
    assert "Only the cs dev split is read" in body


def test_scoring_reads_no_test_file():
    source = (_ROOT / "bench" / "meta_select.py").read_text(encoding="utf-8")
    assert "test.src" not in source and "test.tgt" not in source and "score_on_test" not in source


def test_record_key_follows_the_start_weights_and_meta_settings(tmp_path):
    for folder in select.REFS.values():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "model.safetensors").write_bytes(b"weights of " + folder.encode())
    params = select.variant_params("cpu", [])
    variant = select.record_key("v", ["meta.meta_steps=100"], select.variant_params("cpu", ["meta.meta_steps=100"]),
                                [500], tmp_path)
    transfer = select.record_key("transfer", [], params, [500], tmp_path)
    matched = select.record_key("matched", [], params, [500], tmp_path)
    assert variant["meta"]["meta_steps"] == 100 and transfer["meta"] is None
    assert variant["start_sha256"] == transfer["start_sha256"] != matched["start_sha256"]
    (tmp_path / select.REFS["transfer"] / "model.safetensors").write_bytes(b"retrained")  # a new transfer init
    assert select.record_key("transfer", [], params, [500], tmp_path) != transfer
    assert select.record_key("v", ["meta.meta_steps=100"], select.variant_params("cpu", ["meta.meta_steps=100"]),
                             [500], tmp_path) != variant
