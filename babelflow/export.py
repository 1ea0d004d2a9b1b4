"""Export the Transformer to CTranslate2 (fast CPU/GPU inference) through ctranslate2's spec API.

ctranslate2 is an optional dependency (`pip install babelflow[export]`); it is imported only here.
Positions are written as an explicit table, so CTranslate2 uses exactly the model's sinusoidal (or
learned) encodings instead of its own sinusoid layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from babelflow.errors import BabelflowError, InputError
from babelflow.ct2_decode import PROVENANCE, weights_sha256
from babelflow.io import atomic_dir, read_json, write_json
from babelflow.models.transformer import Transformer
from babelflow.specials import BOS_ID, EOS_ID, UNK_ID

# Everything an export folder holds: a folder with these files only, marker included, is an earlier
# export, which may be made again without --force (model.bin etc. are rebuilt from the release).
EXPORT_FILES = frozenset({PROVENANCE, "model.bin", "config.json", "shared_vocabulary.json",
                          "source_vocabulary.json", "target_vocabulary.json"})


def _np(t: torch.Tensor):
    # A copy: .numpy() of a float32 CPU tensor shares its memory, and spec.optimize(quantization=...)
    # rewrites the arrays in place, which would quantize the caller's live model.
    return t.detach().to("cpu", torch.float32).contiguous().numpy().copy()


def _linear(spec, layer: torch.nn.Linear | None = None, weight=None, bias=None) -> None:
    spec.weight = _np(layer.weight if layer is not None else weight)
    b = layer.bias if layer is not None else bias
    if b is not None:
        spec.bias = _np(b)


def _norm(spec, ln: torch.nn.LayerNorm) -> None:
    spec.gamma = _np(ln.weight)
    spec.beta = _np(ln.bias)


def _ffn(spec, norm: torch.nn.LayerNorm, ffn) -> None:
    _norm(spec.layer_norm, norm)
    _linear(spec.linear_0, ffn.fc1)
    _linear(spec.linear_1, ffn.fc2)


def _self_attn(spec, norm, attn) -> None:
    _norm(spec.layer_norm, norm)
    _linear(
        spec.linear[0],
        weight=torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
        bias=torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]),
    )
    _linear(spec.linear[1], attn.out_proj)


def _cross_attn(spec, norm, attn) -> None:
    _norm(spec.layer_norm, norm)
    _linear(spec.linear[0], attn.q_proj)
    _linear(
        spec.linear[1],
        weight=torch.cat([attn.k_proj.weight, attn.v_proj.weight]),
        bias=torch.cat([attn.k_proj.bias, attn.v_proj.bias]),
    )
    _linear(spec.linear[2], attn.out_proj)


def export_ctranslate2(
    model: Transformer, vocabulary: Sequence[str], out_dir: str | Path, quantization: str | None = None,
    provenance: dict | None = None,
) -> Path:
    """Write a CTranslate2 model folder; `vocabulary[i]` is the token string of id i. `provenance`
    becomes its PROVENANCE marker, written inside the swap so that no export ever lacks it."""
    try:
        import ctranslate2
        from ctranslate2.specs import transformer_spec
    except ImportError:
        raise BabelflowError("ctranslate2 is not installed (pip install 'babelflow[export]')") from None
    if not isinstance(model, Transformer):
        raise BabelflowError(f"only the transformer can be exported to CTranslate2, not {model.arch!r}")
    if len(vocabulary) != model.vocab_size:
        raise BabelflowError(f"vocabulary has {len(vocabulary)} entries, the model {model.vocab_size}")
    cfg = model.cfg
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers), cfg.heads, pre_norm=True
    )
    with torch.no_grad():
        positions = model._positions(cfg.max_positions, 0, torch.device("cpu"))
    for side in (spec.encoder, spec.decoder):
        emb = side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings
        emb.weight = _np(model.embed.weight)
        side.scale_embeddings = True
        side.position_encodings.encodings = _np(positions)
    _norm(spec.encoder.layer_norm, model.encoder_norm)
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers):
        _self_attn(layer_spec.self_attention, layer.self_norm, layer.self_attn)
        _ffn(layer_spec.ffn, layer.ffn_norm, layer.ffn)
    _norm(spec.decoder.layer_norm, model.decoder_norm)
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder_layers):
        _self_attn(layer_spec.self_attention, layer.self_norm, layer.self_attn)
        _cross_attn(layer_spec.attention, layer.cross_norm, layer.cross_attn)
        _ffn(layer_spec.ffn, layer.ffn_norm, layer.ffn)
    out_w = model.embed.weight if model.output_proj is None else model.output_proj.weight
    _linear(spec.decoder.projection, weight=out_w, bias=torch.zeros(model.vocab_size))
    vocab = list(vocabulary)
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)
    spec.config.bos_token = vocab[BOS_ID]
    spec.config.eos_token = vocab[EOS_ID]
    spec.config.unk_token = vocab[UNK_ID]
    spec.config.decoder_start_token = vocab[BOS_ID]
    spec.config.layer_norm_epsilon = model.encoder_norm.eps
    spec.validate()
    spec.optimize(quantization=quantization)
    with atomic_dir(out_dir) as tmp:
        spec.save(str(tmp))
        if provenance is not None:
            write_json(tmp / PROVENANCE, provenance)
    del ctranslate2
    return Path(out_dir)


def _is_earlier_export(folder: Path) -> bool:
    try:
        return "model_sha256" in read_json(folder / PROVENANCE)
    except (OSError, ValueError, TypeError):
        return False


def check_output(release: Path, out: Path, force: bool) -> None:
    """Refuse an --output whose replacement would lose something: export_ctranslate2 swaps the whole
    folder in (atomic_dir deletes the old one). Never the release, a folder inside it or one holding it,
    nor a file, even with --force; a non-empty folder that is not an earlier export only with --force."""
    rel, dest = release.resolve(), out.resolve()
    if dest == rel or rel in dest.parents or dest in rel.parents:
        raise InputError(out, f"is, holds or lies inside the release {release} it exports; "
                              "choose a folder outside it")
    if out.is_symlink():
        raise InputError(out, "is a symbolic link, not a folder; give the folder itself")
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise InputError(out if existing == out.absolute() else existing, "exists and is not a folder")
    if existing != out.absolute() or force:
        return
    entries = sorted(out.iterdir())
    if not entries:
        return
    if not _is_earlier_export(out):
        raise InputError(out, f"is not empty and not an earlier export (no valid {PROVENANCE}); "
                              "--force replaces it and everything in it")
    foreign = [p for p in entries if p.name not in EXPORT_FILES or not p.is_file() or p.is_symlink()]
    if foreign:
        raise InputError(foreign[0], "is not part of an earlier export; --force replaces the folder and it")


def check_quantization(quantization: str | None) -> None:
    """Refuse a quantization CTranslate2 does not know before anything is read or written."""
    if quantization is None:
        return
    try:
        from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES
    except ImportError:
        raise BabelflowError("ctranslate2 is not installed (pip install 'babelflow[export]')") from None
    if quantization not in ACCEPTED_MODEL_TYPES:
        raise BabelflowError(f"--quantization {quantization}: unknown; use one of {', '.join(ACCEPTED_MODEL_TYPES)}")


def build_parser():
    from babelflow.cli import Parser, examples, paragraph

    parser = Parser(
        prog="babelflow export",
        description=paragraph("Export a release's model for fast inference. The export is checked against the release "
                    "(SHA256SUMS) first, and records which weights it was made from, so that `babelflow "
                    "translate --ctranslate2` refuses an export of other weights."),
        epilog=examples("babelflow export --format ctranslate2 --release data/release --output ct2 --quantization int8",
                        "babelflow translate --release data/release --ctranslate2 ct2 --to de < in.en > out.de"))
    parser.add_argument("--format", choices=["ctranslate2"], required=True,
                        help="the inference engine to export for: ctranslate2 (the Transformer only)")
    parser.add_argument("--release", default="data/release",
                        help="release folder with model.* and spm.model (default: data/release)")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder to write the export to; it is replaced whole. Must be new, empty or an "
                             f"earlier export (has {PROVENANCE}), and never the release or a folder inside or "
                             "around it")
    parser.add_argument("--force", action="store_true",
                        help="replace a non-empty --output that is not an earlier export, deleting what it holds")
    parser.add_argument("--quantization", default=None, metavar="TYPE",
                        help="store the weights as TYPE: int8, int8_float32, int8_float16, int8_bfloat16, int16, "
                             "float16, bfloat16 or float32 (default: float32, as trained)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`babelflow export --format ctranslate2 --release data/release --output OUT [--quantization int8]`."""
    from babelflow.models import load_model
    from babelflow.release import verify_release
    from babelflow.tokenizer import Tokenizer

    args = build_parser().parse_args(argv)
    release, out = Path(args.release), Path(args.output)
    check_quantization(args.quantization)
    check_output(release, out, args.force)  # before anything is read or written
    verify_release(release)  # what is exported must be what the release's SHA256SUMS vouch for
    model = load_model(release)
    # Lets `babelflow translate --ctranslate2` refuse an export of some other model's weights.
    made_from = weights_sha256(read_json(release / "model.json"), release / "model.safetensors")
    export_ctranslate2(model, Tokenizer(release / "spm.model").pieces, out, args.quantization,
                       provenance={"model_sha256": made_from, "quantization": args.quantization})
    print(f"exported to {out}")
    return 0
