"""`babelflow export` then `babelflow translate --ctranslate2`: the export of a release translates like
the release (greedy: identical lines, whatever the batching), and an export of other weights is refused."""
from __future__ import annotations

import json

import pytest

from babelflow.cli import main

pytest.importorskip("ctranslate2", reason="optional export dependency ctranslate2 not installed")

from babelflow.ct2_decode import PROVENANCE  # noqa: E402

INPUT = ["a man is riding a bike", "", "two dogs play in the snow", "the girl reads a book",
         "a woman sings on stage", "people walk on the beach"]


@pytest.fixture(scope="module")
def exported(release_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct2") / "model"
    assert main(["export", "--format", "ctranslate2", "--release", str(release_dir), "--output", str(out)]) == 0
    return out


def translate(release_dir, tmp_path, *extra, chunk: int = 1):
    inp, out = tmp_path / "in.txt", tmp_path / "out.txt"
    inp.write_text("\n".join(INPUT) + "\n", encoding="utf-8")
    rc = main(["translate", "--release", str(release_dir), "--to", "fr", "--input", str(inp),
               "--output", str(out), "--beam", "1", "--chunk", str(chunk), "--threads", "2", *extra])
    return rc, (out.read_text(encoding="utf-8") if out.exists() else None)


@pytest.mark.parametrize("chunk", [1, len(INPUT)])
def test_export_translates_like_the_release(release_dir, exported, tmp_path, chunk):
    # CTranslate2 has no max_run (it warns and decodes without it): compare with PyTorch's without it.
    rc, pytorch = translate(release_dir, tmp_path, "--max-run", "0")
    assert rc == 0
    rc, ct2 = translate(release_dir, tmp_path, "--ctranslate2", str(exported), chunk=chunk)
    assert rc == 0
    # The tiny release's model repeats a piece up to the length limit, so this also pins the limit:
    # CTranslate2's does not count the EOS, babelflow's does; and with every sentence in one batch,
    # CTranslate2 decodes to the longest one's limit, which the shorter ones must not inherit.
    assert ct2 == pytorch and ct2.split("\n")[0]
    assert len(ct2.split("\n")) == len(INPUT) + 1 and ct2.split("\n")[1] == ""


def test_ctranslate2_says_it_decodes_without_the_releases_max_run(release_dir, exported, tmp_path, capsys):
    assert translate(release_dir, tmp_path, "--ctranslate2", str(exported))[0] == 0
    assert "CTranslate2 has no max_run" in capsys.readouterr().err
    assert translate(release_dir, tmp_path, "--ctranslate2", str(exported), "--max-run", "0")[0] == 0
    assert "max_run" not in capsys.readouterr().err


def test_export_of_other_weights_is_refused(release_dir, exported, tmp_path, capsys):
    provenance = exported / PROVENANCE
    original = provenance.read_text(encoding="utf-8")
    try:
        provenance.write_text(json.dumps({"model_sha256": "0" * 64}), encoding="utf-8")
        rc, out = translate(release_dir, tmp_path, "--ctranslate2", str(exported))
        assert rc == 2 and out is None
        assert "exported from another model" in capsys.readouterr().err
        provenance.unlink()
        rc, out = translate(release_dir, tmp_path, "--ctranslate2", str(exported))
        assert rc == 2 and out is None
        assert PROVENANCE in capsys.readouterr().err
    finally:
        provenance.write_text(original, encoding="utf-8")
