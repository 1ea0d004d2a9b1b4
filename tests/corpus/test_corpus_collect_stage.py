from __future__ import annotations

from pathlib import Path

import pytest

from babelflow.config import parse_params
from babelflow.corpus.split import split_key
from babelflow.errors import InputError
from babelflow.io import read_json
from tasks._common import Paths
from tasks.collect import run


def _head(src: Path, dst: Path, n: int) -> None:
    lines = src.read_text(encoding="utf-8").split("\n")[:n]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _params(sources, targets, heldout=(), **collect):
    return parse_params({
        "languages": {"source": "en", "targets": list(targets), "heldout": list(heldout)},
        "collect": {"sources": sources, "split": {"dev": 0.05, "test": 0.05}, **collect},
        "adapt": {"enabled": bool(heldout)},  # adapt needs a held-out language
    })


@pytest.fixture()
def corpus(tmp_path, multi30k_dir):
    m = tmp_path / "m30k"
    m.mkdir()
    for lang in ("en", "de", "fr", "cs"):
        _head(multi30k_dir / f"train.{lang}", m / f"train.{lang}", 3000)
    # A second source with its own explicit test split: its test sentences must leave every train.
    (tmp_path / "extra").mkdir()
    en = (m / "train.en").read_text(encoding="utf-8").split("\n")
    (tmp_path / "extra" / "test.tsv").write_text(
        "".join(f"{en[i]}\tgermanish {i}\n" for i in range(0, 200, 2)), encoding="utf-8")
    (tmp_path / "extra" / "train.tsv").write_text(
        "".join(f"{en[i]}\tgermanish {i}\n" for i in range(1, 400, 2)) + f"{en[1]}\tgermanish 1\n",
        encoding="utf-8")
    return tmp_path


def test_collect_stage_outputs_manifest_and_no_leakage(corpus):
    sources = [
        {"type": "aligned", "name": "multi30k", "path": str(corpus / "m30k"), "licence": "CC-BY-4.0"},
        {"type": "aligned", "name": "extra", "format": "tsv", "path": str(corpus / "extra"), "lang": "de",
         "splits": {"train": "train.tsv", "test": "test.tsv"}},
    ]
    params = _params(sources, ["de", "fr"], ["cs"], max_pairs=2000)
    root = corpus / "proj"
    metrics = run(params, Paths(root))
    raw = root / "data" / "raw"
    files = {}
    for pair in ("en-de", "en-fr", "en-cs"):
        for split in ("train", "dev", "test"):
            s = (raw / pair / f"{split}.src").read_text(encoding="utf-8").split("\n")[:-1]
            t = (raw / pair / f"{split}.tgt").read_text(encoding="utf-8").split("\n")[:-1]
            assert len(s) == len(t) == metrics["pairs"][pair][split]
            assert all("\t" not in x for x in s + t)
            files[pair, split] = s
        assert len(files[pair, "train"]) <= 2000
    held = {split_key(x) for (pair, split), xs in files.items() if split != "train" for x in xs}
    for pair in ("en-de", "en-fr", "en-cs"):
        assert not held & {split_key(x) for x in files[pair, "train"]}
    # Multi-way: the same English sentence lands in the same split for every language.
    assert set(files["en-fr", "test"]) == set(files["en-cs", "test"])
    assert files["en-fr", "dev"] == files["en-cs", "dev"]

    manifest = read_json(raw / "manifest.json")
    assert manifest["max_pairs"] == 2000 and manifest["pairs"] == metrics["pairs"]
    for inp in manifest["inputs"]:
        assert inp["read"] == inp["kept"] + sum(inp["dropped"].values())
        assert len(inp["sha256"]) == 64
    extra_train = [i for i in manifest["inputs"] if i["path"].endswith("train.tsv")][0]
    assert extra_train["dropped"]["duplicate"] == 1
    m30k_de = [i for i in manifest["inputs"] if i["path"].endswith("m30k/train.de")][0]
    # 100 explicit test keys, ~10% of which the hash split already put in dev/test.
    assert m30k_de["dropped"]["source_in_dev_or_test"] >= 80 and m30k_de["licence"] == "CC-BY-4.0"
    assert read_json(root / "data" / "metrics" / "collect.json") == metrics


def test_language_without_pairs_is_an_error_and_leaves_no_output(corpus):
    sources = [{"type": "aligned", "name": "multi30k", "path": str(corpus / "m30k")}]
    root = corpus / "proj2"
    with pytest.raises(InputError, match=r"no pairs for language\(s\) \['sv'\].*multi30k"):
        run(_params(sources, ["de", "sv"]), Paths(root))
    assert not (root / "data" / "raw").exists()


def test_assembly_ignores_input_order_and_caps_by_hash():
    import random

    from babelflow.corpus.assemble import assemble
    from babelflow.corpus.records import InputRecord, Pair

    rec = InputRecord("t", "gettext", "x.mo", "de")
    base = [Pair("de", f"Sentence {i}", f"Satz {i}", None, rec) for i in range(300)]
    outs = []
    for seed in (1, 2):
        shuffled = base[:]
        random.Random(seed).shuffle(shuffled)
        out = assemble(shuffled, ["de"], 0.1, 0.1, "s", 50)
        outs.append({s: [(p.src, p.tgt) for p in ps] for s, ps in out["de"].items()})
    assert outs[0] == outs[1] and len(outs[0]["train"]) == 50
    assert rec.dropped["max_pairs_cap"] == 2 * (300 - 50 - len(outs[0]["dev"]) - len(outs[0]["test"]))


def _messy_pairs():
    """Pairs that exercise every decision: duplicates within and across splits and records, explicit
    and hashed splits, train sources that leak into dev/test, two languages."""
    import random

    from babelflow.corpus.records import InputRecord, Pair

    recs = [InputRecord("t", "aligned", f"f{i}", lang) for i, lang in enumerate(["de", "de", "fr"])]
    rnd = random.Random(7)
    pairs = []
    for n in range(3000):
        rec = recs[rnd.randrange(3)]
        i = rnd.randrange(900)  # ~3 candidates per sentence: many exact duplicates
        split = rnd.choice([None] * 8 + ["dev", "test"])
        pairs.append(Pair(rec.lang, f"Sentence {i}", f"Satz {i % 700}", split, rec))
        rec.read += 1
    return pairs, recs


@pytest.mark.parametrize("max_pairs", [None, 150])
def test_spilled_runs_make_the_same_splits_and_counts_as_memory(max_pairs):
    from babelflow.corpus.assemble import assemble

    results = []
    for run_pairs in (10**9, 37):  # all in memory, then ~80 sorted runs merged
        pairs, recs = _messy_pairs()
        out = assemble(pairs, ["de", "fr"], 0.1, 0.1, "s", max_pairs, run_pairs=run_pairs)
        results.append(({lang: {s: [(p.src, p.tgt, p.record.path) for p in ps] for s, ps in splits.items()}
                         for lang, splits in out.items()},
                        [(r.kept, dict(r.dropped)) for r in recs]))
    assert results[0] == results[1]
    splits, counts = results[0]
    dropped = [d for _, d in counts]
    assert all(d.get("duplicate") for d in dropped) and any(d.get("source_in_dev_or_test") for d in dropped)
    assert (max_pairs is None) != any(d.get("max_pairs_cap") for d in dropped)
    train = splits["de"]["train"]
    assert train == sorted(train, key=lambda t: (__import__("hashlib").sha256(t[0].encode()).digest(), t[0], t[1]))
    assert len({t[:2] for t in train}) == len(train)


def test_a_file_that_fails_half_way_under_skip_loses_its_spilled_pairs(tmp_path):
    """on_error: skip drops a truncated file's pairs even after some were spilled to disk."""
    import gzip

    from babelflow.corpus.aligned import read_tsv
    from babelflow.corpus.assemble import PairSink

    good = tmp_path / "good.tsv"
    good.write_text("".join(f"Good {i}\tGut {i}\n" for i in range(50)), encoding="utf-8")
    bad = tmp_path / "bad.tsv.gz"
    bad.write_bytes(gzip.compress("".join(f"Bad {i}\tSchlecht {i}\n" for i in range(5000)).encode())[:-200])
    with PairSink(["de"], 0.0, 0.0, "s", tmp_path, run_pairs=10) as sink:
        _, good_recs = read_tsv(good, "en", ["de"], "de", False, None, "skip", "t", None, out=sink)
        _, bad_recs = read_tsv(bad, "en", ["de"], "de", False, None, "skip", "t", None, out=sink)
        train = [p.src for p in sink.finish(None)["de"]["train"]]
    assert sorted(train) == sorted(f"Good {i}" for i in range(50))
    bad_de = [r for r in bad_recs if r.lang == "de"][0]
    assert bad_de.kept == 0 and bad_de.dropped["file_error"] == bad_de.read > 1000
    assert not list(tmp_path.glob(".collect-runs-*"))  # the runs are removed


def test_collect_stage_holds_a_bounded_number_of_pairs(tmp_path, monkeypatch):
    """Collect used to hold every pair until it sorted them (~0.65 KB a pair: 6.5 GB at 10 M). Its
    Python heap must not grow with the corpus beyond the spill buffer (tracemalloc: deterministic,
    unlike RSS)."""
    import tracemalloc

    from babelflow.corpus import assemble as assemble_mod

    monkeypatch.setattr(assemble_mod, "RUN_PAIRS", 2000)
    n = 60_000
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.en").write_text("".join(f"This is the source sentence number {i}\n" for i in range(n)))
    (tmp_path / "c" / "train.de").write_text("".join(f"Das ist der Zielsatz Nummer {i}\n" for i in range(n)))
    params = parse_params({"languages": {"source": "en", "targets": ["de"], "heldout": []},
                           "adapt": {"enabled": False},
                           "collect": {"sources": [{"type": "aligned", "name": "c", "path": str(tmp_path / "c")}],
                                       "split": {"dev": 0.002, "test": 0.002}}})
    tracemalloc.start()
    try:
        metrics = run(params, Paths(tmp_path / "proj"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(metrics["total"].values()) == n
    assert peak < 8e6, f"collect held {peak / 1e6:.1f} MB for {n} pairs"  # all pairs in memory: ~25 MB
    assert sorted(p.name for p in (tmp_path / "proj" / "data").iterdir()) == ["metrics", "raw"]
    assert sorted(p.name for p in (tmp_path / "proj" / "data" / "raw").iterdir()) == ["en-de", "manifest.json"]
