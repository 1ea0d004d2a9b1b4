"""Hostile or broken input to `babelflow translate`, the evaluate stage and the release: a clear
message, bounded memory and time, nothing silently lost or silently trusted."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from babelflow.cli import main
from babelflow.io import read_json

ROOT = Path(__file__).resolve().parents[2]
HUGE = " ".join(["the cat sleeps on the sofa"] * 20_000)  # 120k words: far past 128 positions
LINES = ["a man is riding a bike", HUGE, "two dogs play in the snow", "x" * 2_000_000, "the girl reads a book"]
MEMORY = 3 << 30  # a 120k-token source would need far more (attention is quadratic)


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _translate(release: Path, tmp_path: Path, lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    inp, out = tmp_path / "in.txt", tmp_path / "out.txt"
    inp.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
    out.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "babelflow.cli", "translate", "--release", str(release), "--to", "de",
         "--input", str(inp), "--output", str(out), "--beam", "1", "--threads", "1", "--chunk", "2", *extra],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120, preexec_fn=_bounded)


def _check_truncated(proc: subprocess.CompletedProcess, tmp_path: Path) -> list[str]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert len(out) == len(LINES) + 1 and out[-1] == ""  # still one output line per input line
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    # One warning per truncated line, naming it; the short lines get none.
    assert len(warnings) == 2, proc.stderr[-2000:]
    assert "in.txt:2:" in warnings[0] and "in.txt:4:" in warnings[1], warnings
    assert "128" in warnings[0]  # the limit it was cut to
    return out[:-1]


def test_translate_truncates_an_overlong_line_with_a_warning(release_dir, tmp_path):
    proc = _translate(release_dir, tmp_path, LINES)
    out = _check_truncated(proc, tmp_path)
    # The neighbours are translated as they are on their own.
    alone = _translate(release_dir, tmp_path, [LINES[0], LINES[2], LINES[4]])
    assert alone.returncode == 0 and "WARNING" not in alone.stderr
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:3] == [out[0], out[2], out[4]]


def test_translate_ctranslate2_truncates_like_pytorch(release_dir, tmp_path):
    pytest.importorskip("ctranslate2", reason="optional export dependency ctranslate2 not installed")
    ct2 = tmp_path / "ct2"
    assert main(["export", "--format", "ctranslate2", "--release", str(release_dir), "--output", str(ct2)]) == 0
    pytorch = _check_truncated(_translate(release_dir, tmp_path, LINES, "--max-run", "0"), tmp_path)  # as CT2
    exported = _check_truncated(_translate(release_dir, tmp_path, LINES, "--ctranslate2", str(ct2), "--max-run", "0"),
                                tmp_path)
    # Greedy: the same lines, and for the cut ones the same beginning (CTranslate2's decoder stops at
    # the model's 128 positions, where PyTorch's sinusoidal positions go on to the length limit).
    assert [exported[i] for i in (0, 2, 4)] == [pytorch[i] for i in (0, 2, 4)]
    assert all(exported[i] and exported[i][:60] == pytorch[i][:60] for i in (1, 3))


EVALUATE = textwrap.dedent("""
    import logging, sys
    from pathlib import Path
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from tests.release.conftest import make_project
    from tasks._common import Paths
    from tasks.evaluate import run
    root = Path(sys.argv[1])
    params = make_project(root, with_adapt=False)
    test = root / "data" / "clean" / "en-de" / "test.src"
    lines = test.read_text(encoding="utf-8").splitlines()
    lines[1] = Path(sys.argv[2]).read_text(encoding="utf-8")
    test.write_text("".join(s + "\\n" for s in lines), encoding="utf-8")
    summary = run(params, Paths(root))
    print("n", summary["en-de"]["n"], summary["en-fr"]["n"])
""")


def test_evaluate_truncates_an_overlong_test_line_with_a_warning(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    (tmp_path / "huge.txt").write_text(HUGE, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", EVALUATE, str(tmp_path / "p"), str(tmp_path / "huge.txt")],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, preexec_fn=_bounded)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "n 4 4" in proc.stdout  # nothing dropped: the long line is scored, on its translated beginning
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "en-de/test.src:2:" in warnings[0], proc.stderr[-2000:]


# ------------------------------------------------------------------------------------ empty test split
def test_empty_test_split_is_n_0_not_scored_everywhere(tmp_path, project_factory):
    from tasks import evaluate, release
    from tasks._common import Paths

    params = project_factory(tmp_path, with_adapt=False)
    pair = tmp_path / "data" / "clean" / "en-de"
    (pair / "test.src").write_text("", encoding="utf-8")
    (pair / "test.tgt").write_text("", encoding="utf-8")
    paths = Paths(tmp_path)
    summary = evaluate.run(params, paths)
    assert summary["en-de"]["n"] == 0 and [summary["en-de"][k] for k in ("bleu", "chrfpp", "ter")] == [None] * 3
    assert summary["en-fr"]["n"] == 4 and summary["en-fr"]["bleu"] is not None
    # The macro average is over the pairs that were scored, and says how many.
    assert summary["macro"]["pairs"] == 1 and summary["macro"]["bleu"] == summary["en-fr"]["bleu"]
    metrics = read_json(paths.eval / "metrics.json")
    assert metrics["en-de"]["n"] == 0 and metrics["en-de"]["bleu"] is None and "not scored" in metrics["en-de"]["note"]
    assert (paths.eval / "en-de.hyp").read_text(encoding="utf-8") == ""
    report = (paths.eval / "report.md").read_text(encoding="utf-8")
    assert "| en-de | 0 |" in report and "en-de: n = 0, not scored" in report
    release.run(params, paths)
    card = (paths.release / "MODEL_CARD.md").read_text(encoding="utf-8")
    de_row = next(line for line in card.splitlines() if line.startswith("| en-de |"))
    assert "0.00" not in de_row and "None" not in de_row and "en-de: n = 0, not scored" in card
    # The run summary and the Prefect artifact show the note too.
    from flows.pipeline import metrics_markdown

    md = metrics_markdown(tmp_path)
    assert "en-de: n = 0, not scored" in md and "None" not in md


# ----------------------------------------------------------------------------- release integrity lists
@pytest.mark.parametrize("name", ["model.safetensors", "model.json", "spm.model", "params.yaml"])
def test_release_whose_sums_omit_a_required_file_is_refused(release_dir, tmp_path, capsys, name):
    copy = tmp_path / "rel"
    shutil.copytree(release_dir, copy)
    sums = copy / "SHA256SUMS"
    lines = sums.read_text(encoding="utf-8").splitlines(keepends=True)
    sums.write_text("".join(line for line in lines if not line.rstrip("\n").endswith(f"  {name}")),
                    encoding="utf-8")
    inp, out = tmp_path / "in.txt", tmp_path / "out.txt"
    inp.write_text("hello\n", encoding="utf-8")
    rc = main(["translate", "--release", str(copy), "--to", "de", "--input", str(inp), "--output", str(out),
               "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert len(err.strip().splitlines()) == 1 and name in err and "SHA256SUMS" in err, err
    rc = main(["export", "--format", "ctranslate2", "--release", str(copy), "--output", str(tmp_path / "ct2")])
    err = capsys.readouterr().err
    assert rc == 2 and name in err and not (tmp_path / "ct2").exists(), err
