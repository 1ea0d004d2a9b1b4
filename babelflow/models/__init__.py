"""Building, saving and loading the model families behind one interface (`Seq2Seq`).

A saved model is a folder: `model.safetensors` (weights only, never pickles) and `model.json`
(`arch`, `config`, `vocab_size`, plus the weights' sha256 so a damaged or tampered file is refused
instead of silently translating garbage).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from babelflow.config import ModelConfig, RNNConfig, TransformerConfig
from babelflow.errors import InputError, IntegrityError
from babelflow.io import atomic_path, read_json, sha256_file, write_json
from babelflow.models.base import EncoderOutput, Seq2Seq
from babelflow.models.rnn import RNNSeq2Seq
from babelflow.models.transformer import Transformer

__all__ = [
    "EncoderOutput", "Seq2Seq", "Transformer", "RNNSeq2Seq",
    "build_model", "build_model_from_dict", "save_model", "save_weights", "load_model",
]

WEIGHTS = "model.safetensors"
META = "model.json"


def build_model(model_cfg: ModelConfig, vocab_size: int) -> Seq2Seq:
    if model_cfg.arch == "transformer":
        return Transformer(model_cfg.transformer, vocab_size)
    if model_cfg.arch == "rnn":
        return RNNSeq2Seq(model_cfg.rnn, vocab_size)
    raise ValueError(f"unknown arch {model_cfg.arch!r}")


def build_model_from_dict(d: dict[str, Any], path: str | Path = "<model config>") -> Seq2Seq:
    """Rebuild from `Seq2Seq.config_dict()` (the content of model.json)."""
    try:
        arch = d["arch"]
        vocab_size = int(d["vocab_size"])
        if arch == "transformer":
            return Transformer(TransformerConfig.model_validate(d["config"]), vocab_size)
        if arch == "rnn":
            return RNNSeq2Seq(RNNConfig.model_validate(d["config"]), vocab_size)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise InputError(path, f"invalid model description: {exc}") from None
    raise InputError(path, f"unknown arch {arch!r} (expected 'transformer' or 'rnn')")


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write `model`'s weights to `path` as safetensors, atomically: the one place weights reach the
    disk (save_model, checkpoints).

    safetensors writes through a temporary file of its own, created 0600, and reports a full disk as a
    SafetensorError with the errno only in its text: atomic_path gives the file every artifact's mode,
    and a failed write becomes an OSError with that errno, named after `path` (the stages exit 3).
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    # Tied weights are a single Parameter used twice (F.linear on the embedding), so the state dict
    # has no aliases and save_file can write it as is.
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        try:
            save_file(state, str(tmp), metadata=metadata)
        except SafetensorError as exc:
            code = re.search(r"os error (\d+)", str(exc))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from exc


def save_model(model: Seq2Seq, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, out_dir / WEIGHTS, metadata={"arch": model.arch})
    meta = model.config_dict()
    meta["weights_sha256"] = sha256_file(out_dir / WEIGHTS)
    write_json(out_dir / META, meta)
    return out_dir


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> Seq2Seq:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    meta_path, weights_path = model_dir / META, model_dir / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise InputError(p, "missing model file")
    try:
        meta = read_json(meta_path)
    except ValueError as exc:
        raise InputError(meta_path, f"not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise InputError(meta_path, "expected a JSON object")
    model = build_model_from_dict(meta, meta_path)
    expected_sha = meta.get("weights_sha256")
    if expected_sha is not None and sha256_file(weights_path) != expected_sha:
        raise IntegrityError(f"{weights_path}: sha256 does not match {meta_path} (file damaged or altered)")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise IntegrityError(f"{weights_path}: not a readable safetensors file: {exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise IntegrityError(
            f"{weights_path}: weights do not fit {meta.get('arch')} described in {meta_path}: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, tensor in state.items():
        if tensor.shape != own[name].shape or tensor.dtype != own[name].dtype:
            raise IntegrityError(
                f"{weights_path}: {name} is {tuple(tensor.shape)} {tensor.dtype}, "
                f"model expects {tuple(own[name].shape)} {own[name].dtype}"
            )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
