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
