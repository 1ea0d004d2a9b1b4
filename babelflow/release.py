"""A release folder: everything needed to translate with a trained model, and to check it is intact.

Layout: model.safetensors, model.json, spm.model, spm.vocab, params.yaml, metrics.json,
MODEL_CARD.md, learning_curve.png (the training curve, drawn by evaluate), curve.png (when the adapt
stage ran) and SHA256SUMS over every other file.

The bytes depend only on the inputs: no timestamps, no absolute paths, sorted keys, so building twice
from the same artifacts gives an identical folder and identical DVC hashes.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from babelflow.errors import InputError, IntegrityError
from babelflow.io import atomic_dir, read_json, sha256_file, write_json, write_text
from babelflow.languages import base_language
from babelflow.metrics import REPEAT_RUN, SCORES, repeats_a_word
from babelflow.report import examples_block

SUMS = "SHA256SUMS"
REQUIRED_MODEL = ("model.safetensors", "model.json")
REQUIRED_TOKENIZER = ("spm.model", "spm.vocab")
# What `babelflow translate` and `babelflow export` read: a release whose SHA256SUMS leaves one out
# would let that file be swapped unnoticed.
VERIFIED = ("model.safetensors", "model.json", "spm.model", "params.yaml")
VOLATILE_KEYS = frozenset({"elapsed_s", "duration_s", "seconds", "timestamp", "time_s"})
MAX_LISTED_INPUTS = 25  # a gettext manifest lists thousands of catalogs; the card shows the first few
LOW_BLEU = 10.0  # the usual rule of thumb: below 10 BLEU most outputs are not usable translations


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


def _pair_sources(params: dict, manifest: Any) -> dict[str, list[str]]:
    """target language -> the names of the sources its pairs came from (the manifest's inputs)."""
    found: dict[str, set[str]] = {}
    for rec in (manifest.get("inputs") or []) if isinstance(manifest, dict) else []:
        if rec.get("kept"):
            found.setdefault(str(rec.get("lang")), set()).add(str(rec.get("source")))
    every = [str(s.get("name")) for s in params.get("collect", {}).get("sources", [])]
    targets = params.get("languages", {}).get("targets", [])
    return {t: sorted(found.get(t, every)) for t in targets}


def _training_data_section(params: dict, manifest: Any, manifest_sha: str | None, clean_report: Any) -> list[str]:
    """Sources and per-pair counts; the inputs themselves (paths, sha256) stay in the manifest."""
    lines = ["## Training data", "", "Sources (`collect.sources` in params.yaml):", ""]
    inputs = (manifest.get("inputs") or []) if isinstance(manifest, dict) else []
    for src in params.get("collect", {}).get("sources", []):
        where = src.get("path") or src.get("url") or src.get("test_set") or ", ".join(src.get("search", []))
        files = sum(1 for r in inputs if r.get("source") == src.get("name"))
        lines.append(f"- **{src.get('name')}** ({src.get('type')}): {where}; {files} input(s) in the manifest; "
                     f"licence: {src.get('licence') or 'not stated'}")
    lines.append("")
    src_lang = params.get("languages", {}).get("source")
    sources = _pair_sources(params, manifest)
    pairs = (clean_report.get("pairs") or {}) if isinstance(clean_report, dict) else {}
    lines += ["| pair | sources | pairs collected | train | dev | test |", "|---|---|---:|---:|---:|---:|"]
    for tgt, names in sources.items():
        pair = f"{src_lang}-{tgt}"
        collected = sum(int(r.get("kept") or 0) for r in inputs if r.get("lang") == tgt) if inputs else "–"
        kept = [(pairs.get(pair) or {}).get(split, {}).get("out", "–") for split in ("train", "dev", "test")]
        lines.append(f"| {pair} | {', '.join(names)} | {collected} | " + " | ".join(map(str, kept)) + " |")
    lines += ["", "train / dev / test: sentence pairs after cleaning (data/clean/report.json says what each "
              "filter removed). dev and test sources never occur in train in any language (hash split).", ""]
    if manifest is None:
        return lines + ["No data/raw/manifest.json was available: the inputs are not recorded.", ""]
    version = params.get("release", {}).get("version")
    return lines + [f"Every input file (path, sha256, lines read, kept and dropped by reason) is listed in "
                    f"`data/raw/manifest.json` (sha256 `{manifest_sha}`) of the project that built this "
                    f"release: `git checkout v{version} && dvc pull collect` restores it.", ""]


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


def _metrics_section(params: dict, eval_metrics: Any) -> list[str]:
    lines = ["## Evaluation (test split, sacrebleu)", ""]
    if not eval_metrics:
        return lines + ["No evaluation metrics were available when this release was built.", ""]
    ev = params.get("evaluate", {})
    limit = f"the first {ev['max_sentences']} sentences" if ev.get("max_sentences") else "every sentence"
    run = (f", at most {ev['max_run']} copies of a word or phrase in a row (`evaluate.max_run`; `translate` "
           "decodes the same way)" if ev.get("max_run") else "")
    lines += [f"On {limit} of each pair's test split (sources never seen in training), beam "
              f"{ev.get('beam_size')}{run}, detokenized output scored by sacrebleu; chrF++ is chrF with word "
              "bigrams (`nw:2`). Every score is in metrics.json.", ""]
    pairs = {k: v for k, v in eval_metrics.items() if isinstance(v, dict) and "signatures" in v}
    lines += ["| pair | n | BLEU | chrF++ | TER | BLEU, lowercased |", "|---|---:|---:|---:|---:|---:|"]
    def row(label: str, m: dict) -> str:
        # An empty test split has no scores (None), not scores of 0: its note says so below the table.
        cells = ["–" if m.get(k) is None else _fmt(m.get(k)) for k in SCORES]
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
    """Tables from the adapt stage's results.json (babelflow.adapt): per held-out language,
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


def _scored_pairs(eval_metrics: Any) -> dict[str, dict]:
    """pair -> metrics for the pairs evaluate scored (an empty test split has n = 0 and no scores)."""
    if not isinstance(eval_metrics, dict):
        return {}
    return {k: v for k, v in sorted(eval_metrics.items())
            if isinstance(v, dict) and "signatures" in v and v.get("bleu") is not None}


def _index_metrics(m: dict) -> list[dict]:
    return [{"type": "bleu", "value": round(float(m["bleu"]), 2), "name": "BLEU"},
            {"type": "chrf", "value": round(float(m["chrfpp"]), 2), "name": "chrF++ (word order 2)"},
            {"type": "ter", "value": round(float(m["ter"]), 2), "name": "TER"}]


def front_matter(params: dict, eval_metrics: Any, model_info: Any, manifest: Any) -> dict:
    """The Hugging Face model-card metadata (hub-docs modelcard.md): what the Hub shows and filters on."""
    langs, rel = params.get("languages", {}), params.get("release", {})
    targets = list(langs.get("targets", []))
    # ISO 639 codes, as the Hub expects: gettext's region and script modifiers dropped (pt_BR -> pt).
    language = list(dict.fromkeys(base_language(c) for c in [langs.get("source"), *targets] if c))
    arch = model_info.get("arch") if isinstance(model_info, dict) else None
    tags = ["translation", "babelflow", *([arch] if arch else []), *(["multilingual"] if len(targets) > 1 else [])]
    meta: dict[str, Any] = {
        "language": language, "license": rel.get("license", "other"), "pipeline_tag": "translation",
        "tags": tags, "datasets": [str(s.get("name")) for s in params.get("collect", {}).get("sources", [])],
        "metrics": ["bleu", "chrf", "ter"]}
    sources = _pair_sources(params, manifest)
    results = []
    for pair, m in _scored_pairs(eval_metrics).items():
        names = sources.get(pair.split("-", 1)[1]) or meta["datasets"]
        results.append({"task": {"type": "translation", "name": f"Translation {pair}"},
                        "dataset": {"type": "+".join(names), "name": f"{' + '.join(names)} {pair} test split",
                                    "config": pair, "split": "test"},
                        "metrics": _index_metrics(m)})
    external = (eval_metrics.get("external") or {}) if isinstance(eval_metrics, dict) else {}
    configured = {e.get("name"): e for e in params.get("evaluate", {}).get("external", [])}
    for name, m in sorted(external.items()):
        if m.get("bleu") is None:
            continue
        pair = f"{langs.get('source')}-{m.get('tgt')}"
        results.append({"task": {"type": "translation", "name": f"Translation {pair}"},
                        "dataset": {"type": (configured.get(name) or {}).get("sacrebleu") or name,
                                    "name": f"{name} {pair}", "config": pair, "split": "test"},
                        "metrics": _index_metrics(m)})
    if results:  # nothing measured, nothing claimed
        meta["model-index"] = [{"name": rel.get("name"), "results": results}]
    return meta


def parameter_count(weights: Path) -> int:
    """The model's parameters, summed from the safetensors header (no weight is loaded): babelflow saves
    no persistent buffers, and tied weights are one tensor (babelflow.models.save_weights)."""
    with open(weights, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        try:
            if size > 100_000_000:  # safetensors' own limit on the header
                raise ValueError(f"header of {size} bytes")
            header = json.loads(fh.read(size))
            return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(weights, f"not a readable safetensors file: {exc}") from None


def _lines(path: Path):
    """The lines of a UTF-8 text file one by one (bounded memory); none when the file is absent."""
    if not path.is_file():
        return
    try:
        with open(path, encoding="utf-8", newline="\n") as fh:
            for line in fh:
                yield line.rstrip("\n")
    except UnicodeDecodeError:
        raise InputError(path, "not valid UTF-8") from None


def output_checks(hyp_path: Path, src_path: Path, ref_path: Path, examples: int = 0) -> dict | None:
    """Counts over a pair's test translations (line i of the .hyp translates line i of test.src): outputs
    repeating one word REPEAT_RUN+ times in a row, empty ones, copies of the source, ones with U+FFFD,
    and output words per reference word; and the first `examples` (source, reference, output) rows, the
    ones evaluate's report shows. None when evaluate wrote no hypotheses."""
    if not hyp_path.is_file():
        return None
    c = {"n": 0, "repeat": 0, "empty": 0, "copy": 0, "fffd": 0, "hyp_words": 0, "ref_words": 0}
    example = None
    rows = []
    srcs, refs = _lines(src_path), _lines(ref_path)
    for hyp in _lines(hyp_path):
        src, ref = next(srcs, ""), next(refs, "")
        if len(rows) < examples:
            rows.append((src, ref, hyp))
        words = hyp.split()
        c["n"] += 1
        c["empty"] += not words
        c["copy"] += bool(words) and hyp.strip() == src.strip()
        c["fffd"] += "\ufffd" in hyp
        c["hyp_words"] += len(words)
        c["ref_words"] += len(ref.split())
        if repeats_a_word(hyp):
            c["repeat"] += 1
            example = example or hyp
    return {**c, "repeat_example": example, "examples": rows}


def _examples_section(outputs: dict[str, dict] | None) -> list[str]:
    rows = {p: o["examples"] for p, o in sorted((outputs or {}).items()) if o and o.get("examples")}
    if not rows:
        return []
    lines = ["## Example translations", "",
             "The first lines of each pair's test split as this model translates them (data/eval/<pair>.hyp), "
             "not chosen for quality:", ""]
    for pair, pair_rows in rows.items():
        lines += examples_block(pair, pair_rows)
    return lines


def _share(k: int, n: int) -> str:
    return f"{100 * k / n:.1f} %" if n else "–"


def _limitations_section(eval_metrics: Any, outputs: dict[str, dict] | None) -> list[str]:
    """Facts measured on this model's test translations, not boilerplate."""
    lines = ["## Limitations", ""]
    outputs = {p: o for p, o in sorted((outputs or {}).items()) if o and o["n"]}
    pairs = (eval_metrics or {}) if isinstance(eval_metrics, dict) else {}
    if outputs:
        lines += ["Measured on this model's own test translations (data/eval/<pair>.hyp), against the "
                  "test split's sources and references:", "",
                  f"| pair | n | BLEU | repeats a word {REPEAT_RUN}+ times in a row | empty | copy of the source "
                  "| contains U+FFFD | output words per reference word |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for pair, o in outputs.items():
            bleu = (pairs.get(pair) or {}).get("bleu")
            ratio = f"{o['hyp_words'] / o['ref_words']:.2f}" if o["ref_words"] else "–"
            lines.append(f"| {pair} | {o['n']} | {'–' if bleu is None else _fmt(float(bleu))} | "
                         + " | ".join(_share(o[k], o["n"]) for k in ("repeat", "empty", "copy", "fffd"))
                         + f" | {ratio} |")
        lines.append("")
        total, repeat = sum(o["n"] for o in outputs.values()), sum(o["repeat"] for o in outputs.values())
        lines += [f"In all, {repeat} of {total} test outputs ({_share(repeat, total)}) repeat one word "
                  f"{REPEAT_RUN} or more times in a row.", ""]
        what = {"repeat": f"repeat one word {REPEAT_RUN} or more times in a row", "empty": "are empty",
                "copy": "copy the source sentence unchanged",
                "fffd": "contain U+FFFD (byte pieces that do not form valid UTF-8)"}
        for key, text in what.items():
            for pair, o in outputs.items():
                if o[key]:
                    eg = (o.get("repeat_example") or "")[:80].replace("`", "'") if key == "repeat" else ""
                    lines.append(f"- {o[key]} of {o['n']} {pair} outputs ({_share(o[key], o['n'])}) {text}"
                                 + (f", e.g. `{eg}`" if eg else "") + ".")
        for pair, o in outputs.items():
            ratio = o["hyp_words"] / o["ref_words"] if o["ref_words"] else 1.0
            if not 0.67 <= ratio <= 1.5:
                longer = "longer" if ratio > 1 else "shorter"
                lines.append(f"- {pair} outputs have {ratio:.2f} words per reference word: far {longer} than "
                             "the translations they are scored against.")
    low = [f"{pair} ({_fmt(float(m['bleu']))})" for pair, m in _scored_pairs(eval_metrics).items()
           if m["bleu"] < LOW_BLEU]
    if low:
        lines.append(f"- BLEU below {LOW_BLEU:.0f} on {', '.join(low)}: at that level most outputs are not "
                     "usable translations; check them before any use.")
    if not outputs and not low:
        lines.append("No test translations were available to measure.")
    return lines + ["- The scores are on held-out sentences of the training sources' own domain; expect "
                    "lower quality on other text. The model does not flag a wrong translation.", ""]


def _license_section(params: dict) -> list[str]:
    lic = params.get("release", {}).get("license", "other")
    if lic == "other":
        text = ("`license: other` (`release.license` in params.yaml): the weights were trained on the sources "
                "under Training data, each under its own licence, and babelflow does not choose one for "
                "them. Whoever publishes this model sets `release.license` once those terms allow it.")
    else:
        text = (f"`license: {lic}` (`release.license` in params.yaml), chosen by whoever built this release; "
                "the training sources keep their own licences (under Training data).")
    return ["## License", "", text, ""]


def render_model_card(params: dict, eval_metrics: Any, adapt_results: Any, has_curve: bool,
                      manifest: Any, manifest_sha: str | None, train_state: Any, model_info: Any,
                      clean_report: Any = None, parameters: int | None = None,
                      outputs: dict[str, dict] | None = None, has_learning_curve: bool = False) -> str:
    """MODEL_CARD.md in the Hugging Face layout: YAML metadata between --- lines, then the sections of
    the Hub's template. `outputs`: output_checks per pair; `parameters`: parameter_count."""
    rel = params.get("release", {})
    langs = params.get("languages", {})
    targets = list(langs.get("targets", []))
    meta = yaml.safe_dump(front_matter(params, eval_metrics, model_info, manifest), sort_keys=False,
                          allow_unicode=True, default_flow_style=False, width=100)
    lines = ["---", meta.rstrip("\n"), "---", "", f"# {rel.get('name')} {rel.get('version')}", ""]

    lines += ["## Model description", ""]
    arch = model_info.get("arch") if isinstance(model_info, dict) else "unknown architecture"
    size = f"{parameters:,} parameters" if parameters else "unknown size"
    lines += [f"One {arch} ({size}) that translates {langs.get('source')} into {len(targets)} language(s), "
              "the target chosen by a `<2xx>` tag; one SentencePiece vocabulary for all languages. "
              f"Version {rel.get('version')}, built by babelflow's release stage from the `params.yaml` in "
              "this folder.", "",
              f"- source: {langs.get('source')}",
              f"- targets: {', '.join(targets)} (select with the `<2xx>` tag, "
              f"e.g. `babelflow translate --to {targets[0] if targets else 'de'}`)",
              f"- held out (adaptation experiments only): {', '.join(langs.get('heldout', [])) or 'none'}"]
    if isinstance(model_info, dict):
        lines.append(f"- architecture: {model_info.get('arch')}, vocabulary {model_info.get('vocab_size')}")
        cfg = model_info.get("config")
        if isinstance(cfg, dict):
            lines.append("- config: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items())
                                                 if not isinstance(v, (dict, list))))
    lines.append("")

    tgt = targets[0] if targets else "de"
    beam = params.get("evaluate", {}).get("beam_size", 4)
    sample = "Open the file" if base_language(str(langs.get("source", "en"))) == "en" else "..."
    lines += ["## How to use", "",
              "With babelflow installed (`make run` sets up `.venv`); `translate` checks SHA256SUMS first:", "",
              "```bash", f"babelflow translate --release data/release --to {tgt} < input.txt > output.{tgt}",
              "```", "", "From Python:", "", "```python",
              "from babelflow.decode import translate",
              "from babelflow.models import load_model",
              "from babelflow.release import verify_release",
              "from babelflow.tokenizer import Tokenizer", "",
              'verify_release("data/release")  # refuses a modified or incomplete release',
              'model = load_model("data/release")',
              'tokenizer = Tokenizer("data/release/spm.model")',
              f'translations = translate(model, tokenizer, ["{sample}"], "{tgt}", beam_size={beam})',
              "print(translations)", "```", ""]

    lines += ["## Intended use", "", str(rel.get("intended_use", "")).strip(), ""]
    lines += _training_data_section(params, manifest, manifest_sha, clean_report)
    lines += _skipped_section(manifest, clean_report)

    lines += ["## Training procedure", ""]
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
              f"accumulate={tr.get('accumulate')}, lr={tr.get('lr')}, warmup_steps={tr.get('warmup_steps')}, "
              f"seed={params.get('seed')}"]
    meta_enabled = params.get("meta", {}).get("enabled", True) is not False
    if not meta_enabled:
        lines.append("- Meta-learning was not run (meta.enabled: false)")
    lines.append("")
    if has_learning_curve:
        lines += ["![Training curve: loss, dev BLEU and learning rate by step](learning_curve.png)", ""]
    lines += _metrics_section(params, eval_metrics)
    lines += _examples_section(outputs)
    lines += _adapt_section(adapt_results, has_curve, meta_enabled)
    lines += _limitations_section(eval_metrics, outputs)
    lines += _license_section(params)
    lines += ["## Files and integrity", "",
              f"`{SUMS}` lists the sha256 of every other file (`sha256sum -c {SUMS}`); "
              "`babelflow translate` refuses a release whose files do not match it. "
              "`params.yaml` is the full resolved configuration that produced this model; `metrics.json` "
              "holds every score. To publish on the Hugging Face Hub, upload this folder with MODEL_CARD.md as "
              "README.md (the metadata above is the Hub's).", ""]
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
    # evaluate writes <pair>.hyp next to its metrics.json; line i translates line i of clean's test.src.
    outputs = {pair: output_checks(inputs.eval_metrics.parent / f"{pair}.hyp",
                                   inputs.clean_report.parent / pair / "test.src",
                                   inputs.clean_report.parent / pair / "test.tgt",
                                   int(params.get("evaluate", {}).get("examples", 0)))
               for pair in _scored_pairs(eval_metrics)} if inputs.eval_metrics and inputs.clean_report else {}

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
            clean_report, parameter_count(out / "model.safetensors"), outputs, has_learning_curve))
        sums = sha256sums(out)
        write_text(out / SUMS, sums)
    return {line[66:]: line[:64] for line in sums.splitlines()}
