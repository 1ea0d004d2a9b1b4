"""`babelflow export --output DIR` and `translate --output FILE` never delete what a user owns (issue 16):
a non-empty folder that is not an earlier export needs --force, the release (or input) a command reads
is never written over, a file is never replaced by a folder nor a folder by a file. Each refusal is one
line, exit 2, and leaves every byte where it was."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from babelflow.cli import main

pytest.importorskip("ctranslate2", reason="optional export dependency ctranslate2 not installed")

from babelflow.ct2_decode import PROVENANCE  # noqa: E402


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def export(release: Path, out: Path, *extra: str) -> int:
    return main(["export", "--format", "ctranslate2", "--release", str(release), "--output", str(out), *extra])


@pytest.fixture
def release(release_dir, tmp_path):
    # A copy: the session's release must survive a test that (on broken code) exports over it.
    return Path(shutil.copytree(release_dir, tmp_path / "release"))


def user_data(root: Path) -> Path:
    """What `--output data` used to wipe: resumable checkpoints and `cache: false` metrics."""
    (root / "checkpoints" / "train" / "step_00000005").mkdir(parents=True)
    (root / "checkpoints" / "train" / "step_00000005" / "state.pt").write_bytes(b"state")
    (root / "metrics").mkdir()
    (root / "metrics" / "train.json").write_text('{"bleu": 1}\n')
    return root


def refused(capsys, rc: int, *words: str, command: str = "export") -> None:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and err.startswith(f"babelflow {command}: error:"), err
    for word in words:
        assert word in err, err


def test_non_empty_user_folder_is_refused_without_force(release, tmp_path, capsys):
    data = user_data(tmp_path / "data")
    before = snapshot(tmp_path)
    refused(capsys, export(release, data), str(data), "--force")
    assert snapshot(tmp_path) == before


def test_force_replaces_a_non_empty_folder(release, tmp_path):
    data = user_data(tmp_path / "data")
    assert export(release, data, "--force") == 0
    assert (data / PROVENANCE).is_file() and not (data / "metrics").exists()


@pytest.mark.parametrize("force", [[], ["--force"]])
@pytest.mark.parametrize("where", ["release", "inside", "containing"])
def test_the_release_is_never_written_over(release, tmp_path, capsys, where, force):
    out = {"release": release, "inside": release / "ct2", "containing": tmp_path}[where]
    before = snapshot(tmp_path)
    refused(capsys, export(release, out, *force), "release")
    assert snapshot(tmp_path) == before
    assert not (release / "ct2").exists()


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_file_is_never_replaced(release, tmp_path, capsys, force):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    refused(capsys, export(release, notes, *force), str(notes), "not a folder")
    assert notes.read_text() == "mine\n"
    refused(capsys, export(release, notes / "ct2", *force), str(notes), "not a folder")
    assert notes.read_text() == "mine\n"


def test_an_earlier_export_or_an_empty_folder_is_replaced(release, tmp_path, capsys):
    out = tmp_path / "ct2"
    out.mkdir()
    assert export(release, out) == 0  # empty: nothing to lose
    assert (out / PROVENANCE).is_file() and (out / "model.bin").is_file()
    assert export(release, out, "--quantization", "int8") == 0  # an earlier export: made again
    # An earlier export that someone put their own file into is theirs again: --force to replace it.
    (out / "README.md").write_text("my notes\n")
    before = snapshot(out)
    refused(capsys, export(release, out), "README.md", "--force")
    assert snapshot(out) == before


def test_help_documents_output_and_force(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--output" in text and "--force" in text and "--release" in text


@pytest.mark.parametrize("where", ["input", "folder", "under_a_file", "release_file", "inside_release",
                                   "inside_export"])
def test_translate_output_never_replaces_what_it_reads(release, tmp_path, capsys, where):
    inp = tmp_path / "in.txt"
    inp.write_text("a man is riding a bike\n")
    (tmp_path / "hyps").mkdir()
    (tmp_path / "hyps" / "old.txt").write_text("kept\n")
    ct2 = tmp_path / "ct2"
    assert export(release, ct2) == 0
    out = {"input": inp, "folder": tmp_path / "hyps", "under_a_file": inp / "out.txt",
           "release_file": release / "model.safetensors", "inside_release": release / "hyp.de",
           "inside_export": ct2 / "model.bin"}[where]
    extra = ["--ctranslate2", str(ct2)] if where == "inside_export" else []
    before = snapshot(tmp_path)
    rc = main(["translate", "--release", str(release), "--to", "de", "--input", str(inp), "--output", str(out),
               "--beam", "1", "--threads", "1", *extra])
    refused(capsys, rc, str(out) if where != "under_a_file" else str(inp), command="translate")
    assert snapshot(tmp_path) == before
