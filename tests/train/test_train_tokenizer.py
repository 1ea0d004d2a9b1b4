from __future__ import annotations

from babelflow.config import TokenizerConfig
from babelflow.io import sha256_file
from babelflow.specials import EOS_ID, lang_tag
from babelflow.tokenizer import Tokenizer, reuse_or_train_tokenizer, train_tokenizer


def test_training_is_byte_identical(clean_dir, tmp_path):
    texts = {"en": clean_dir / "en-de" / "train.src", "de": clean_dir / "en-de" / "train.tgt",
             "fr": (clean_dir / "en-fr" / "train.tgt").read_text(encoding="utf-8").splitlines()}
    cfg = TokenizerConfig(vocab_size=400, sample_sentences=500, model_type="bpe")
    train_tokenizer(texts, tmp_path / "a", cfg, ["de", "fr"], 5)
    train_tokenizer(texts, tmp_path / "b", cfg, ["de", "fr"], 5)
    assert sha256_file(tmp_path / "a" / "spm.model") == sha256_file(tmp_path / "b" / "spm.model")
    assert (tmp_path / "a" / "spm.vocab").read_bytes() == (tmp_path / "b" / "spm.vocab").read_bytes()


def test_tags_and_placeholders_are_single_pieces(tokenizer):
    symbols = [lang_tag(lang) for lang in ("de", "fr", "ga")] + [f"<ph{i}>" for i in range(10)]
    for sym in symbols:
        pieces = tokenizer.sp.EncodeAsPieces(f"open{sym}file")
        assert sym in pieces and not any("<" in p for p in pieces if p != sym)
    assert (tokenizer.sp.pad_id(), tokenizer.sp.unk_id(), tokenizer.sp.bos_id(), tokenizer.sp.eos_id()) == (0, 1, 2, 3)


def test_placeholder_round_trip(tokenizer):
    src = "save %s to {0} for %(name)s in $HOME"
    tgt = "$HOME %(name)s {0} %s saveen"
    src_ids, tgt_ids = tokenizer.encode_pair(src, tgt, "fr")
    assert src_ids[0] == tokenizer.tag_id("fr") and src_ids[-1] == EOS_ID and tgt_ids[-1] == EOS_ID
    ids, mapping = tokenizer.encode_source(src, "fr")
    assert mapping == ["%s", "{0}", "%(name)s", "$HOME"]
    assert tokenizer.decode(ids, mapping) == src
    assert tokenizer.decode(tgt_ids + [7, 8], mapping) == tgt  # stops at EOS
    assert tokenizer.decode(tokenizer.encode_target("héllo wörld ✓", [])) == "héllo wörld ✓"  # byte fallback


def test_report(tokenizer, clean_dir, tmp_path):
    texts = {"en": ["open the file"], "de": ["fileen theen openen"]}
    report = tokenizer.report(texts)
    assert set(report["languages"]) == {"de", "en"}
    assert report["languages"]["en"]["coverage"] == 1.0
    assert report["languages"]["en"]["avg_pieces_per_sentence"] > 0


def test_reuse_only_when_trained_on_the_same_inputs(clean_dir, tmp_path):
    texts = {"en": clean_dir / "en-de" / "train.src", "de": clean_dir / "en-de" / "train.tgt"}
    cfg = TokenizerConfig(vocab_size=400, sample_sentences=500, model_type="bpe")
    out = tmp_path / "tok"
    _, reused = reuse_or_train_tokenizer(texts, out, cfg, ["de"], 5)
    first = sha256_file(out / "spm.model")
    assert not reused
    assert reuse_or_train_tokenizer(texts, out, cfg, ["de"], 5)[1]

    # Another vocabulary size, another seed or other texts: the stale model is retrained, not reused.
    assert not reuse_or_train_tokenizer(texts, out, cfg.model_copy(update={"vocab_size": 300}), ["de"], 5)[1]
    assert sha256_file(out / "spm.model") != first
    assert not reuse_or_train_tokenizer(texts, out, cfg, ["de"], 6)[1]
    other = dict(texts, de=(clean_dir / "en-de" / "train.tgt").read_text(encoding="utf-8").splitlines()[:-1])
    assert not reuse_or_train_tokenizer(other, out, cfg, ["de"], 5)[1]

    # A model with no record of its inputs (left by an older run) is not trusted either.
    (out / "spm.inputs.sha256").unlink()
    tok, reused = reuse_or_train_tokenizer(texts, out, cfg, ["de"], 5)
    assert not reused and sha256_file(out / "spm.model") == first and isinstance(tok, Tokenizer)


def test_streamed_files_train_what_the_same_lines_in_memory_train(clean_dir, tmp_path):
    """English read from two pair files with repeats and blank lines, counted once, streamed twice:
    the same model as the deduplicated lines handed over as a list."""
    de = (clean_dir / "en-de" / "train.src").read_text(encoding="utf-8").splitlines()
    fr = (clean_dir / "en-fr" / "train.src").read_text(encoding="utf-8").splitlines()
    a, b = tmp_path / "a.src", tmp_path / "b.src"
    a.write_text("\n".join(de[:300] + ["", "  "] + de[:50] + de[300:]) + "\n", encoding="utf-8")
    b.write_text("\n".join(fr + de[100:200]) + "\n", encoding="utf-8")
    distinct = list(dict.fromkeys(t for t in de[:300] + de[:50] + de[300:] + fr + de[100:200] if t.strip()))
    tgt = clean_dir / "en-de" / "train.tgt"
    cfg = TokenizerConfig(vocab_size=400, sample_sentences=700, model_type="bpe")
    rep_files = train_tokenizer({"en": [a, b], "de": tgt}, tmp_path / "files", cfg, ["de"], 5, distinct=["en"])
    rep_list = train_tokenizer({"en": distinct, "de": tgt}, tmp_path / "list", cfg, ["de"], 5)
    assert (tmp_path / "files" / "spm.model").read_bytes() == (tmp_path / "list" / "spm.model").read_bytes()
    assert rep_files == rep_list


def test_tokenize_stage_holds_the_sample_not_the_corpus(tmp_path):
    """tokenize read every clean line, and a masked copy, to draw a 200k-line sample (~0.7 KB a
    pair: 7 GB at 10 M). Its Python heap must stay near the sample's size (tracemalloc)."""
    import tracemalloc

    from babelflow.config import parse_params
    from tasks._common import Paths
    from tasks.tokenize import run

    n = 120_000
    folder = tmp_path / "data" / "clean" / "en-de"
    folder.mkdir(parents=True)
    (folder / "train.src").write_text("".join(f"the quick source sentence number {i}\n" for i in range(n)))
    (folder / "train.tgt").write_text("".join(f"der schnelle Zielsatz Nummer {i}\n" for i in range(n)))
    params = parse_params({"languages": {"source": "en", "targets": ["de"], "heldout": []},
                           "adapt": {"enabled": False},
                           "collect": {"sources": [{"type": "aligned", "name": "c", "path": str(tmp_path)}]},
                           "tokenizer": {"vocab_size": 500, "sample_sentences": 2000}})
    tracemalloc.start()
    try:
        run(params, Paths(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (tmp_path / "data" / "tokenizer" / "spm.model").is_file()
    assert peak < 15e6, f"tokenize held {peak / 1e6:.1f} MB for {n} pairs"  # every line held: ~45 MB


def test_a_bad_byte_in_a_streamed_file_names_its_line(tmp_path):
    import pytest

    from babelflow.errors import InputError

    src, tgt = tmp_path / "train.src", tmp_path / "train.tgt"
    src.write_text("one\ntwo\nthree\n", encoding="utf-8")
    tgt.write_bytes(b"eins\nzwei\ndr\xffei\n")
    cfg = TokenizerConfig(vocab_size=300, sample_sentences=10)
    with pytest.raises(InputError, match=r"train.tgt:3: not valid UTF-8"):
        train_tokenizer({"en": [src], "de": [tgt]}, tmp_path / "tok", cfg, ["de"], 1, distinct=["en"])
