"""The meta and adapt stages end to end on a tiny Multi30k slice: tiny SPM, tiny Transformer."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from babelflow.config import parse_params
from tasks._common import Paths

torch.set_num_threads(1)

PARAMS = {
    "seed": 5,
    "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["cs"]},
    "collect": {"sources": [{"type": "aligned", "name": "m", "path": "corpus"}]},
    "tokenizer": {"vocab_size": 400, "sample_sentences": 2000, "max_placeholders": 2},
    "model": {"arch": "transformer",
              "transformer": {"d_model": 16, "ffn_dim": 32, "heads": 2, "encoder_layers": 1,
                              "decoder_layers": 1, "max_positions": 128}},
    "train": {"max_len": 48, "threads": 1, "device": "cpu"},
    "meta": {"algorithm": "fomaml", "meta_steps": 3, "tasks_per_step": 2, "inner_steps": 1,
             "inner_lr": 0.001, "outer_lr": 0.001, "support_tokens": 200, "query_tokens": 200,
             "checkpoint_every": 2},
    "adapt": {"k": [10, 30], "steps": 2, "max_tokens": 200, "seeds": [1, 2], "eval_sentences": 4},
    "evaluate": {"beam_size": 1, "max_length_ratio": 1.0, "batch_sentences": 4},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, multi30k_dir: Path):
    from babelflow.models import build_model, save_model
    from babelflow.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("metaproj")
    params = parse_params(PARAMS)
    paths = Paths(root)

    def head(name: str, n: int) -> list[str]:
        with open(multi30k_dir / name, encoding="utf-8") as fh:
            return [next(fh).rstrip("\n") for _ in range(n)]

    texts = {"en": head("train.en", 200)}
    for lang in ("de", "fr", "cs"):
        folder = paths.clean / f"en-{lang}"
        folder.mkdir(parents=True)
        tgt = head(f"train.{lang}", 200)
        texts[lang] = tgt
        for split, src_lines, tgt_lines in (("train", texts["en"], tgt),
                                            ("dev", head("val.en", 6), head(f"val.{lang}", 6)),
                                            ("test", head("test_2016_flickr.en", 4),
                                             head(f"test_2016_flickr.{lang}", 4))):
            (folder / f"{split}.src").write_text("\n".join(src_lines) + "\n", encoding="utf-8")
            (folder / f"{split}.tgt").write_text("\n".join(tgt_lines) + "\n", encoding="utf-8")
    train_tokenizer(texts, paths.tokenizer, params.tokenizer, ["de", "fr", "cs"], params.seed)
    from tasks import encode

    encode.run(params, paths)
    from babelflow.tokenizer import Tokenizer

    torch.manual_seed(0)
    save_model(build_model(params.model, Tokenizer(paths.tokenizer / "spm.model").vocab_size), paths.train)
    return params, paths


def test_meta_stage_writes_a_loadable_meta_init_and_resumes(project):
    from babelflow.models import load_model
    from tasks import meta

    params, paths = project
    metrics = meta.run(params, paths)
    assert metrics["enabled"] and metrics["steps"] == 3 and metrics["resumed_from"] == 0
    assert set(metrics["pairs"]) == {"en-de", "en-fr"}  # the held-out pair is never meta-trained on
    assert json.loads(paths.metrics("meta").read_text())["algorithm"] == "fomaml"
    meta_model, train_model = load_model(paths.meta), load_model(paths.train)
    diff = [not torch.equal(a, b) for a, b in zip(meta_model.state_dict().values(),
                                                   train_model.state_dict().values())]
    assert any(diff)
    before = {p.name: p.read_bytes() for p in paths.meta.iterdir()}
    again = meta.run(params, paths)  # finished checkpoint present: resumes at the end, same weights
    assert again["resumed_from"] == 3
    assert {p.name: p.read_bytes() for p in paths.meta.iterdir()} == before


def test_meta_stage_disabled_copies_the_train_model(project, tmp_path):
    import shutil

    from tasks import meta

    params, paths = project
    other = Paths(tmp_path)
    for name in ("clean", "tokenizer", "train"):
        shutil.copytree(paths.root / "data" / name, other.root / "data" / name)
    off = parse_params({**PARAMS, "meta": {**PARAMS["meta"], "enabled": False}})
    metrics = meta.run(off, other)
    assert metrics["enabled"] is False and "copy" in metrics["note"]
    assert (other.meta / "model.safetensors").read_bytes() == (other.train / "model.safetensors").read_bytes()


def test_adapt_stage_runs_all_three_inits(project):
    from tasks import adapt, meta

    params, paths = project
    if not (paths.meta / "model.json").is_file():
        meta.run(params, paths)
    returned = adapt.run(params, paths)
    results = json.loads((paths.adapt / "results.json").read_text())
    assert returned == results
    # The headline DVC compares: test BLEU of the transfer and meta inits per K.
    headline = json.loads(paths.metrics("adapt").read_text())
    cs = results["languages"]["cs"]
    assert cs["pair"] == "en-cs" and cs["test_sentences"] == 4
    for k in ("10", "30"):
        row = cs["k"][k]
        assert row["k_used"] == int(k)
        for init in ("scratch", "transfer", "meta"):
            assert len(row[init]["bleu"]) == 2 and len(row[init]["chrfpp"]) == 2
            assert row[init]["bleu_std"] >= 0
            if init != "scratch":
                assert headline[init][f"k{k}"] == round(row[init]["bleu_mean"], 1)
        assert row["meta_minus_transfer_bleu"] == pytest.approx(
            row["meta"]["bleu_mean"] - row["transfer"]["bleu_mean"], abs=1e-3)
    assert "BLEU" in results["signatures"]["cs"]["bleu"] or "nrefs" in results["signatures"]["cs"]["bleu"]
    assert len(results["summary"]) == 2
    assert (paths.adapt / "curve.png").read_bytes()[:4] == b"\x89PNG"
    with open(paths.plots("adapt") / "curve.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["k"] for r in rows] == ["10", "30"]
    assert set(rows[0]) == {"k", "scratch", "transfer", "meta"}
    # CPU runs are reproducible: the stage's folder is byte-identical on a rerun.
    first = {p.name: p.read_bytes() for p in paths.adapt.iterdir()}
    adapt.run(params, paths)
    assert {p.name: p.read_bytes() for p in paths.adapt.iterdir()} == first


@pytest.mark.parametrize("metric", ["dev_loss", "dev_bleu"])
def test_adapt_stage_selects_on_the_heldout_dev_split_and_reports_the_last_step(project, tmp_path, metric):
    from babelflow.errors import InputError
    from babelflow.adapt import adapt_experiment
    from babelflow.tokenizer import Tokenizer
    from tasks import adapt, meta

    params, paths = project
    if not (paths.meta / "model.json").is_file():
        meta.run(params, paths)
    raw = {**PARAMS, "adapt": {**PARAMS["adapt"], "k": [30], "steps": 4, "select_every": 2, "seeds": [1],
                               "select_metric": metric, "select_sentences": 5}}
    selecting = parse_params(raw)
    adapt.run(selecting, paths)
    results = json.loads((paths.adapt / "results.json").read_text())
    budget = results["budget"]
    assert (budget["select_every"], budget["select_metric"], budget["select_sentences"]) == (2, metric, 5)
    row = results["languages"]["cs"]["k"]["30"]
    for init in ("scratch", "transfer", "meta"):
        entry = row[init]
        assert len(entry["selected_step"]) == 1 and entry["selected_step"][0] in (0, 2, 4)
        assert len(entry["bleu_last"]) == 1
        # The dev score of the kept weights, as the metric reads: the best of the checks.
        kept = entry[f"{metric}_kept"]
        assert len(kept) == 1 and entry[f"{metric}_kept_mean"] == round(kept[0], 4)
        assert kept[0] > 0 if metric == "dev_loss" else kept[0] >= 0
        assert ("dev_bleu_kept" if metric == "dev_loss" else "dev_loss_kept") not in entry
        if entry["selected_step"][0] == 4:  # the last weights were kept: the same score twice
            assert entry["bleu"] == entry["bleu_last"]

    # Selection needs the held-out pair's dev split; without one the error names the file.
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "en-cs").mkdir()
    for name in ("train.src", "train.tgt", "test.src", "test.tgt"):
        (clean / "en-cs" / name).write_bytes((paths.clean / "en-cs" / name).read_bytes())
    tokenizer = Tokenizer(paths.tokenizer / "spm.model")
    with pytest.raises(InputError, match=r"en-cs/dev\.src"):
        adapt_experiment(selecting, clean, tokenizer, paths.train, paths.meta)


def test_adapt_run_cache_redoes_only_the_runs_whose_inputs_changed(project, tmp_path):
    import shutil

    from babelflow.adapt import adapt_experiment
    from babelflow.models import build_model, save_model
    from babelflow.tokenizer import Tokenizer
    from tasks import meta

    params, paths = project
    if not (paths.meta / "model.json").is_file():
        meta.run(params, paths)
    raw = {**PARAMS, "adapt": {**PARAMS["adapt"], "k": [10], "steps": 2, "select_every": 1, "seeds": [1]}}
    selecting = parse_params(raw)
    tokenizer = Tokenizer(paths.tokenizer / "spm.model")
    meta_dir = tmp_path / "meta"
    shutil.copytree(paths.meta, meta_dir)
    cache = tmp_path / "runs"

    def run(p):
        lines: list[str] = []
        out = adapt_experiment(p, paths.clean, tokenizer, paths.train, meta_dir, lines.append, run_cache=cache)
        out.pop("wall_s")
        return out, [line for line in lines if line.startswith("adapt ")]

    first, lines = run(selecting)
    assert len(lines) == 3 and not any("[cached]" in line for line in lines) and first.pop("runs_reused") == 0
    again, lines = run(selecting)
    assert again.pop("runs_reused") == 3
    assert again == first and all(line.endswith("[cached]") for line in lines)
    # New meta weights: only the meta run is redone; another seed: only that seed's runs.
    torch.manual_seed(123)
    save_model(build_model(params.model, tokenizer.vocab_size), meta_dir)
    _, lines = run(selecting)
    assert [("[cached]" in line, " meta " in line) for line in lines] == [(True, False), (True, False), (False, True)]
    _, lines = run(parse_params({**raw, "adapt": {**raw["adapt"], "seeds": [1, 2]}}))
    assert sum("[cached]" not in line for line in lines) == 3 and all(
        "seed=2" in line for line in lines if "[cached]" not in line)


def test_adapt_run_cache_key_changes_with_the_code(project, tmp_path, monkeypatch):
    """An edited trainer (here: loss.py in a copy of the package) must not be served an old run's scores."""
    import shutil

    from babelflow import checkpoint
    from babelflow.adapt import run_key
    from babelflow.tokenizer import Tokenizer
    from tasks import meta

    params, paths = project
    if not (paths.meta / "model.json").is_file():
        meta.run(params, paths)
    tokenizer = Tokenizer(paths.tokenizer / "spm.model")
    before = run_key(params, paths.meta, tokenizer, 10, 1, "cs", paths.clean)
    copy = tmp_path / "babelflow"
    shutil.copytree(checkpoint.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert run_key(params, paths.meta, tokenizer, 10, 1, "cs", paths.clean) == before
    monkeypatch.setattr(checkpoint.code_fingerprint, "__defaults__", (copy,))
    assert run_key(params, paths.meta, tokenizer, 10, 1, "cs", paths.clean) == before  # same code, same key
    loss = copy / "loss.py"
    loss.write_text(loss.read_text(encoding="utf-8").replace("label_smoothing", "label_smoothing ", 1),
                    encoding="utf-8")
    assert run_key(params, paths.meta, tokenizer, 10, 1, "cs", paths.clean) != before
