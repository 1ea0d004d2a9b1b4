"""What a user sees of the `babelflow` command: help, version, documented options, and a plain mistake
answered with one line on stderr and exit 2 (Ctrl-C: exit 130), never a traceback. Each case runs the
real command in a subprocess, as a user would."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import babelflow
from babelflow.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def babelflow_cmd(*args: str, stdin: bytes | None = None, env: dict | None = None, timeout: float = 180):
    return subprocess.run([sys.executable, "-m", "babelflow.cli", *args], input=stdin, capture_output=True,
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})), timeout=timeout)


def one_line_error(proc, *words: str) -> str:
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------- help, version
def test_bare_command_prints_help_on_stdout():
    proc = babelflow_cmd()
    # As pip and prefect do: asking the tool with no command is asking what it does, not a mistake.
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.startswith("usage: babelflow") and "translate" in out and "export" in out
    assert proc.stderr == b""


def test_version():
    proc = babelflow_cmd("--version")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"babelflow {babelflow.__version__}"


def _subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parsers = dict(sub.choices)
    # export's options are the exporter's own parser (babelflow export --help shows it).
    from babelflow.export import build_parser as export_parser

    parsers["export"] = export_parser()
    return parsers


def test_every_option_of_every_subcommand_is_documented_with_an_example():
    parsers = _subcommand_parsers()
    assert {"translate", "export", "release", "schedule", "run"} <= set(parsers)
    for name, p in parsers.items():
        for action in p._actions:
            if action.option_strings:
                assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings}: no help"
        assert p.epilog and "babelflow " + name in p.epilog, f"{name}: no example in its help"
        assert issubclass(p.formatter_class, argparse.RawDescriptionHelpFormatter), name  # examples keep their lines


def test_export_help_lists_every_option():
    proc = babelflow_cmd("export", "--help")
    out = proc.stdout.decode()
    assert proc.returncode == 0
    for option in ("--format", "--release", "--output", "--force", "--quantization"):
        assert option in out


# ------------------------------------------------------------------------------------ plain mistakes
@pytest.fixture(scope="module")
def exported(release_dir, tmp_path_factory):
    pytest.importorskip("ctranslate2", reason="optional export dependency ctranslate2 not installed")
    out = tmp_path_factory.mktemp("ct2msg") / "model"
    proc = babelflow_cmd("export", "--format", "ctranslate2", "--release", str(release_dir), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA: --device cuda is no mistake here")
def test_device_cuda_without_cuda(release_dir):
    proc = babelflow_cmd("translate", "--release", str(release_dir), "--to", "de", "--device", "cuda", stdin=b"hi\n")
    one_line_error(proc, "--device cuda", "CUDA")


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu"])
def test_unknown_device(release_dir, device):
    proc = babelflow_cmd("translate", "--release", str(release_dir), "--to", "de", "--device", device, stdin=b"hi\n")
    one_line_error(proc, f"--device {device}")


def test_non_utf8_stdin_names_the_line(release_dir):
    proc = babelflow_cmd("translate", "--release", str(release_dir), "--to", "de",
                         stdin=b"a man\nthe \xff dog\nok\n")
    one_line_error(proc, "<stdin>:2", "UTF-8")


def test_non_utf8_input_file_names_the_line(release_dir, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_bytes(b"a man\n" * 3000 + b"the \xe9t\xe9\n")  # far past the first read-ahead block
    proc = babelflow_cmd("translate", "--release", str(release_dir), "--to", "de", "--input", str(inp),
                         "--output", str(tmp_path / "out.txt"))
    one_line_error(proc, f"{inp}:3001", "UTF-8")
    assert not (tmp_path / "out.txt").exists()


def test_output_that_is_a_folder(release_dir, tmp_path):
    proc = babelflow_cmd("translate", "--release", str(release_dir), "--to", "de", "--output", str(tmp_path),
                         stdin=b"hi\n")
    one_line_error(proc, str(tmp_path), "folder")


def test_unknown_quantization_at_export(release_dir, tmp_path):
    pytest.importorskip("ctranslate2", reason="optional export dependency ctranslate2 not installed")
    proc = babelflow_cmd("export", "--format", "ctranslate2", "--release", str(release_dir),
                         "--output", str(tmp_path / "ct2"), "--quantization", "int3")
    one_line_error(proc, "--quantization", "int3", "int8")
    assert not (tmp_path / "ct2").exists()


def test_unknown_quantization_at_translate(release_dir, exported):
    proc = babelflow_cmd("translate", "--release", str(release_dir), "--to", "de", "--ctranslate2", str(exported),
                         "--quantization", "int3", stdin=b"hi\n")
    one_line_error(proc, "--quantization", "int3")


def test_quantization_needs_ctranslate2(release_dir):
    proc = babelflow_cmd("translate", "--release", str(release_dir), "--to", "de", "--quantization", "int8",
                         stdin=b"hi\n")
    one_line_error(proc, "--quantization", "--ctranslate2")


def test_argparse_mistakes_are_one_line():
    proc = babelflow_cmd("translate", "--to", "de")  # --release missing
    one_line_error(proc, "--release", "babelflow translate --help")
    proc = babelflow_cmd("export", "--format", "onnx", "--output", "x")
    one_line_error(proc, "onnx")


def test_run_with_an_unknown_stage_starts_no_flow(tmp_path):
    # No Prefect API configured: a flow run would start Prefect's temporary server, whose database
    # lands in PREFECT_HOME. The stage list is checked before, so nothing is started or recorded.
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), OMP_NUM_THREADS="1")
    (tmp_path / "params.yaml").write_text(
        "languages: {targets: [de]}\ncollect: {sources: [{type: gettext}]}\nadapt: {enabled: false}\n")
    proc = subprocess.run([sys.executable, "-m", "babelflow.cli", "run", "--root", str(tmp_path),
                           "--stages", "train", "trian"], capture_output=True, cwd=ROOT, env=env, timeout=300)
    one_line_error(proc, "trian", "--stages")
    assert not list(home.glob("*.db")), list(home.iterdir())


# ---------------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_during_translate_exits_130_and_writes_nothing(release_dir, tmp_path):
    out = tmp_path / "out.txt"
    # Long enough that the run is still decoding when interrupted (each block of 4 lines is written
    # to the temporary file as it is done).
    text = ("a man is riding a bike along the beach\n" * 20000).encode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "babelflow.cli", "translate", "--release", str(release_dir), "--to", "de",
         "--output", str(out), "--chunk", "4", "--threads", "1", "--beam", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        # A test runner started in the background may ignore SIGINT, which the child would inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        import threading

        def feed():
            try:
                proc.stdin.write(text)
                proc.stdin.close()
            except OSError:  # the interrupted command closed its end
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        deadline = time.monotonic() + 120
        while not [p for p in tmp_path.glob(".out.txt.*.tmp") if p.stat().st_size] and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        assert time.monotonic() < deadline, "translate wrote nothing in 120 s"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode("utf-8", "replace")
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert len(err.strip().splitlines()) <= 1, err[-2000:]
    assert not out.exists() and not list(tmp_path.glob(".out.txt.*")), list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------- progress
def test_translate_progress_in_a_log_file_is_plain_lines(release_dir, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("a man is riding a bike\n" * 40, encoding="utf-8")
    with open(tmp_path / "log.txt", "wb") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "babelflow.cli", "translate", "--release", str(release_dir), "--to", "de",
             "--input", str(inp), "--output", str(tmp_path / "out.txt"), "--chunk", "8", "--threads", "1",
             "--beam", "1"], stderr=log, cwd=ROOT, timeout=180,
            env=dict(os.environ, OMP_NUM_THREADS="1", BABELFLOW_PROGRESS_EVERY_S="0"))
    err = (tmp_path / "log.txt").read_text(encoding="utf-8")
    assert proc.returncode == 0, err
    assert "\r" not in err
    assert err.splitlines() == [f"en->de sent {n}/40" for n in (8, 16, 24, 32, 40)], err
