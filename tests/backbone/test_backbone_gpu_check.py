"""bench/gpu_check.py, the prepared device check of issue 18. A GPU lease is short and rare, so the
script is rehearsed here: `--dry-run` runs every part at a tiny size on CPU (a typo fails here, not on
the GPU), a part that hangs is killed at its budget and recorded while the next part still runs, and
what comes back fits the device tool's limits (at most 8 files, each under 16 MB, no deeper folders)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import gpu_check


def _run(repo_root, *args, env=None, timeout=600):
    return subprocess.run([sys.executable, "bench/gpu_check.py", *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_dry_run_runs_every_part(tmp_path, repo_root):
    out = tmp_path / "out"
    proc = _run(repo_root, "--dry-run", "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    parts = summary["parts"]
    statuses = {name: part["status"] for name, part in parts.items()}
    log_tail = (out / "log.txt").read_text()[-4000:]
    assert statuses == dict.fromkeys(gpu_check.PARTS, "ok"), (statuses, proc.stdout[-2000:], log_tail)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary["date"] and summary["torch"] and "gpu" in summary
    # Every figure the GPU run reports is computed in the rehearsal too.
    assert parts["env"]["matmul"]["tflops"] > 0
    assert "counts" in parts["cuda_tests"]
    assert parts["train_speed"]["babelflow"]["tokens_per_s"] > 0
    assert parts["train_speed"]["joeynmt"]  # its timings, or why it is not available
    assert parts["multi30k"]["train"]["steps"] > parts["multi30k"]["first_chunk"]["steps"]  # resumed once
    assert isinstance(parts["multi30k"]["test"]["bleu"], float)
    assert set(parts["decode"]["systems"]) == {"greedy", "beam4", "greedy-bf16", "beam4-bf16"}
    assert all(row["sent_per_s"] > 0 and "bleu" in row for row in parts["decode"]["systems"].values())
    assert set(summary["goals"]) and all("met" in goal for goal in summary["goals"].values())
    files = list(out.iterdir())
    assert len(files) <= 8 and all(f.is_file() and f.stat().st_size < 16 << 20 for f in files)
    assert {"summary.json", "log.txt", "cuda_tests.xml", "learning_curve.csv", "test.de.hyp"} <= {f.name for f in files}


@pytest.mark.slow
def test_a_hung_part_is_killed_and_the_next_still_runs(tmp_path, repo_root):
    out = tmp_path / "out"
    # env's budget is what multi30k does not need at least: about 100 - 90 = 10 s, then it is killed.
    proc = _run(repo_root, "--parts", "env", "multi30k", "--budget-s", "100", "--out", str(out),
                env={"BABELFLOW_FAILPOINT": "gpu_check:env", "BABELFLOW_FAILPOINT_DIR": str(tmp_path / "fp")},
                timeout=120)
    summary = json.loads((out / "summary.json").read_text())
    env, multi30k = summary["parts"]["env"], summary["parts"]["multi30k"]
    assert env["status"] == "timeout" and "killed after" in env["reason"], env
    assert env["seconds"] < 30
    # No --data: the part itself ran and said why it skipped the training.
    assert multi30k["status"] == "skipped" and "no Multi30k" in multi30k["reason"], multi30k
    assert proc.returncode == 1
    assert "===== env: timeout" in (out / "log.txt").read_text()


def test_out_of_time_parts_are_skipped_with_the_reason(tmp_path, repo_root):
    out = tmp_path / "out"
    proc = _run(repo_root, "--budget-s", "1", "--out", str(out), timeout=120)
    parts = json.loads((out / "summary.json").read_text())["parts"]
    assert set(parts) == set(gpu_check.PARTS)
    assert all(p["status"] == "skipped" and "left of --budget-s" in p["reason"] for p in parts.values()), parts
    assert proc.returncode == 0


def test_a_data_folder_without_multi30k_is_refused_in_one_line(tmp_path, repo_root):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.en").write_text("a\n")
    proc = _run(repo_root, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2
    assert "\n" not in proc.stderr.strip() and "train.de" in proc.stderr and str(tmp_path / "data") in proc.stderr
    assert not (tmp_path / "out").exists()


def test_mfu_peak_only_for_the_sxm_parts():
    assert gpu_check.peak_tflops("NVIDIA H200") == gpu_check.H100_H200_BF16_DENSE_PEAK_TFLOPS
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3") == gpu_check.H100_H200_BF16_DENSE_PEAK_TFLOPS
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe") is None
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB") is None


def test_pytest_outcome_tells_collection_errors_from_failing_tests():
    text = ("ERROR tests/meta/test_meta_stages.py - ModuleNotFoundError: No module named 'prefect'\n"
            "ERROR tests/train/test_train_cuda.py::test_bf16 - RuntimeError: CUDA error\n"
            "FAILED tests/train/test_train_cuda.py::test_ddp - AssertionError\n"
            "1 failed, 3 passed, 2 skipped, 700 deselected, 2 errors in 12.34s\n")
    counts, uncollected = gpu_check.pytest_outcome(text)
    assert counts == {"failed": 1, "passed": 3, "skipped": 2, "deselected": 700, "errors": 2}
    assert uncollected == ["ERROR tests/meta/test_meta_stages.py - ModuleNotFoundError: No module named 'prefect'"]
    assert gpu_check.pytest_outcome("1 error in 0.5s") == ({"errors": 1}, [])


def test_the_gpu_preset_parses_and_resumes_at_500_steps():
    # The GPU run itself cannot be rehearsed on CPU; its parameters can (a renamed knob fails here).
    preset, params, chunk = gpu_check.multi30k_plan(dry_run=False)
    assert preset == "gpu" and chunk == 500 and params.train.max_steps % chunk == 0
    assert params.train.bf16 and params.train.device == "auto"
    t = params.model.transformer
    assert (t.encoder_layers, t.decoder_layers, t.d_model, t.ffn_dim, t.heads) == (6, 6, 512, 2048, 8)
