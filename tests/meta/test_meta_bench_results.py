"""bench/meta_multi30k.py rewrites only its own section of RESULTS.md and judges the goal right."""
from __future__ import annotations

import pytest

from babelflow.errors import ConfigError
from bench import meta_multi30k as bench

DOC = (
    "# Benchmark results\n\nintro\n\n"
    "## Other (issue 5): `bench/x.py`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    f"{bench.SECTION}\n\n_Not measured yet._\n\n"
    "## Decoding (issue 7)\n\nkeep   me\ttoo\n"
)


def test_replace_section_changes_only_its_body():
    out = bench.replace_section(DOC, bench.SECTION, "new table\n| x |\n")
    before, after = DOC.split(bench.SECTION)
    new_before, new_after = out.split(bench.SECTION)
    assert new_before == before
    assert new_after == "\n\nnew table\n| x |\n\n## Decoding (issue 7)\n\nkeep   me\ttoo\n"
    assert "_Not measured yet._" not in out
    # Idempotent: a second run with the same body gives the same bytes.
    assert bench.replace_section(out, bench.SECTION, "new table\n| x |\n") == out


def test_replace_section_as_last_section():
    doc = f"# R\n\n{bench.SECTION}\n\nold\nlines\n"
    assert bench.replace_section(doc, bench.SECTION, "body") == f"# R\n\n{bench.SECTION}\n\nbody\n"


@pytest.mark.parametrize("doc", ["# R\n\n## Something else\n", f"{bench.SECTION}\nx\n{bench.SECTION}\n"])
def test_replace_section_refuses_missing_or_duplicate_heading(doc):
    with pytest.raises(ValueError, match="exactly one"):
        bench.replace_section(doc, bench.SECTION, "body")


def _row(transfer: float, meta: float) -> dict:
    return {"transfer": {"bleu_mean": transfer}, "meta": {"bleu_mean": meta}}


def test_verdict_needs_the_margin_at_every_goal_k():
    met, notes = bench.verdict({"500": _row(10.0, 11.0), "2000": _row(12.0, 13.5), "29000": _row(20, 0)})
    assert met is True and len(notes) == 2
    met, notes = bench.verdict({"500": _row(10.0, 11.5), "2000": _row(12.0, 12.9)})
    assert met is False and "K=2000: meta - transfer = +0.90" in notes[1]
    met, notes = bench.verdict({"500": _row(10.0, 11.0), "2000": _row(4.4553, 5.451)})
    assert met is False and notes[1] == "K=2000: meta - transfer = +0.996 BLEU (< +1)"
    met, notes = bench.verdict({"500": _row(10.0, 12.0)})
    assert met is None and "K=2000 was not run" in notes[0]


def test_verdict_on_the_last_step_reads_the_last_step_scores():
    rows = {k: {"transfer": {"bleu_mean": 10.0, "bleu_last_mean": 10.0},
                "meta": {"bleu_mean": 11.5, "bleu_last_mean": 10.2}} for k in ("500", "2000")}
    assert bench.verdict(rows)[0] is True
    met, notes = bench.verdict(rows, "bleu_last_mean")
    assert met is False and notes[0] == "K=500: meta - transfer = +0.20 BLEU (< +1)"


def test_set_overrides_one_value_and_leaves_the_preset_alone():
    base = bench.preset_params("meta-cpu")
    out = bench.preset_params("meta-cpu", ["meta.meta_steps=300", "meta.algorithm=fomaml", "adapt.seeds=[3]"])
    assert out.meta.meta_steps == 300 and out.meta.algorithm == "fomaml"
    assert out.adapt.seeds == [3] and out.meta.inner_steps == base.meta.inner_steps
    assert base.meta.meta_steps == 200
    with pytest.raises(ConfigError, match="section.key=value"):
        bench.preset_params("meta-cpu", ["meta.meta_steps"])


def _entry(bleu: list[float], chrf: float = 20.0, last: list[float] | None = None, steps=(200, 200)) -> dict:
    last = last or bleu
    mean = sum(bleu) / len(bleu)
    return {"bleu": bleu, "bleu_mean": mean, "bleu_std": 0.1, "chrfpp": [chrf] * len(bleu), "chrfpp_mean": chrf,
            "chrfpp_std": 0.0, "bleu_last": last, "bleu_last_mean": sum(last) / len(last), "bleu_last_std": 0.1,
            "selected_step": list(steps), "dev_bleu_kept_mean": mean + 5, "dev_loss_kept_mean": 4.0 - mean}


@pytest.mark.parametrize("metric,named", [("dev_loss", "dev loss"), ("dev_bleu", "dev BLEU")])
def test_render_names_the_selection_metric_and_judges_both_protocols(metric, named):
    params = bench.preset_params("meta-cpu", [f"adapt.select_metric={metric}"])
    rows = {str(k): {"k_used": k, "scratch": _entry([1.0, 1.2]), "transfer": _entry([3.0, 3.2]),
                     "meta": _entry([3.1, 3.3], last=[4.1, 4.3], steps=(160, 200)),
                     "meta_minus_transfer_bleu": 0.1} for k in (500, 2000, 29000)}
    results = {"languages": {"cs": {"test_sentences": 1000, "k": rows}},
               "signatures": {"cs": {"bleu": "BLEU-SIG", "chrfpp": "CHRF-SIG"}}, "budget": {"device": "cpu"}}
    body = bench.render("cpu", "cmd", bench.MetaRun(
        params, {"tokens_seen": 1000, "parameters": 1000}, {"query_loss_first": 3.8, "query_loss_last": 3.7}, results,
        {"transfer": {"de": 12.0, "fr": 17.0}, "meta": {"de": 11.0, "fr": 16.0}}, 300, {"train": 1}))
    assert f"| K | init | BLEU | chrF++ | BLEU, last step | steps kept | {named} kept | meta - init |" in body
    # One row per K and init: kept and last-step BLEU, the steps kept (meta's first seed at 160) and the
    # kept weights' dev score of the metric that chose them; meta minus the init per seed.
    scratch_dev, meta_dev = ("6.10", "8.20") if metric == "dev_bleu" else ("2.90", "0.80")
    assert (f"| 500 | scratch | 1.10 ± 0.10 | 20.00 ± 0.00 | 1.10 ± 0.10 | 200,200 | {scratch_dev} | "
            "+2.10 [+2.10, +2.10], 2/2 |") in body
    assert f"| 500 | meta | 3.20 ± 0.10 | 20.00 ± 0.00 | 4.20 ± 0.10 | 160,200 | {meta_dev} | - |" in body
    assert "weights kept: **not met**. K=500: meta - transfer = +0.10 BLEU (< +1)" in body
    assert "weights at the last step: **met**." in body


def test_matched_transfer_sees_as_many_padded_tokens_as_transfer_plus_meta():
    params = bench.preset_params("meta-cpu", ["meta.meta_steps=100", "meta.inner_steps=10"])
    # 100 meta-steps x 2 tasks x 10 inner steps x 1024 tokens = 2,048,000 = 1000 more 2048-token steps.
    assert bench.meta_padded_tokens(params.meta) == 2_048_000
    assert bench.matched_train_steps(params) == 2000
    odd = bench.preset_params("meta-cpu", ["meta.meta_steps=3", "meta.inner_steps=3", "meta.support_tokens=1000"])
    assert bench.matched_train_steps(odd) == 1000 + 9  # 18,000 tokens = 8.8 steps: rounded up


def test_render_compares_meta_with_the_budget_matched_transfer():
    params = bench.preset_params("meta-cpu", ["adapt.select_metric=dev_bleu"])
    rows = {str(k): {"k_used": k, "scratch": _entry([1.0, 1.2]), "transfer": _entry([3.0, 3.2]),
                     "meta": _entry([4.4, 4.6], last=[4.5, 4.7]), "meta_minus_transfer_bleu": 1.4}
            for k in (500, 2000)}
    matched_rows = {"500": {"transfer": _entry([3.9, 4.1], last=[3.9, 4.1])},
                    "2000": {"transfer": _entry([3.3, 3.5], last=[3.6, 3.8])}}
    results = {"languages": {"cs": {"test_sentences": 1000, "k": rows}}, "runs_reused": 4,
               "signatures": {"cs": {"bleu": "B", "chrfpp": "C"}}, "budget": {"device": "cpu"}}
    body = bench.render("cpu", "cmd", bench.MetaRun(
        params, {"tokens_seen": 1, "parameters": 1}, {"query_loss_first": 1, "query_loss_last": 1}, results,
        {"transfer": {"de": 1.0}, "meta": {"de": 1.0}, "matched": {"de": 2.5}}, 300, {"adapt": 9},
        bench.Matched(2000, {"languages": {"cs": {"k": matched_rows}}, "runs_reused": 2})))
    assert "wall time adapt 9 s (6 fine-tuning runs reused from an earlier run with the same inputs)" in body
    assert "continued to 2000 steps (4,096,000 padded tokens" in body and "en->de 2.50" in body
    # Per seed: meta [4.4, 4.6] against transfer [3.0, 3.2] is +1.4 on both seeds (no spread).
    assert "| 500 | transfer | 3.10 ± 0.10 | 20.00 ± 0.00 | 3.10 ± 0.10 | 200,200 | 8.10 | +1.40 [+1.40, +1.40], 2/2 |" in body
    assert ("| 500 | matched transfer | 4.00 ± 0.10 | 20.00 ± 0.00 | 4.00 ± 0.10 | 200,200 | 9.00 | "
            "+0.50 [+0.50, +0.50], 2/2 |") in body
    assert "| 2000 | matched transfer | 3.40 ± 0.10 | 20.00 ± 0.00 | 3.70 ± 0.10 |" in body
    # Meta beats the short transfer by 1.4 at both K, the matched one only at K = 2000.
    assert "Goal meta >= transfer + 1 BLEU at K = 500 and 2000, weights kept: **met**" in body
    assert ("Goal meta >= matched + 1 BLEU at K = 500 and 2000, weights kept: **not met**. K=500: meta - matched = "
            "+0.50 BLEU (< +1); K=2000: meta - matched = +1.10 BLEU (≥ +1).") in body
    assert "weights at the last step: **not met**. K=500: meta - matched = +0.60 BLEU (< +1); K=2000: meta - matched = +0.90" in body


def test_paired_difference_has_a_t_interval_and_counts_wins():
    # d = [1, 2, 3]: mean 2, sd 1, half-width t(2) 4.303 / sqrt(3) = 2.484
    assert bench.paired([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == "+2.00 [-0.48, +4.48], 3/3"
    assert bench.paired([1.0, 1.0], [2.0, 0.5]) == "-0.25 [-9.78, +9.28], 1/2"
    assert bench.paired([1.5], [1.0]) == "+0.50 (one seed)"


def test_render_without_a_scratch_init():
    # adapt.inits=[transfer, meta]: the issue's comparison is meta vs (matched) transfer; a scratch row
    # costs a fine-tuning run per K and seed, so a run may leave it out and the table must still render.
    params = bench.preset_params("meta-cpu", ["adapt.inits=[transfer,meta]"])
    rows = {str(k): {"k_used": k, "transfer": _entry([3.0, 3.2]), "meta": _entry([4.4, 4.6])} for k in (500, 2000)}
    results = {"languages": {"cs": {"test_sentences": 1000, "k": rows}},
               "signatures": {"cs": {"bleu": "B", "chrfpp": "C"}}, "budget": {"device": "cpu"}}
    body = bench.render("cpu", "cmd", bench.MetaRun(
        params, {"tokens_seen": 1, "parameters": 1}, {"query_loss_first": 1, "query_loss_last": 1}, results,
        {"transfer": {"de": 1.0}, "meta": {"de": 1.0}}, 300, {"adapt": 9}))
    assert "| scratch |" not in body and "Transfer - scratch" not in body and "no scratch init" in body
    assert "| 500 | transfer | 3.10 ± 0.10 |" in body
    assert "Goal meta >= transfer + 1 BLEU at K = 500 and 2000, weights kept: **met**" in body
