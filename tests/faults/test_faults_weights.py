"""Weights on a full disk, and their permissions.

Every place weights reach the disk (the train and meta models, checkpoints, the release copy, the
CTranslate2 export) fails on a full disk with an OSError that carries the errno and the final path
(so the stages and the CLI exit 3 naming it), leaves the old artifact and no temporary file, and
writes model.safetensors with the mode every other artifact gets. RLIMIT_FSIZE stands in for a full
disk, as in test_faults_disk.py: past the limit a write fails with EFBIG where ENOSPC would.
"""
from __future__ import annotations

import importlib.util
import os
import random
import resource
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from babelflow.config import parse_params
from tasks._common import Paths

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64 * 1024  # more than any small artifact, less than the weights below

PARAMS = {
    "seed": 5,
    "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["ga"]},
    "collect": {"sources": [{"type": "aligned", "name": "t", "path": "x"}]},
    "tokenizer": {"vocab_size": 400, "sample_sentences": 2000},
    "model": {"arch": "transformer", "transformer": {"d_model": 32, "ffn_dim": 64, "heads": 2, "encoder_layers": 1,
                                                     "decoder_layers": 1, "max_positions": 64}},
    "train": {"max_tokens": 256, "max_steps": 2, "warmup_steps": 1, "checkpoint_every": 1, "validate_every": 2,
              "dev_bleu_sentences": 0, "threads": 1, "max_len": 40, "device": "cpu"},
    "meta": {"algorithm": "fomaml", "meta_steps": 2, "tasks_per_step": 2, "inner_steps": 1,
             "support_tokens": 200, "query_tokens": 200, "checkpoint_every": 1},
}
WORDS = "open save file folder close print the a new old window settings user name help about".split()


def _limit_fsize(limit: int = LIMIT) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", BABELFLOW_LOG="WARNING")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """clean + tokenize of a tiny synthetic project (no weights yet), and its params.yaml."""
    from tasks import encode, tokenize

    root = tmp_path_factory.mktemp("weights")
    rng = random.Random(3)
    for lang in ("de", "fr", "ga"):
        folder = root / "data" / "clean" / f"en-{lang}"
        folder.mkdir(parents=True)
        for split, n in (("train", 60), ("dev", 6), ("test", 6)):
            src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(n)]
            (folder / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
            (folder / f"{split}.tgt").write_text("".join(s[::-1] + lang + "\n" for s in src), encoding="utf-8")
    params = parse_params(PARAMS)
    (root / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8")
    tokenize.run(params, Paths(root))
    encode.run(params, Paths(root))
    return root, params


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_weights_get_the_mode_of_every_other_artifact(project, tmp_path):
    import shutil

    from tasks import meta, release, train

    src, params = project
    root = tmp_path / "p"
    shutil.copytree(src, root)
    paths = Paths(root)
    old = os.umask(0o022)
    try:
        train.run(params, paths)
        meta.run(params, paths)
        release.run(params, paths)
    finally:
        os.umask(old)
    weights = [paths.train / "model.safetensors", paths.meta / "model.safetensors", paths.release / "model.safetensors",
               *sorted(paths.checkpoints("train").glob("step_*/model.safetensors")),
               *sorted(paths.checkpoints("meta").glob("step_*/model.safetensors"))]
    assert len(weights) == 7
    expected = mode(paths.train / "model.json")
    assert expected == 0o644
    assert {str(w.relative_to(root)): oct(mode(w)) for w in weights} == {
        str(w.relative_to(root)): oct(expected) for w in weights}


SCRIPT = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from babelflow.config import ModelConfig
    from babelflow.models import build_model, save_model
    from babelflow.checkpoint import save_checkpoint
    from babelflow.release import ReleaseInputs, build_release

    work = Path(sys.argv[1])
    big = build_model(ModelConfig.model_validate({"transformer": {
        "d_model": 64, "ffn_dim": 128, "heads": 2, "encoder_layers": 1, "decoder_layers": 1}}), 400)
    small = build_model(ModelConfig.model_validate({"transformer": {
        "d_model": 8, "ffn_dim": 8, "heads": 2, "encoder_layers": 1, "decoder_layers": 1}}), 40)

    def attempt(name, fn):
        try:
            fn()
            print(name, "no error")
        except OSError as exc:
            print(name, exc.errno, Path(exc.filename).relative_to(work))
        except Exception as exc:
            print(name, "not an OSError:", type(exc).__name__, str(exc)[:200].replace("\\n", " "))

    attempt("model", lambda: save_model(big, work / "model"))
    attempt("checkpoint", lambda: save_checkpoint(work / "ckpt", 1, big, {"step": 1}, keep=2))
    attempt("state", lambda: save_checkpoint(work / "ckpt", 2, small, {"big": torch.zeros(40000)}, keep=2))
    attempt("release", lambda: build_release(work / "release", {}, ReleaseInputs(work / "train", work / "tok")))
    if sys.argv[2] == "ct2":
        from babelflow.export import export_ctranslate2
        attempt("export", lambda: export_ctranslate2(big, [str(i) for i in range(400)], work / "ct2"))
""")


def test_disk_full_while_writing_weights_names_the_file_and_keeps_the_old_one(tmp_path):
    import torch

    from babelflow.config import ModelConfig
    from babelflow.models import build_model, save_model

    try:
        import ctranslate2  # noqa: F401
        ct2 = "ct2"
    except ImportError:
        ct2 = "-"
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate({"transformer": {
        "d_model": 64, "ffn_dim": 128, "heads": 2, "encoder_layers": 1, "decoder_layers": 1}}), 400)
    save_model(model, tmp_path / "train")  # what the release copies: 100+ KB of weights
    for name in ("spm.model", "spm.vocab"):
        (tmp_path / "tok").mkdir(exist_ok=True)
        (tmp_path / "tok" / name).write_text("x\n")
    old_model = tmp_path / "model"
    save_model(build_model(ModelConfig.model_validate({"transformer": {
        "d_model": 8, "ffn_dim": 8, "heads": 2, "encoder_layers": 1, "decoder_layers": 1}}), 40), old_model)
    before = {p.name: p.read_bytes() for p in old_model.iterdir()}
    (tmp_path / "ckpt").mkdir()
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), ct2], cwd=ROOT, env=_env(), text=True,
                         capture_output=True, preexec_fn=_limit_fsize, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    got = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    # EFBIG (27) with the path the file would have had, not a temporary one, nor the copy's source.
    assert got["model"] == "27 model/model.safetensors", res.stdout
    assert got["checkpoint"] == "27 ckpt/step_00000001/model.safetensors", res.stdout
    assert got["state"] == "27 ckpt/step_00000002/state.pt", res.stdout
    assert got["release"] == "27 release/model.safetensors", res.stdout
    if ct2 == "ct2":
        assert got["export"] == "27 ct2", res.stdout  # CTranslate2 writes the folder's files itself
    assert {p.name: p.read_bytes() for p in old_model.iterdir()} == before
    assert list((tmp_path / "ckpt").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "model", "tok", "train"]


def test_train_stage_on_a_full_disk_exits_3_naming_the_weights(project, tmp_path):
    import shutil

    src, _ = project
    root = tmp_path / "p"
    shutil.copytree(src, root)
    res = subprocess.run([sys.executable, "-m", "tasks.train", "--root", str(root), "--params",
                          str(root / "params.yaml")], cwd=ROOT, env=_env(), text=True, capture_output=True,
                         preexec_fn=_limit_fsize, timeout=300)
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr[-3000:]
    where = str(root / "data" / "checkpoints" / "train" / "step_00000001" / "model.safetensors")
    assert f"babelflow train: error: no space left writing {where} " in res.stderr, res.stderr[-3000:]
    assert not (root / "data" / "train").exists()


def test_cli_on_a_full_disk_exits_3_naming_the_file(tmp_path):
    from tests.release.conftest import make_project
    from tasks import release

    params = make_project(tmp_path / "p", with_adapt=False)
    paths = Paths(tmp_path / "p")
    release.run(params, paths)  # its weights are about 50 KB: past a 16 KB "disk"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "babelflow.cli", *args], cwd=ROOT, env=_env(), text=True,
                              capture_output=True, preexec_fn=lambda: _limit_fsize(16 * 1024), timeout=120)

    inp, out = tmp_path / "in.txt", tmp_path / "out.txt"
    inp.write_text("a man is riding a bike\n" * 2000, encoding="utf-8")
    res = cli("translate", "--release", str(paths.release), "--to", "de", "--input", str(inp), "--output", str(out),
              "--beam", "1", "--threads", "1")
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"no space left writing {out} " in res.stderr, res.stderr
    assert not out.exists()
    if importlib.util.find_spec("ctranslate2") is None:
        return
    ct2 = tmp_path / "ct2"
    res = cli("export", "--format", "ctranslate2", "--release", str(paths.release), "--output", str(ct2))
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"no space left writing {ct2} " in res.stderr, res.stderr  # CTranslate2 writes the folder
    assert not ct2.exists()
