"""`babelflow translate` on a release folder, and `babelflow release` in a real git + DVC repository."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from babelflow.cli import main

DVC = str(Path(sys.executable).with_name("dvc"))
INPUT = ["a man is riding a bike", "", "two dogs play in the snow", "the girl reads a book"]


def test_translate_file_to_file(release_dir, tmp_path):
    inp, out = tmp_path / "in.txt", tmp_path / "out.txt"
    inp.write_text("\n".join(INPUT) + "\n", encoding="utf-8")
    rc = main(["translate", "--release", str(release_dir), "--to", "de", "--input", str(inp),
               "--output", str(out), "--beam", "1", "--chunk", "2", "--threads", "1"])
    assert rc == 0
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == len(INPUT) + 1 and lines[-1] == ""
    assert lines[1] == ""  # a blank input line stays blank: output aligned with input


def test_translate_on_several_cores_matches_one(release_dir, tmp_path):
    # More sentences than one block so each worker gets batches; blank lines must stay in place.
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(INPUT * 5) + "\n", encoding="utf-8")
    outputs = []
    for threads in ("1", "3"):
        out = tmp_path / f"out{threads}.txt"
        assert main(["translate", "--release", str(release_dir), "--to", "de", "--input", str(inp),
                     "--output", str(out), "--beam", "2", "--chunk", "2", "--threads", threads]) == 0
        outputs.append(out.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]
    assert outputs[0].split("\n")[1::4][:5] == [""] * 5


def test_translate_streams_stdin_to_stdout(release_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "babelflow.cli", "translate", "--release", str(release_dir), "--to", "fr",
         "--threads", "1"],
        input="\n".join(INPUT) + "\n", capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split("\n")) == len(INPUT) + 1


def test_translate_unknown_language(release_dir, capsys):
    assert main(["translate", "--release", str(release_dir), "--to", "ja"]) == 2
    err = capsys.readouterr().err
    assert "'ja'" in err and "de, fr" in err


def test_translate_refuses_tampered_release(release_dir, tmp_path, capsys):
    copy = tmp_path / "rel"
    shutil.copytree(release_dir, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    inp = tmp_path / "in.txt"
    inp.write_text("hello\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    rc = main(["translate", "--release", str(copy), "--to", "de", "--input", str(inp), "--output", str(out)])
    assert rc == 2
    assert "model.safetensors" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------- babelflow release
def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "babelflow.cli", *args], cwd, check=False)


@pytest.fixture(scope="module")
def dvc_template(tmp_path_factory):
    """A git + DVC project with one reproduced stage; dvc.lock not yet committed. Built once, copied
    per test (dvc commands are slow to start)."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    repo.mkdir()
    sh(["git", "init", "-q", "-b", "main"], repo)
    sh([DVC, "init", "-q"], repo)
    # Relative remote URL (resolved from .dvc/): every copy of the repo gets its own sibling remote.
    (repo / ".dvc" / "config").write_text(
        "[core]\n    remote = localremote\n['remote \"localremote\"']\n    url = ../../remote\n")
    cmd = f"{sys.executable} -c \"open('out.txt','w').write('translated model bytes\\n')\""
    # Like babelflow's `inputs` stage: always changed by design, so `dvc status` never drops it.
    stamp = f"{sys.executable} -c \"open('stamp.txt','w').write('inputs unchanged\\n')\""
    (repo / "dvc.yaml").write_text(
        "stages:\n  inputs:\n    cmd: " + json.dumps(stamp) + "\n    always_changed: true\n"
        "    outs:\n      - stamp.txt:\n          cache: false\n"
        "  make:\n    cmd: " + json.dumps(cmd) + "\n    deps:\n      - stamp.txt\n    outs:\n      - out.txt\n")
    # The version `babelflow release` tags must be the one the model card was built with.
    (repo / "params.yaml").write_text(
        "languages: {source: en, targets: [de], heldout: [ga]}\ncollect: {sources: [{type: gettext}]}\n"
        "release: {name: toy, version: 1.0.0}\n")
    sh([DVC, "repro", "-q"], repo)
    sh(["git", "add", ".dvc/config", ".dvcignore", "dvc.yaml", ".gitignore", "params.yaml"], repo)
    sh(["git", "commit", "-q", "-m", "pipeline"], repo)  # dvc.lock left for the release to commit
    return repo


@pytest.fixture
def dvc_repo(dvc_template, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(dvc_template, repo, symlinks=True)
    return repo, tmp_path / "remote"


@pytest.mark.slow
def test_release_tags_pushes_and_restores(dvc_repo, tmp_path):
    repo, remote = dvc_repo
    proc = cli(["release", "--version", "1.0.0"], repo)
    assert proc.returncode == 0, proc.stderr
    assert sh(["git", "tag", "--list", "v1.0.0"], repo).stdout.strip() == "v1.0.0"
    assert sh(["git", "status", "--porcelain", "dvc.lock"], repo).stdout == ""  # committed
    assert any(p.is_file() for p in remote.rglob("*"))  # the cache reached the remote

    # A fresh checkout at the tag + dvc pull gives back the same bytes.
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", "--branch", "v1.0.0", str(repo), str(clone)], tmp_path)
    sh([DVC, "pull", "-q"], clone)
    assert (clone / "out.txt").read_bytes() == (repo / "out.txt").read_bytes()

    again = cli(["release", "--version", "1.0.0", "--no-push"], repo)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.slow
def test_release_refuses_dirty_state(dvc_repo):
    repo, _ = dvc_repo
    (repo / "out.txt").write_text("edited by hand\n")
    proc = cli(["release", "--version", "1.0.0", "--no-push"], repo)
    assert proc.returncode == 2
    assert "dvc status is not clean" in proc.stderr
    assert sh(["git", "tag", "--list"], repo).stdout.strip() == ""
    bad = cli(["release", "--version", "1.0"], repo)
    assert bad.returncode == 2 and "semantic version" in bad.stderr


@pytest.mark.slow
def test_release_version_must_be_the_cards(dvc_repo):
    """The card (a DVC output) says release.version from params.yaml: a tag with another version would
    name a release whose MODEL_CARD.md disagrees with it."""
    repo, _ = dvc_repo
    proc = cli(["release", "--version", "1.1.0", "--no-push"], repo)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "params.yaml" in line and "release.version is 1.0.0" in line and "dvc repro" in line, line
    assert sh(["git", "tag", "--list"], repo).stdout.strip() == ""
    (repo / "params.yaml").unlink()
    gone = cli(["release", "--version", "1.0.0", "--no-push"], repo)
    assert gone.returncode == 2 and "params.yaml" in gone.stderr and "Traceback" not in gone.stderr
