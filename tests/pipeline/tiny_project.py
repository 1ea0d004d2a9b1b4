"""Builds a throw-away babelflow project with a tiny config, for end-to-end pipeline tests."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import sentencepiece as spm
import yaml

from babelflow.config import parse_params
from babelflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TINY_PARAMS = {
    "seed": 7,
    "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["cs"]},
    "collect": {
        "sources": [{"type": "aligned", "name": "multi30k-head", "format": "moses", "path": "corpus",
                     "splits": {"train": "train"}}],
        "split": {"dev": 0.1, "test": 0.1, "salt": "tiny"},
        "on_error": "fail",
    },
    "clean": {"langid": False, "workers": 1},
    "tokenizer": {"vocab_size": 500, "sample_sentences": 5000},
    "model": {"arch": "transformer",
              "transformer": {"d_model": 32, "ffn_dim": 64, "heads": 2, "encoder_layers": 1,
                              "decoder_layers": 1, "max_positions": 128}},
    "train": {"max_tokens": 512, "max_steps": 12, "warmup_steps": 4, "checkpoint_every": 5,
              "validate_every": 6, "dev_bleu_sentences": 5, "threads": 1, "max_len": 48},
    "meta": {"meta_steps": 3, "tasks_per_step": 2, "inner_steps": 1, "support_tokens": 256,
             "query_tokens": 256, "checkpoint_every": 2},
    "adapt": {"k": [20], "steps": 3, "max_tokens": 256, "eval_sentences": 10},
    "evaluate": {"beam_size": 2, "max_sentences": 10, "batch_sentences": 8},
    "release": {"name": "tiny", "version": "0.0.1"},
}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update(DVC_NO_ANALYTICS="1", DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
             BABELFLOW_LOG="WARNING", PYTHONHASHSEED="0")
    # Prefect's ephemeral server gets 20 s to start by default: too little beside parallel tests.
    e.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    e.pop("PYTHONPATH", None)
    return e


def sh(cmd: list[str], cwd: Path, check: bool = True, extra_env: dict | None = None,
       timeout: int = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, text=True,
                         capture_output=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def make_project(dest: Path, multi30k: Path, lines: int = 400, overrides: dict | None = None) -> Path:
    """Copy the code and dvc.yaml, write a tiny Moses corpus from Multi30k and a tiny params.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("babelflow", "tasks", "flows"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    corpus = dest / "corpus"
    corpus.mkdir()
    for lang in ("en", "de", "fr", "cs"):
        with open(multi30k / f"train.{lang}", encoding="utf-8") as fh:
            head = [next(fh) for _ in range(lines)]
        (corpus / f"train.{lang}").write_text("".join(head), encoding="utf-8")
    params = yaml.safe_load(yaml.safe_dump(TINY_PARAMS))
    for dotted, value in (overrides or {}).items():
        node = params
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    try:  # every knob stated, defaults included, as in a real params.yaml: dvc.yaml names leaf keys
        params = parse_params(params).model_dump(mode="json")
    except ConfigError:
        pass  # a test of a bad params.yaml gets it as written
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (dest / ".gitignore").write_text("__pycache__/\n")
    sh(["git", "init", "-q"], dest)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"], dest)
    sh(["dvc", "init", "-q"], dest)
    sh(["dvc", "config", "core.autostage", "false"], dest)
    return dest


def lock_hashes(root: Path) -> dict[str, dict[str, str]]:
    """stage -> {out path: md5} from dvc.lock (what 'the same artifacts' means to DVC)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {
        stage: {o["path"]: o.get("md5") for o in body.get("outs", [])}
        for stage, body in lock["stages"].items()
    }


def ran_stages(dvc_output: str) -> set[str]:
    """The stages a `dvc repro` ran, from its output."""
    return set(re.findall(r"Running stage '([\w-]+)'", dvc_output))


def stale_stages(root: Path, *args: str) -> dict:
    """`dvc status --json [args]` less the `inputs` stage, which is always changed by design (it runs
    every time to fingerprint the inputs): {} means up to date."""
    status = json.loads(sh(["dvc", "status", "--json", *args], root).stdout)
    assert status.pop("inputs", ["always changed"]) == ["always changed"], status
    return status


def tokenized_project(tmp_path: Path, dev_lines: int) -> Path:
    """tmp_path/project with the data a bench reads after tokenize: clean en-de train (40 lines), dev
    (`dev_lines`) and test (10), and a 30-piece SentencePiece model with the <2de> tag."""
    clean = tmp_path / "project" / "data" / "clean" / "en-de"
    clean.mkdir(parents=True)
    text = ["a small dog runs", "two men sit on a bench", "ein kleiner Hund rennt", "zwei Männer sitzen"] * 100
    for split, n in (("train", 40), ("dev", dev_lines), ("test", 10)):
        for side in ("src", "tgt"):
            (clean / f"{split}.{side}").write_text("".join(t + "\n" for t in text[:n]), encoding="utf-8")
    tok = tmp_path / "project" / "data" / "tokenizer"
    tok.mkdir(parents=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_prefix=str(tok / "spm"), vocab_size=30,
                                   user_defined_symbols=["<2de>"], pad_id=0, unk_id=1, bos_id=2, eos_id=3)
    return tmp_path / "project"
