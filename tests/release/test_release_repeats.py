"""Test outputs that repeat one word 4 or more times in a row: measured by the evaluate stage (count and
share per pair and in all, in data/eval/metrics.json) and stated in the model card, with one definition
(babelflow.metrics.repeats_a_word) for both."""
from __future__ import annotations

import pytest

from babelflow.io import read_json
from babelflow.metrics import repeats_a_word
from tests.release.test_release_card import card_for_outputs


@pytest.mark.parametrize("text, expected", [
    ("ein mann mann mann mann fährt", True),
    ("bei bei bei bei", True),
    ("la  la\tla la", True),           # words are what whitespace separates
    ("mann mann mann fährt mann", False),  # three in a row is not four
    ("ha-ha-ha-ha", False),            # one word
    ("a b a b a b a b", False),        # a repeated phrase is not a repeated word
    ("", False),
])
def test_repeats_a_word(text, expected):
    assert repeats_a_word(text) is expected


def test_evaluate_counts_repeating_outputs_per_pair_and_in_all(tiny_project, monkeypatch):
    import tasks.evaluate as evaluate
    from tasks._common import Paths

    root, params = tiny_project
    outputs = {"de": ["ein mann mann mann mann fährt", "zwei hunde", "bei bei bei bei bei", "eine frau"],
               "fr": ["un homme", "deux chiens", "la fille", "une femme"]}
    # The decoder is replaced so the outputs are known: what is under test is the measuring.
    monkeypatch.setattr(evaluate, "_translate", lambda model, tok, sentences, tgt, *a: outputs[tgt])
    evaluate.run(params, Paths(root))
    metrics = read_json(root / "data" / "eval" / "metrics.json")
    assert (metrics["en-de"]["repeats"], metrics["en-de"]["repeats_share"]) == (2, 0.5)
    assert (metrics["en-fr"]["repeats"], metrics["en-fr"]["repeats_share"]) == (0, 0.0)
    assert (metrics["macro"]["repeats"], metrics["macro"]["repeats_share"]) == (2, 0.25)


def test_card_states_the_repeating_outputs_in_all(tmp_path, project_factory):
    card = card_for_outputs(tmp_path, project_factory, "ein mann mann mann mann fährt\nzwei hunde\nbei bei bei bei\neine frau\n",
                            "un homme\ndeux chiens\nla fille\nune femme\n")
    assert "In all, 2 of 8 test outputs (25.0 %) repeat one word 4 or more times in a row." in card
