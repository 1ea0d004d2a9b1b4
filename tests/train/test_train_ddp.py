"""DDP under real `torchrun --nproc_per_node 2` on CPU (gloo), through the train stage
(`python -m tasks.train`), with a tiny Transformer: the behaviour a trainer redesign must keep.

- two ranks give the weights of one process accumulating two micro-batches over the same global
  batches, across an epoch boundary;
- early stopping (validated on rank 0, broadcast) stops both ranks at the same step, and they exit;
- a DDP run SIGKILLed right after a checkpoint and resumed equals an uninterrupted one, byte for byte.

Every torchrun gets a bounded timeout, so a rank left waiting in a collective fails the test instead
of hanging CI.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tasks.train as train_stage
from babelflow.checkpoint import checkpoints
from babelflow.config import load_params
from babelflow.data import TokenBatcher, encoded_for, load_encoded
from tasks._common import Paths
from tests.train.conftest import TINY_TRANSFORMER

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).parent / "torchrun"
TIMEOUT_S = 240  # a hung rank fails the test; a healthy run takes seconds

TINY = {
    "seed": 11,
    **TINY_TRANSFORMER,
    "train": {"max_tokens": 1024, "max_steps": 10, "lr": 3e-3, "warmup_steps": 2, "checkpoint_every": 3,
              "validate_every": 4, "keep_checkpoints": 5, "dev_bleu_sentences": 0, "threads": 1,
              "max_len": 40, "device": "cpu", "temperature": 2.0},
}


def _project(root: Path, clean_dir: Path, tokenizer, dropout: float = 0.1, **train) -> Path:
    """A project folder the train stage runs in: data/clean, data/tokenizer and params.yaml."""
    shutil.copytree(clean_dir, root / "data" / "clean")
    shutil.copytree(Path(tokenizer.path).parent, root / "data" / "tokenizer")
    params = json.loads(json.dumps(TINY))
    params["model"]["transformer"]["dropout"] = dropout
    params["train"].update(train)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    from tasks import encode

    encode.run(load_params(root / "params.yaml"), Paths(root))
    return root


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", BABELFLOW_LOG="INFO", TQDM_DISABLE="1",
               PYTHONHASHSEED="0", **extra)
    return env


def _stage_cmd(root: Path) -> list[str]:
    # --tee 3 prefixes every line with its rank ("[default1]:..."), so the test can tell ranks apart.
    return [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "--tee", "3",
            "-m", "tasks.train", "--root", str(root), "--params", str(root / "params.yaml")]


def _train(root: Path) -> str:
    """The train stage in `root` under torchrun with 2 ranks; returns the output, rank-prefixed."""
    log_path = root / "torchrun.log"
    with open(log_path, "w") as log:  # a pipe nobody reads would block the run
        proc = subprocess.Popen(_stage_cmd(root), cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_all(proc)
            raise AssertionError(f"a rank hung for {TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}") from None
    out = log_path.read_text()
    assert proc.returncode == 0, out[-4000:]
    return out


def _train_one_process(root: Path) -> None:
    """The train stage in `root` without torchrun, in this process (saves starting one)."""
    assert "WORLD_SIZE" not in os.environ
    train_stage.run(load_params(root / "params.yaml"), Paths(root))


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return load_file(str(root / "data" / "train" / "model.safetensors"))


def _metrics(root: Path) -> dict:
    # The full training record; data/metrics/train.json keeps only the headline DVC compares.
    return json.loads((root / "data" / "train" / "train_state.json").read_text())


def _rank_lines(out: str, rank: int, text: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"[default{rank}]:") and text in line]


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (torchrun starts each rank in a session of its own, so killing
    torchrun's process group leaves the ranks running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every rank, as a pre-empted machine would; return once all are dead."""
    ranks = _descendants(proc.pid)
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while not all(map(_gone, ranks)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(map(_gone, ranks)), "a rank survived SIGKILL"


def _kill_after_first_checkpoint(root: Path) -> None:
    """Run DDP training until rank 0 has written its first checkpoint, then SIGKILL torchrun and every
    rank, as a pre-empted machine would."""
    marker_dir = root / ".failpoints"
    marker = marker_dir / "checkpoint_saved_train"
    env = _env(BABELFLOW_FAILPOINT="checkpoint_saved:train", BABELFLOW_FAILPOINT_DIR=str(marker_dir))
    with open(root / "killed.log", "w") as log:
        proc = subprocess.Popen(_stage_cmd(root), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        end = time.monotonic() + TIMEOUT_S
        try:
            while not marker.exists():
                assert proc.poll() is None, "run ended before its first checkpoint:\n" + (root / "killed.log").read_text()[-4000:]
                assert time.monotonic() < end, f"no checkpoint within {TIMEOUT_S}s"
                time.sleep(0.05)
        finally:
            _kill_all(proc)
    shutil.rmtree(marker_dir)


def _train_examples(clean_dir, tokenizer):
    pairs = [f"en-{lang}" for lang in TINY["languages"]["targets"]]
    encoded = encoded_for(clean_dir, tokenizer, pairs)
    return {lang: load_encoded(encoded, f"en-{lang}", "train", TINY["train"]["max_len"])
            for lang in TINY["languages"]["targets"]}


def test_two_ranks_train_as_one_process_accumulating_two(tmp_path, clean_dir, tokenizer):
    """Rank r of W takes the global batches r, r+W, ...: W ranks with `accumulate: A` see per step the
    same A*W consecutive batches as one process with `accumulate: A*W`, also across epochs."""
    train = {"max_tokens": 768, "max_steps": 8}
    # 3 batches an epoch: an odd count, so steps straddle epoch boundaries (where a per-epoch shard
    # would drop or reorder batches).
    per_epoch = len(TokenBatcher(_train_examples(clean_dir, tokenizer), 768, shuffle=True, seed=TINY["seed"],
                                 temperature=TINY["train"]["temperature"]).plan(0))
    assert per_epoch % 2 == 1 and 2 * train["max_steps"] > 2 * per_epoch, per_epoch
    # No dropout: each rank draws its own masks, one process draws them in another order.
    ddp = _project(tmp_path / "ddp", clean_dir, tokenizer, dropout=0.0, **train)
    one = _project(tmp_path / "one", clean_dir, tokenizer, dropout=0.0, accumulate=2, **train)
    _train(ddp)
    _train_one_process(one)
    got, want = _metrics(ddp), _metrics(one)
    assert got["world_size"] == 2 and want["world_size"] == 1
    assert got["tokens_seen"] == want["tokens_seen"]  # the same global batches, token for token
    a, b = _weights(ddp), _weights(one)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)
    # Rank 0 reports the loss of the global batches, not of its own half.
    for key in ("train_loss", "dev_loss"):
        assert got[key] == pytest.approx(want[key], abs=1e-4), key


def test_early_stopping_stops_both_ranks_at_the_same_step(tmp_path, clean_dir, tokenizer):
    # A negligible constant learning rate: the dev loss cannot improve, so the second validation
    # (step 4) stops the run. Rank 0 validates; rank 1 learns it from the broadcast.
    root = _project(tmp_path, clean_dir, tokenizer, lr=1e-9, warmup_steps=0, schedule="constant", max_steps=40,
                    validate_every=2, early_stopping_patience=1)
    out = _train(root)  # both ranks exited 0 within the timeout: none was left in a collective
    metrics = _metrics(root)
    assert metrics["stopped_early"] and metrics["steps"] == 4, metrics
    for rank in (0, 1):
        assert len(_rank_lines(out, rank, "early stopping at step 4:")) == 1, (rank, out[-4000:])
        assert _rank_lines(out, rank, "stage train: done"), (rank, out[-4000:])
    assert [p.name for p in checkpoints(root / "data" / "checkpoints" / "train")][-1] == "step_00000004"


@pytest.mark.slow
def test_killed_ddp_run_resumes_to_the_same_bytes(tmp_path, clean_dir, tokenizer):
    # Dropout on: each rank's random state must come back as it was, not rank 0's.
    train = {"max_steps": 8, "checkpoint_every": 3, "validate_every": 4}
    full = _project(tmp_path / "full", clean_dir, tokenizer, **train)
    split = _project(tmp_path / "split", clean_dir, tokenizer, **train)
    # A one-process run's checkpoints are not a 2-rank run's (other batches a step, one random stream
    # instead of two): the DDP run starts over rather than resume them.
    _train_one_process(full)
    out = _train(full)
    assert _rank_lines(out, 0, "belong to other params") and not _rank_lines(out, 0, "resumed from"), out[-4000:]
    _kill_after_first_checkpoint(split)
    ckpt = split / "data" / "checkpoints" / "train"
    assert [p.name for p in checkpoints(ckpt)] == ["step_00000003"]
    assert not (split / "data" / "train").exists()
    out = _train(split)
    assert _rank_lines(out, 0, "resumed from") and _rank_lines(out, 0, "at step 3"), out[-4000:]
    assert (full / "data" / "train" / "model.safetensors").read_bytes() == \
        (split / "data" / "train" / "model.safetensors").read_bytes()
    assert _metrics(full) == _metrics(split)
    assert (full / "data" / "plots" / "train" / "learning_curve.csv").read_text() == \
        (split / "data" / "plots" / "train" / "learning_curve.csv").read_text()
    for a, b in zip(checkpoints(full / "data" / "checkpoints" / "train"), checkpoints(ckpt), strict=True):
        assert a.name == b.name
        for f in ("model.safetensors", "state.pt"):
            assert (a / f).read_bytes() == (b / f).read_bytes(), (a.name, f)
