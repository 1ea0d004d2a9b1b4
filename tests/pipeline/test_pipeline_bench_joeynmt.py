"""bench/joeynmt_budget.py gives both toolkits the same budget: babelflow's params and JoeyNMT 2.3.0's
config say the same updates, batch, schedule, shape and decoding (JoeyNMT itself is not needed here)."""
from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import yaml

from bench import joeynmt_budget as jb
from tests.pipeline.tiny_project import tokenized_project as tiny_project

ROOT = Path(__file__).resolve().parents[2]


def args_for(project: Path, tmp_path: Path) -> Namespace:
    return Namespace(project=str(project), recipe=str(ROOT / "recipes" / "multi30k-ende.yaml"), pair="en-de",
                     updates=1000, max_tokens=4096, beam=5, joeynmt_python="-", work=str(tmp_path / "work"))


def test_same_budget_both_sides(tmp_path):
    args = args_for(tiny_project(tmp_path, dev_lines=300), tmp_path)
    work = tmp_path / "work" / "joeynmt"
    cfg = yaml.safe_load(jb.joeynmt_config(args, work, 0.005, 300, "train").read_text(encoding="utf-8"))
    tr = cfg["training"]
    # JoeyNMT 2.3.0 reads `updates` (a `max_updates` key is ignored and it trains for `epochs`).
    assert tr["updates"] == 1000 and "max_updates" not in tr and tr["validation_freq"] == 1000
    assert (tr["batch_size"], tr["batch_type"], tr["normalization"]) == (4096, "token", "tokens")
    assert (tr["learning_rate"], tr["learning_rate_warmup"], tr["scheduling"]) == (0.005, 300, "warmupinversesquareroot")
    assert cfg["data"]["sample_dev_subset"] == jb.DEV_BLEU_SENTENCES and "test" not in cfg["data"]
    enc = cfg["model"]["encoder"]
    assert (enc["num_layers"], enc["hidden_size"], enc["ff_size"], enc["num_heads"], enc["layer_norm"]) == \
        (4, 128, 256, 4, "pre")
    assert cfg["testing"]["beam_size"] == 5 and cfg["testing"]["load_model"].endswith("latest.ckpt")
    # The vocabulary is the SentencePiece model's pieces (tags included), without the controls and unk
    # JoeyNMT adds itself.
    pieces = (work / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert "<2de>" in pieces and not {"<pad>", "<unk>", "<s>", "</s>"} & set(pieces) and len(pieces) == 30 - 4
    assert (work / "data" / "train.en").resolve() == (Path(args.project) / "data/clean/en-de/train.src").resolve()

    params = jb.babelflow_params(args, 0.005, 300, threads=1)
    t = params.train
    assert (t.max_steps, t.lr, t.warmup_steps, t.schedule, t.max_tokens, t.accumulate) == \
        (1000, 0.005, 300, "inverse_sqrt", 4096, 1)
    assert t.average_last == [1] and t.validate_every == 1000 and t.dev_bleu_sentences == jb.DEV_BLEU_SENTENCES
    assert (params.evaluate.beam_size, params.evaluate.length_penalty, params.evaluate.max_run) == (5, 1.0, 0)
    m = params.model.transformer
    assert (m.encoder_layers, m.d_model, m.ffn_dim, m.heads) == (4, 128, 256, 4)


def test_decode_configs_read_the_whole_split(tmp_path):
    args = args_for(tiny_project(tmp_path, dev_lines=300), tmp_path)
    work = tmp_path / "work" / "joeynmt"
    dev = yaml.safe_load(jb.joeynmt_config(args, work, 0.005, 300, "dev").read_text(encoding="utf-8"))
    test = yaml.safe_load(jb.joeynmt_config(args, work, 0.005, 300, "test").read_text(encoding="utf-8"))
    assert "sample_dev_subset" not in dev["data"] and "test" not in dev["data"]
    assert test["data"]["test"].endswith("/test") and "sample_dev_subset" not in test["data"]
    # JoeyNMT's test mode decodes every split its config names: the test decode names test alone, so the
    # dev split (already decoded by the dev phase) is not decoded a second time.
    assert "dev" not in test["data"] and dev["data"]["dev"].endswith("/dev")
    # A dev split smaller than the validation sample is validated whole (JoeyNMT refuses a larger subset).
    small = yaml.safe_load(jb.joeynmt_config(args_for(tiny_project(tmp_path / "s", 30), tmp_path / "s"),
                                             tmp_path / "s" / "w", 0.005, 300, "train").read_text(encoding="utf-8"))
    assert "sample_dev_subset" not in small["data"]
