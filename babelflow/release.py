"""A release folder: everything needed to translate with a trained model, and to check it is intact.

Layout: model.safetensors, model.json, spm.model, spm.vocab, params.yaml, metrics.json,
MODEL_CARD.md, curve.png (when the adapt stage ran) and SHA256SUMS over every other file.

The bytes depend only on the inputs: no timestamps, no absolute paths, sorted keys, so building twice
from the same artifacts gives an identical folder and identical DVC hashes.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from babelflow.errors import InputError, IntegrityError
from babelflow.io import atomic_dir, read_json, sha256_file, write_json, write_text

SUMS = "SHA256SUMS"
REQUIRED_MODEL = ("model.safetensors", "model.json")
REQUIRED_TOKENIZER = ("spm.model", "spm.vocab")
MAX_LISTED_INPUTS = 25  # a gettext manifest lists thousands of catalogs; the card shows the first few


@dataclass(frozen=True)
class ReleaseInputs:
    train_dir: Path
    tokenizer_dir: Path
    eval_metrics: Path | None = None  # data/eval/metrics.json
    adapt_dir: Path | None = None  # data/adapt (results.json, curve.png)
    manifest: Path | None = None  # data/raw/manifest.json


def _optional_json(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return None
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None


def _copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise InputError(src, "missing: the release needs it (run the stage that makes it first)")
    shutil.copyfile(src, dst)  # bytes only: no mtime or mode carried over


def dump_params_yaml(params: dict) -> str:
    return yaml.safe_dump(params, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100)


def sha256sums(folder: Path) -> str:
    """sha256sum-compatible lines (`<hex>  <name>`), sorted by name, for every file but SHA256SUMS."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != SUMS)
    return "".join(f"{sha256_file(folder / n)}  {n}\n" for n in names)


def verify_release(folder: str | Path) -> None:
    """Raise IntegrityError unless every file listed in SHA256SUMS is present with that hash."""
    folder = Path(folder)
    sums = folder / SUMS
    if not sums.is_file():
        raise IntegrityError(f"{sums}: missing; not a babelflow release folder")
    listed = 0
    for lineno, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or name.startswith("/") or ".." in Path(name).parts:
            raise IntegrityError(f"{sums}:{lineno}: malformed line")
        path = folder / name
        if not path.is_file():
            raise IntegrityError(f"{path}: listed in {SUMS} but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise IntegrityError(f"{path}: sha256 {actual} does not match {SUMS} ({digest}); "
                                 "the release was modified or is corrupt")
        listed += 1
    if listed == 0:
        raise IntegrityError(f"{sums}: lists no files")


# ------------------------------------------------------------------------------------------ model card
def _fmt(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def _manifest_inputs(manifest: Any) -> list[dict]:
    """Every input record of a manifest, wherever it sits (a list of dicts carrying sha256)."""
    found: list[dict] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "sha256" in node and ("path" in node or "source" in node):
                found.append(node)
                return
            for key in sorted(node):
                walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(manifest)
    return found


def _sources_section(params: dict, manifest: Any, manifest_sha: str | None) -> list[str]:
    lines = ["## Data sources", ""]
    for src in params.get("collect", {}).get("sources", []):
        where = src.get("path") or src.get("url") or src.get("test_set") or ", ".join(src.get("search", []))
        licence = src.get("licence") or "not stated"
        lines.append(f"- **{src.get('name')}** ({src.get('type')}): {where}; licence: {licence}")
    lines.append("")
    if manifest is None:
        return lines + ["No data/raw/manifest.json was available: input hashes are not recorded.", ""]
    lines += [f"Collection manifest sha256: `{manifest_sha}`", ""]
    inputs = _manifest_inputs(manifest)
    if not inputs:
        return lines
    by_source: dict[str, list[dict]] = {}
    for rec in inputs:
        by_source.setdefault(str(rec.get("source", "?")), []).append(rec)
    lines += ["| source | inputs | lines kept | sha256 of the sorted input hashes |", "|---|---:|---:|---|"]
    for name in sorted(by_source):
        recs = by_source[name]
        combined = hashlib.sha256("\n".join(sorted(str(r.get("sha256")) for r in recs)).encode()).hexdigest()
        kept = sum(int(r.get("kept") or 0) for r in recs)
        lines.append(f"| {name} | {len(recs)} | {kept} | `{combined}` |")
    lines += ["", "Inputs (first %d of %d, by path):" % (min(len(inputs), MAX_LISTED_INPUTS), len(inputs)), ""]
    for rec in sorted(inputs, key=lambda r: (str(r.get("path")), str(r.get("lang"))))[:MAX_LISTED_INPUTS]:
        lines.append(f"- `{rec.get('sha256')}` {rec.get('path')} ({rec.get('lang', '?')})")
    return lines + [""]


def _metrics_section(eval_metrics: Any) -> list[str]:
    lines = ["## Evaluation (test split, sacrebleu)", ""]
    if not eval_metrics:
        return lines + ["No evaluation metrics were available when this release was built.", ""]
    pairs = {k: v for k, v in eval_metrics.items() if isinstance(v, dict) and "signatures" in v}
    lines += ["| pair | n | BLEU | chrF++ | TER |", "|---|---:|---:|---:|---:|"]
    for pair in sorted(pairs):
        m = pairs[pair]
        lines.append(f"| {pair} | {m.get('n')} | {_fmt(m.get('bleu'))} | {_fmt(m.get('chrf'))} | {_fmt(m.get('ter'))} |")
    macro = eval_metrics.get("macro")
    if isinstance(macro, dict):
        lines.append(f"| macro average | | {_fmt(macro.get('bleu'))} | {_fmt(macro.get('chrf'))} | {_fmt(macro.get('ter'))} |")
    external = eval_metrics.get("external") or {}
    for name in sorted(external):
        m = external[name]
        lines.append(f"| {name} (external, {m.get('tgt')}) | {m.get('n')} | {_fmt(m.get('bleu'))} | "
                     f"{_fmt(m.get('chrf'))} | {_fmt(m.get('ter'))} |")
    lines += ["", "Signatures:", ""]
    sigs: dict[tuple[str, str], list[str]] = {}
    for pair in sorted(pairs):
        for metric, sig in sorted(pairs[pair]["signatures"].items()):
            sigs.setdefault((metric, sig), []).append(pair)
    for (metric, sig), ps in sorted(sigs.items()):
        lines.append(f"- {metric} ({', '.join(ps)}): `{sig}`")
    return lines + [""]


def _adapt_rows(results: Any) -> tuple[list[str], list[list[str]]] | None:
    """A table from the adapt results: a `curve`/`rows` list of records, or {k: {init: bleu}}."""
    if not isinstance(results, dict):
        return None
    for key in ("curve", "rows", "table"):
        rows = results.get(key)
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            cols = sorted({c for r in rows for c in r}, key=lambda c: (c != "k", c))
            return cols, [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    nested = {k: v for k, v in results.items() if isinstance(v, dict)
              and v and all(isinstance(x, (int, float)) for x in v.values())}
    if nested:
        inits = sorted({i for v in nested.values() for i in v})

        def order(k: str) -> tuple:
            return (0, int(k)) if str(k).isdigit() else (1, str(k))

        return ["k"] + inits, [[str(k)] + [_fmt(nested[k].get(i, "")) for i in inits]
                               for k in sorted(nested, key=order)]
    return None


def _adapt_section(results: Any, has_curve: bool) -> list[str]:
    lines = ["## Adaptation to held-out languages", ""]
    if results is None:
        return lines + ["The adapt stage did not run (or was disabled): no adaptation results.", ""]
    table = _adapt_rows(results)
    if table:
        cols, rows = table
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        lines += ["```json", json.dumps(results, indent=2, sort_keys=True, ensure_ascii=False), "```"]
    lines.append("")
    if has_curve:
        lines += ["![Test BLEU after adapting on k sentences](curve.png)", ""]
    return lines


def render_model_card(params: dict, eval_metrics: Any, adapt_results: Any, has_curve: bool,
                      manifest: Any, manifest_sha: str | None, train_state: Any, model_info: Any) -> str:
    rel = params.get("release", {})
    langs = params.get("languages", {})
    lines = [f"# {rel.get('name')} {rel.get('version')}", ""]
    lines += ["## Languages", "",
              f"- source: {langs.get('source')}",
              f"- targets: {', '.join(langs.get('targets', []))} (select with the `<2xx>` tag, "
              "e.g. `babelflow translate --to de`)",
              f"- held out (adaptation experiments only): {', '.join(langs.get('heldout', [])) or 'none'}",
              ""]
    lines += _sources_section(params, manifest, manifest_sha)
    lines += ["## Model and training", ""]
    if isinstance(model_info, dict):
        lines.append(f"- architecture: {model_info.get('arch')}, vocabulary {model_info.get('vocab_size')}")
        cfg = model_info.get("config")
        if isinstance(cfg, dict):
            lines.append("- config: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items())
                                                 if not isinstance(v, (dict, list))))
    if isinstance(train_state, dict):
        # Wall time is left out on purpose: it differs between identical runs and would make the
        # release bytes (and its DVC hash) change without any change in the model.
        for key in ("steps", "step", "tokens_seen", "tokens", "epochs", "device", "best_dev_loss", "stopped"):
            if key in train_state and not isinstance(train_state[key], (dict, list)):
                lines.append(f"- {key.replace('_', ' ')}: {_fmt(train_state[key])}")
    else:
        lines.append("- no train_state.json: training budget unknown")
    tr = params.get("train", {})
    lines += [f"- budget (params): max_steps={tr.get('max_steps')}, max_tokens={tr.get('max_tokens')}, "
              f"accumulate={tr.get('accumulate')}, seed={params.get('seed')}", ""]
    lines += _metrics_section(eval_metrics)
    lines += _adapt_section(adapt_results, has_curve)
    lines += ["## Intended use and limits", "", str(rel.get("intended_use", "")).strip(), "",
              "Scores are on held-out test splits of the training sources; expect lower quality on "
              "other domains. The model can produce fluent but wrong translations and does not flag them.",
              "",
              "## Files and integrity", "",
              f"`{SUMS}` lists the sha256 of every other file (`sha256sum -c {SUMS}`); "
              "`babelflow translate` refuses a release whose files do not match it. "
              "`params.yaml` is the full resolved configuration that produced this model.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def build_release(target: str | Path, params: dict, inputs: ReleaseInputs) -> dict:
    """Write the release folder atomically; returns {file name: sha256}."""
    target = Path(target)
    manifest = _optional_json(inputs.manifest)
    manifest_sha = sha256_file(inputs.manifest) if manifest is not None else None
    eval_metrics = _optional_json(inputs.eval_metrics)
    adapt_results = _optional_json(inputs.adapt_dir / "results.json") if inputs.adapt_dir else None
    curve = inputs.adapt_dir / "curve.png" if inputs.adapt_dir else None
    has_curve = curve is not None and curve.is_file()
    train_state = _optional_json(inputs.train_dir / "train_state.json")
    model_info = _optional_json(inputs.train_dir / "model.json")

    with atomic_dir(target) as out:
        for name in REQUIRED_MODEL:
            _copy(inputs.train_dir / name, out / name)
        for name in REQUIRED_TOKENIZER:
            _copy(inputs.tokenizer_dir / name, out / name)
        if has_curve:
            _copy(curve, out / "curve.png")
        write_text(out / "params.yaml", dump_params_yaml(params))
        write_json(out / "metrics.json", {"eval": eval_metrics, "adapt": adapt_results})
        write_text(out / "MODEL_CARD.md", render_model_card(
            params, eval_metrics, adapt_results, has_curve, manifest, manifest_sha, train_state, model_info))
        sums = sha256sums(out)
        write_text(out / SUMS, sums)
    return {line[66:]: line[:64] for line in sums.splitlines()}
