"""bench/default_run.py --work DIR deletes DIR before cloning into it: only a folder it made itself
(issue 16: nothing a user owns is ever deleted), and its log never lands beside DIR over a user's file."""
from __future__ import annotations

import subprocess

import pytest

from bench import default_run


def test_a_user_folder_is_refused_and_kept(tmp_path, capsys):
    work = tmp_path / "project.v2"
    (work / "src").mkdir(parents=True)
    (work / "src" / "mine.py").write_text("x = 1\n")
    (tmp_path / "project.log").write_text("my log\n")  # what --work project.v2 used to write its log over
    assert default_run.main(["--repo", str(tmp_path / "no-repo"), "--work", str(work)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(work) in err and "not empty" in err
    assert (work / "src" / "mine.py").read_text() == "x = 1\n"
    assert (tmp_path / "project.log").read_text() == "my log\n"


def test_a_file_is_refused(tmp_path, capsys):
    work = tmp_path / "notes.txt"
    work.write_text("mine\n")
    assert default_run.main(["--repo", str(tmp_path / "no-repo"), "--work", str(work)]) == 2
    assert work.read_text() == "mine\n"


def test_an_earlier_run_is_replaced(tmp_path):
    work = tmp_path / "run"
    (work / ".git").mkdir(parents=True)
    (work / ".git" / default_run.MARKER).write_text("")
    (work / "data").mkdir()
    # A repository that does not exist stops the run at the clone, after the old folder is gone.
    with pytest.raises(subprocess.CalledProcessError):
        default_run.main(["--repo", str(tmp_path / "no-repo"), "--work", str(work)])
    assert not (work / "data").exists()
