"""A release folder: everything needed to translate with a trained model, and to check it is intact.

Layout: model.safetensors, model.json, spm.model, spm.vocab, params.yaml, metrics.json,
MODEL_CARD.md, learning_curve.png (the training curve, drawn by evaluate), curve.png (when the adapt
stage ran) and SHA256SUMS over every other file.

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
# What `babelflow translate` and `babelflow export` read: a release whose SHA256SUMS leaves one out
# would let that file be swapped unnoticed.
VERIFIED = ("model.safetensors", "model.json", "spm.model", "params.yaml")
VOLATILE_KEYS = frozenset({"elapsed_s", "duration_s", "seconds", "timestamp", "time_s"})
MAX_LISTED_INPUTS = 25  # a gettext manifest lists thousands of catalogs; the card shows the first few


@dataclass(frozen=True)
class ReleaseInputs:
    train_dir: Path
    tokenizer_dir: Path
    eval_metrics: Path | None = None  # data/eval/metrics.json
    adapt_dir: Path | None = None  # data/adapt (results.json, curve.png)
    manifest: Path | None = None  # data/raw/manifest.json
    clean_report: Path | None = None  # data/clean/report.json
    learning_curve: Path | None = None  # data/eval/learning_curve.png


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
    """Raise IntegrityError unless every file listed in SHA256SUMS is present with that hash, and the
    list includes every file a release is read through (VERIFIED)."""
    folder = Path(folder)
    sums = folder / SUMS
    if not sums.is_file():
        raise IntegrityError(f"{sums}: missing; not a babelflow release folder")
    listed: set[str] = set()
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
        listed.add(name)
    if not listed:
        raise IntegrityError(f"{sums}: lists no files")
    unlisted = [name for name in VERIFIED if name not in listed]
    if unlisted:
        raise IntegrityError(f"{sums}: does not list {', '.join(unlisted)}; the release was modified or is "
                             "incomplete")


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
    lines += ["| source | inputs | lines kept | sha256 of the sorted input hashes |",
              "|---|---:|---:|---|"]
    for name in sorted(by_source):
        recs = by_source[name]
        joined = "\n".join(sorted(str(r.get("sha256")) for r in recs))
        combined = hashlib.sha256(joined.encode()).hexdigest()
        kept = sum(int(r.get("kept") or 0) for r in recs)
        lines.append(f"| {name} | {len(recs)} | {kept} | `{combined}` |")
    shown = min(len(inputs), MAX_LISTED_INPUTS)
    lines += ["", f"Inputs (first {shown} of {len(inputs)} by path; all in the manifest):", ""]
    for rec in sorted(inputs, key=lambda r: (str(r.get("path")), str(r.get("lang"))))[:MAX_LISTED_INPUTS]:
        lines.append(f"- `{rec.get('sha256')}` {rec.get('path')} ({rec.get('lang', '?')})")
    return lines + [""]


def _skipped_section(manifest: Any, clean_report: Any) -> list[str]:
    """What `on_error: skip` left out: each skipped input, or the first few and where the rest are."""
    lines = ["## Skipped inputs", ""]
    skipped = (manifest.get("skipped") or []) if isinstance(manifest, dict) else []
    pairs = (clean_report.get("pairs") or {}) if isinstance(clean_report, dict) else {}
    invalid = [(pair, split, rep) for pair in sorted(pairs) for split, rep in pairs[pair].items()
               if (rep.get("removed") or {}).get("invalid_input")]
    if manifest is None:
        lines.append("Without data/raw/manifest.json the inputs collect skipped are unknown.")
    elif not skipped and not invalid:
        return lines + ["No input was skipped (collect.on_error, clean.on_error).", ""]
    if skipped:
        lines += [f"collect skipped {len(skipped)} inputs whole or in part (`collect.on_error: skip`):", ""]
        for sk in skipped[:MAX_LISTED_INPUTS]:
            what = "skipped whole" if sk.get("whole") else f"{sk.get('lines')} line(s) skipped"
            lines.append(f"- {sk.get('path')} ({sk.get('lang')}): {what}: {sk.get('reason')}")
        if len(skipped) > MAX_LISTED_INPUTS:
            lines.append(f"- and {len(skipped) - MAX_LISTED_INPUTS} more: every one is under `skipped` in "
                         "data/raw/manifest.json")
    for pair, split, rep in invalid:
        ex = ((rep.get("examples") or {}).get("invalid_input") or [None])[0]
        first = f", first {ex.get('file')}:{ex.get('line')}: {ex.get('error')}" if ex else ""
        lines.append(f"- clean, {pair} {split}: {rep['removed']['invalid_input']} line(s) skipped as invalid "
                     f"(`clean.on_error: skip`){first}; all in data/clean/report.json")
    return lines + [""]


def _metrics_section(eval_metrics: Any) -> list[str]:
    lines = ["## Evaluation (test split, sacrebleu)", ""]
    if not eval_metrics:
        return lines + ["No evaluation metrics were available when this release was built.", ""]
    pairs = {k: v for k, v in eval_metrics.items() if isinstance(v, dict) and "signatures" in v}
    lines += ["| pair | n | BLEU | chrF++ | TER |", "|---|---:|---:|---:|---:|"]
    def row(label: str, m: dict) -> str:
        # An empty test split has no scores (None), not scores of 0: its note says so below the table.
        cells = ["–" if m.get(k) is None else _fmt(m.get(k)) for k in ("bleu", "chrf", "ter")]
        return f"| {label} | {m.get('n', '')} | " + " | ".join(cells) + " |"

    lines += [row(pair, pairs[pair]) for pair in sorted(pairs)]
    if isinstance(eval_metrics.get("macro"), dict):
        lines.append(row("macro average", eval_metrics["macro"]))
    external = eval_metrics.get("external") or {}
    lines += [row(f"{name} (external, {external[name].get('tgt')})", external[name]) for name in sorted(external)]
    notes = [f"{label}: {m['note']}." for label, m in [*sorted(pairs.items()), *sorted(external.items())]
             if m.get("note")]
    lines += ["", *notes] if notes else []
    lines += ["", "Signatures:", ""]
    sigs: dict[tuple[str, str], list[str]] = {}
    for pair in sorted(pairs):
        for metric, sig in sorted(pairs[pair]["signatures"].items()):
            sigs.setdefault((metric, sig), []).append(pair)
    for (metric, sig), ps in sorted(sigs.items()):
        lines.append(f"- {metric} ({', '.join(ps)}): `{sig}`")
    return lines + [""]


def _adapt_section(results: Any, has_curve: bool, meta_enabled: bool = True) -> list[str]:
    """Tables from the adapt stage's results.json (babelflow.meta.adapt): per held-out language,
    mean test BLEU (± std over seeds) of each init after fine-tuning on K pairs."""
    lines = ["## Adaptation to held-out languages", ""]
    if results is None:
        return lines + ["The adapt stage did not run: no adaptation results.", ""]
    if isinstance(results, dict) and results.get("enabled") is False:
        return lines + ["Adaptation was not run (adapt.enabled: false): this release has no adaptation "
                        "results.", ""]
    if not meta_enabled:
        lines += ["Meta-learning was not run (meta.enabled: false): the `meta` init below is a copy of the "
                  "trained model, not a meta-learned one.", ""]
    languages = results.get("languages") if isinstance(results, dict) else None
    if not isinstance(languages, dict) or not languages:
        dumped = json.dumps(results, indent=2, sort_keys=True, ensure_ascii=False)
        return lines + ["```json", dumped, "```", ""]
    budget = results.get("budget") or {}
    if budget:
        lines += ["Budget per run: " + ", ".join(f"{k}={v}" for k, v in sorted(budget.items())), ""]
    if budget.get("select_every"):
        lines += [f"Each run keeps the weights with the lowest loss on the held-out pair's dev split, checked "
                  f"every {budget['select_every']} steps (the step kept, per init and seed, is in the last "
                  "column); the last step's test BLEU is `bleu_last` in metrics.json.", ""]
    for lang in sorted(languages):
        entry = languages[lang]
        per_k = entry.get("k") or {}
        inits = [i for i in ("scratch", "transfer", "meta") if any(i in row for row in per_k.values())]
        lines += [f"### {entry.get('pair', lang)} (test sentences: {entry.get('test_sentences')}, "
                  f"training pool: {entry.get('train_pool')})", ""]
        selected = any("selected_step" in (row.get(i) or {}) for row in per_k.values() for i in inits)
        header = (["K", "K used"] + [f"{i} BLEU" for i in inits] + ["meta − transfer"]
                  + (["steps kept (" + " / ".join(inits) + ")"] if selected else []))
        lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        for k in sorted(per_k, key=lambda x: (0, int(x), "") if str(x).isdigit() else (1, 0, str(x))):
            row = per_k[k]
            cells = [str(k), str(row.get("k_used", ""))]
            for init in inits:
                r = row.get(init) or {}
                cells.append(f"{_fmt(float(r['bleu_mean']))} ± {_fmt(float(r.get('bleu_std', 0.0)))}"
                             if "bleu_mean" in r else "")
            delta = row.get("meta_minus_transfer_bleu")
            cells.append(f"{float(delta):+.2f}" if delta is not None else "")
            if selected:
                cells.append(" / ".join(",".join(map(str, (row.get(i) or {}).get("selected_step", [])))
                                        for i in inits))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for line in results.get("summary") or []:
        lines.append(f"- {line}")
    lines.append("")
    if has_curve:
        lines += ["![Test BLEU after adapting on K sentence pairs](curve.png)", ""]
    return lines


def without_volatile(obj: Any) -> Any:
    """Drop wall-clock fields: they differ between identical runs and would change the release bytes."""
    if isinstance(obj, dict):
        return {k: without_volatile(v) for k, v in obj.items()
                if not (str(k).startswith("wall") or str(k) in VOLATILE_KEYS)}
    if isinstance(obj, list):
        return [without_volatile(v) for v in obj]
    return obj


def render_model_card(params: dict, eval_metrics: Any, adapt_results: Any, has_curve: bool,
                      manifest: Any, manifest_sha: str | None, train_state: Any, model_info: Any,
                      clean_report: Any = None, has_learning_curve: bool = False) -> str:
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
    lines += _skipped_section(manifest, clean_report)
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
              f"accumulate={tr.get('accumulate')}, seed={params.get('seed')}"]
    meta_enabled = params.get("meta", {}).get("enabled", True) is not False
    if not meta_enabled:
        lines.append("- Meta-learning was not run (meta.enabled: false)")
    lines.append("")
    if has_learning_curve:
        lines += ["![Training curve: loss, dev BLEU and learning rate by step](learning_curve.png)", ""]
    lines += _metrics_section(eval_metrics)
    lines += _adapt_section(adapt_results, has_curve, meta_enabled)
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
    eval_metrics = without_volatile(_optional_json(inputs.eval_metrics))
    adapt_results = (without_volatile(_optional_json(inputs.adapt_dir / "results.json"))
                     if inputs.adapt_dir else None)
    curve = inputs.adapt_dir / "curve.png" if inputs.adapt_dir else None
    has_curve = curve is not None and curve.is_file()
    has_learning_curve = inputs.learning_curve is not None and inputs.learning_curve.is_file()
    train_state = _optional_json(inputs.train_dir / "train_state.json")
    model_info = _optional_json(inputs.train_dir / "model.json")
    clean_report = _optional_json(inputs.clean_report)

    with atomic_dir(target) as out:
        for name in REQUIRED_MODEL:
            _copy(inputs.train_dir / name, out / name)
        for name in REQUIRED_TOKENIZER:
            _copy(inputs.tokenizer_dir / name, out / name)
        if has_curve:
            _copy(curve, out / "curve.png")
        if has_learning_curve:
            _copy(inputs.learning_curve, out / "learning_curve.png")
        write_text(out / "params.yaml", dump_params_yaml(params))
        write_json(out / "metrics.json", {"eval": eval_metrics, "adapt": adapt_results})
        write_text(out / "MODEL_CARD.md", render_model_card(
            params, eval_metrics, adapt_results, has_curve, manifest, manifest_sha, train_state, model_info,
            clean_report, has_learning_curve))
        sums = sha256sums(out)
        write_text(out / SUMS, sums)
    return {line[66:]: line[:64] for line in sums.splitlines()}
