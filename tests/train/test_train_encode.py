"""The encode step: ids identical to the list-based path of before, bytes independent of the workers."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from babelflow.data import load_encoded
from babelflow.encode import encode_corpus
from babelflow.errors import InputError
from babelflow.io import read_json
from tests.train.legacy_data import load_examples

PAIRS = ["en-de", "en-fr", "en-ga"]


@pytest.fixture(scope="module")
def odd_clean(clean_dir, tmp_path_factory):
    """The tiny corpus plus lines that test the edges: empty, long, many placeholders, CRLF ends."""
    root = tmp_path_factory.mktemp("odd") / "clean"
    shutil.copytree(clean_dir, root)
    extra_src = ["", "%s %d {0} {1} {2} %(a)s %(b)s $HOME %s %d {3} {4} {5} {6} open",
                 " ".join(["window"] * 60), "open the file\r", "save %s"]
    extra_tgt = ["leer", "%d {0} %s {1} {2} %(b)s %(a)s $HOME %s %d {3} {4} {5} {6} offen",
                 "fenster", "datei öffnen", ""]
    with open(root / "en-de" / "train.src", "a", encoding="utf-8", newline="") as f:
        f.write("".join(s + "\n" for s in extra_src))
    with open(root / "en-de" / "train.tgt", "a", encoding="utf-8", newline="") as f:
        f.write("".join(t + "\n" for t in extra_tgt))
    return root


def _encode(clean, out, tokenizer, **kw):
    return encode_corpus(clean, out, tokenizer.path, tokenizer.max_placeholders, PAIRS, **kw)


def _ids(examples):
    return [(list(map(int, s)), list(map(int, t))) for s, t in (examples[i] for i in range(len(examples)))]


@pytest.mark.parametrize("max_len, limit", [(40, None), (8, None), (40, 5), (1000, None)])
def test_encoded_ids_equal_the_list_path(odd_clean, tokenizer, tmp_path, max_len, limit):
    _encode(odd_clean, tmp_path / "enc", tokenizer, workers=2, chunk_lines=7)
    for pair in PAIRS:
        for split in ("train", "dev", "test"):
            ref = load_examples(odd_clean, pair, split, tokenizer, max_len, limit)
            got = load_encoded(tmp_path / "enc", pair, split, max_len, limit)
            assert _ids(got) == [(list(e.src_ids), list(e.tgt_ids)) for e in ref], (pair, split)


def test_bytes_do_not_depend_on_workers_or_chunks(odd_clean, tokenizer, tmp_path):
    a = _encode(odd_clean, tmp_path / "a", tokenizer, workers=1, chunk_lines=1000)
    b = _encode(odd_clean, tmp_path / "b", tokenizer, workers=2, chunk_lines=3)
    assert a == b
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 1 + 3 * 3 * 3  # manifest; per pair and split src.bin, tgt.bin, len
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # The manifest names the dtype, the tokenizer and each file's sha256 and counts.
    m = read_json(tmp_path / "a" / "manifest.json")
    assert m["dtype"] == "uint16" and m["vocab_size"] == tokenizer.vocab_size
    assert m["tokenizer_sha256"] == hashlib.sha256(tokenizer.path.read_bytes()).hexdigest()
    de = m["pairs"]["en-de"]["train"]
    assert de["sentences"] == 125
    for name, sha in de["sha256"].items():
        assert hashlib.sha256((tmp_path / "a" / "en-de" / name).read_bytes()).hexdigest() == sha
    assert (tmp_path / "a" / "en-de" / "train.src.bin").stat().st_size == 2 * de["src_tokens"]
    # Lengths, not offsets, in the smallest dtype that holds them: here every length fits a byte.
    assert de["len_dtype"] == "uint8"
    lens = np.fromfile(tmp_path / "a" / "en-de" / "train.len", np.uint8).reshape(-1, 2)
    assert lens.shape == (125, 2) and list(lens.sum(axis=0)) == [de["src_tokens"], de["tgt_tokens"]]


@pytest.mark.parametrize("longest, dtype", [(255, "uint8"), (256, "uint16"), (65536, "uint32")])
def test_length_dtype_is_the_smallest_that_fits(tmp_path, tokenizer, longest, dtype):
    # Disk stays near 2 bytes a token: a length costs 1 byte while sentences stay under 256 pieces.
    from babelflow.encode import len_dtype_for

    assert np.dtype(len_dtype_for(np.array([[3, longest], [1, 2]]))).name == dtype


def test_long_sentences_round_trip_with_wider_lengths(tmp_path, tokenizer):
    (tmp_path / "en-de").mkdir()
    src = ["open the file", " ".join(["window"] * 300), "save"]
    (tmp_path / "en-de" / "train.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
    (tmp_path / "en-de" / "train.tgt").write_text("datei\nfenster\nspeichern\n", encoding="utf-8")
    m = encode_corpus(tmp_path, tmp_path / "out", tokenizer.path, tokenizer.max_placeholders, ["en-de"])
    assert m["pairs"]["en-de"]["train"]["len_dtype"] == "uint16"
    ref = load_examples(tmp_path, "en-de", "train", tokenizer, 1000)
    got = load_encoded(tmp_path / "out", "en-de", "train", 1000)
    assert _ids(got) == [(list(e.src_ids), list(e.tgt_ids)) for e in ref] and len(ref[1].src_ids) > 255


def test_stale_or_truncated_encodings_name_the_file(clean_dir, tokenizer, tmp_path):
    _encode(clean_dir, tmp_path / "enc", tokenizer)
    with open(tmp_path / "enc" / "en-fr" / "train.tgt.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(InputError, match=r"train.tgt.bin: does not match the lengths"):
        load_encoded(tmp_path / "enc", "en-fr", "train", 40)
    m = read_json(tmp_path / "enc" / "manifest.json")
    (tmp_path / "enc" / "manifest.json").write_text(json.dumps({**m, "format": 1}), encoding="utf-8")
    with pytest.raises(InputError, match=r"manifest.json: encoded in format 1, not 2"):
        load_encoded(tmp_path / "enc", "en-de", "train", 40)


def test_misaligned_files_name_the_file(tmp_path, tokenizer):
    (tmp_path / "en-de").mkdir()
    (tmp_path / "en-de" / "train.src").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "en-de" / "train.tgt").write_text("a\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"train.tgt:2: not aligned: 2 source lines vs 1 target"):
        encode_corpus(tmp_path, tmp_path / "out", tokenizer.path, tokenizer.max_placeholders, ["en-de"])


def test_invalid_utf8_names_the_line(tmp_path, tokenizer):
    (tmp_path / "en-de").mkdir()
    (tmp_path / "en-de" / "train.src").write_bytes(b"a\nb\xff\n")
    (tmp_path / "en-de" / "train.tgt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"train.src:2: not valid UTF-8"):
        encode_corpus(tmp_path, tmp_path / "out", tokenizer.path, tokenizer.max_placeholders, ["en-de"])
