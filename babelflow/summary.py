"""What a person reads at the end of a run: one screen of text (`babelflow summary`, printed at the end
of `make run` and `make flow`) and the same figures as Markdown (the Prefect flow's artifact).

Per pair BLEU / chrF++ / TER with n, the adaptation table (K x init), the model, and where the release
is with the exact command that translates with it. It only reads the stages' outputs (the caller says
where they are: `tasks._common.Paths`); nothing here is a dependency of a stage, so editing the
wording re-runs nothing.
"""
from __future__ import annotations

import json
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from babelflow.errors import InputError
from babelflow.metrics import NOT_SCORED

WIDTH = 100  # the text fits a terminal this wide
INITS = ("scratch", "transfer", "meta")


@dataclass(frozen=True)
class RunOutputs:
    """The stage outputs a summary reads; None where a stage has not run (or the file is absent)."""

    evaluation: dict | None  # data/eval/metrics.json
    adaptation: dict | None  # data/adapt/results.json
    train_state: dict | None  # data/train/train_state.json
    model_info: dict | None  # data/train/model.json
    clean_report: dict | None  # data/clean/report.json
    release: Path  # data/release
    release_params: dict | None  # data/release/params.yaml (the run's resolved params)
    eval_report: Path  # data/eval/report.md
    clean_report_path: Path


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not valid JSON: {exc}") from None


def load(paths: Any) -> RunOutputs:
    """The outputs under `paths` (a tasks._common.Paths)."""
    params_path = paths.release / "params.yaml"
    try:
        release_params = yaml.safe_load(params_path.read_text(encoding="utf-8")) if params_path.is_file() else None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(params_path, f"not valid YAML: {exc}") from None
    return RunOutputs(
        evaluation=_json(paths.eval / "metrics.json"),
        adaptation=_json(paths.adapt / "results.json"),
        train_state=_json(paths.train / "train_state.json"),
        model_info=_json(paths.train / "model.json"),
        clean_report=_json(paths.clean / "report.json"),
        release=paths.release,
        release_params=release_params if isinstance(release_params, dict) else None,
        eval_report=paths.eval / "report.md",
        clean_report_path=paths.clean / "report.json",
    )


def shown(path: str | Path) -> str:
    """`path` as a user types it here: relative to the working folder when inside it."""
    path = Path(path).absolute()
    try:
        return path.relative_to(Path.cwd()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def babelflow_command() -> str:
    """The babelflow command of this installation as the user's shell reaches it: the project's venv
    (`make setup`) is on the Makefile's PATH, not the user's, so it is named by its path
    (.venv/bin/babelflow); an installation elsewhere is plain `babelflow` when that is the one on PATH."""
    exe = Path(sys.executable).with_name("babelflow")
    if not exe.is_file():
        return "babelflow"
    if Path(shown(exe)).is_absolute():
        found = shutil.which("babelflow")
        if found and Path(found).resolve() == exe.resolve():
            return "babelflow"
    return shown(exe)


# ------------------------------------------------------------------------------------------------ rows
def _score(x: Any) -> str:
    return "–" if x is None else f"{x:.2f}"


def _pairs(evaluation: dict) -> dict[str, dict]:
    return {k: v for k, v in evaluation.items() if isinstance(v, dict) and "bleu" in v and k != "macro"}


def _score_rows(evaluation: dict) -> list[tuple[list[str], str]]:
    """(pair, n, BLEU, chrF++, TER) per pair, the macro average and each external set, with a note."""
    rows = []
    for pair, m in sorted(_pairs(evaluation).items()):
        rows.append(([pair, str(m.get("n", "")), *(_score(m.get(k)) for k in ("bleu", "chrfpp", "ter"))],
                     m.get("note") or (NOT_SCORED if m.get("bleu") is None else "")))
    macro = evaluation.get("macro")
    if isinstance(macro, dict):
        rows.append((["macro", "", *(_score(macro.get(k)) for k in ("bleu", "chrfpp", "ter"))],
                     f"over {macro.get('pairs')} scored pairs"))
    for name, m in sorted((evaluation.get("external") or {}).items()):
        rows.append(([f"{name} ({m.get('tgt')})", str(m.get("n", "")),
                      *(_score(m.get(k)) for k in ("bleu", "chrfpp", "ter"))], m.get("note") or "external"))
    return rows


def _adapt_tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per held-out language: (title, header, rows) of mean test BLEU per K and init."""
    tables = []
    seeds = len((results.get("budget") or {}).get("seeds") or [1])
    for lang, entry in sorted((results.get("languages") or {}).items()):
        per_k = entry.get("k") or {}
        inits = [i for i in INITS if any(i in row for row in per_k.values())]
        header = ["K", *inits] + (["meta - transfer"] if {"meta", "transfer"} <= set(inits) else [])
        rows = []
        for k, row in sorted(per_k.items(), key=lambda kv: int(kv[0])):
            used = row.get("k_used")
            cells = [k if used in (None, int(k)) else f"{k} ({used} used)"]
            cells += [_score((row.get(i) or {}).get("bleu_mean")) for i in inits]
            if len(header) > len(cells):
                delta = row.get("meta_minus_transfer_bleu")
                cells.append("–" if delta is None else f"{delta:+.2f}")
            rows.append(cells)
        title = (f"Adaptation to {entry.get('pair', lang)}: test BLEU (n = {entry.get('test_sentences')}) after "
                 f"fine-tuning each init on K pairs" + (f", mean of {seeds} seeds" if seeds > 1 else ""))
        tables.append((title, header, rows))
    return tables


def _languages(out: RunOutputs) -> tuple[str, list[str], list[str]]:
    langs = (out.release_params or {}).get("languages") or {}
    if langs:
        return str(langs.get("source")), list(langs.get("targets") or []), list(langs.get("heldout") or [])
    pairs = sorted(_pairs(out.evaluation or {}))
    return (pairs[0].split("-")[0] if pairs else "?"), [p.split("-", 1)[1] for p in pairs], []


def _title(out: RunOutputs) -> str:
    rel = (out.release_params or {}).get("release") or {}
    source, targets, heldout = _languages(out)
    name = f"{rel.get('name')} {rel.get('version')}" if rel.get("name") else "babelflow run"
    return f"{name}: {source} -> {', '.join(targets)}" + (f" (held out: {', '.join(heldout)})" if heldout else "")


def _model_line(out: RunOutputs) -> str | None:
    state, info = out.train_state or {}, out.model_info or {}
    if not state and not info:
        return None
    parts = [str(info["arch"])] if info.get("arch") else []
    if isinstance(state.get("parameters"), int):
        parts.append(f"{state['parameters']:,} parameters")
    if state.get("steps") is not None:
        parts.append(f"{state['steps']} steps")
    if state.get("dev_loss") is not None:
        parts.append(f"dev loss {state['dev_loss']:.4f}")
    return "Model: " + ", ".join(parts)


def _clean_line(out: RunOutputs) -> str | None:
    totals = (out.clean_report or {}).get("totals") or {}
    if "in" not in totals:
        return None
    return (f"Corpus: {totals['out']:,} of {totals['in']:,} pairs kept by clean "
            f"({shown(out.clean_report_path)})")


def _translate_command(out: RunOutputs, command: str) -> str | None:
    source, targets, _ = _languages(out)
    if not targets:
        return None
    return (f"{command} translate --release {shown(out.release)} --to {targets[0]} "
            f"< input.{source} > output.{targets[0]}")


def _released(out: RunOutputs) -> bool:
    return (out.release / "SHA256SUMS").is_file()


# ------------------------------------------------------------------------------------------------ text
def _text_table(header: list[str], rows: list[list[str]], notes: list[str] | None = None) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str], note: str = "") -> str:
        text = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return ("  " + text + ("  " + note if note else "")).rstrip()

    return [line(header)] + [line(r, (notes or [""] * len(rows))[i]) for i, r in enumerate(rows)]


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _command_lines(cmd: str) -> list[str]:
    """The command indented, continued with backslashes where it is wider than the screen."""
    if len(cmd) + 2 <= WIDTH:
        return ["  " + cmd]
    lines, current = [], "  "
    for word in cmd.split(" "):
        if len(current) + len(word) + 2 > WIDTH and current.strip():
            lines.append(current.rstrip() + " \\")
            current = "      "
        current += word + " "
    return lines + [current.rstrip()]


def render_text(out: RunOutputs, command: str = "babelflow") -> str:
    """The run in one screen: at most WIDTH columns, about 25 lines for the default run."""
    lines = _wrap(_title(out), "  ")
    lines += [line for part in (_model_line(out), _clean_line(out)) if part for line in _wrap(part, "  ")]
    lines.append("")
    if out.evaluation:
        rows = _score_rows(out.evaluation)
        lines += _wrap(f"Test split, sacrebleu (signatures and examples: {shown(out.eval_report)})", "  ")
        lines += _text_table(["pair", "n", "BLEU", "chrF++", "TER"], [r for r, _ in rows], [n for _, n in rows])
    else:
        lines.append("Test split: not evaluated yet (the evaluate stage has not run)")
    lines.append("")
    if out.adaptation is None:
        lines += ["Adaptation: no results (the adapt stage has not run)", ""]
    elif out.adaptation.get("enabled") is False:
        lines += ["Adaptation: not run (adapt.enabled: false)", ""]
    for title, header, rows in _adapt_tables(out.adaptation or {}):
        lines += _wrap(title, "  ") + _text_table(header, rows) + [""]
    if _released(out):
        lines += _wrap(f"Release: {shown(out.release)} (MODEL_CARD.md; SHA256SUMS, checked before each use)", "  ")
        cmd = _translate_command(out, command)
        if cmd:
            lines += ["Translate with it:", *_command_lines(cmd)]
    else:
        lines.append("Release: not built yet (the release stage has not run)")
    lines += ["Compare with the last commit: dvc metrics diff; curves: dvc plots show"]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- markdown
def _md_table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """`align`: a letter per column, l or r; by default the first column left, the others right."""
    align = align or "l" + "r" * (len(header) - 1)

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    return (["| " + " | ".join(map(cell, header)) + " |", "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
            + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def _clean_rows(report: dict) -> list[list[str]]:
    """Per pair, over its splits: pairs in, kept, and the three filters that removed the most."""
    rows = []
    for pair, splits in sorted((report.get("pairs") or {}).items()):
        n_in = sum(int(s.get("in") or 0) for s in splits.values())
        n_out = sum(int(s.get("out") or 0) for s in splits.values())
        removed: dict[str, int] = {}
        for s in splits.values():
            for reason, count in (s.get("removed") or {}).items():
                removed[reason] = removed.get(reason, 0) + int(count or 0)
        top = sorted(((c, r) for r, c in removed.items() if c), reverse=True)[:3]
        rows.append([pair, f"{n_in:,}", f"{n_out:,}", ", ".join(f"{r} {c:,}" for c, r in top) or "–"])
    return rows


def render_markdown(out: RunOutputs, command: str = "babelflow") -> str:
    """The same figures as Markdown tables, for the Prefect UI: a few KB whatever the corpus size (the
    cleaning examples stay in the clean report, named here, not inlined)."""
    lines = [f"# {_title(out)}", ""]
    lines += [part + "  " for part in (_model_line(out), _clean_line(out)) if part] + [""]
    lines += ["## Test split (sacrebleu)", ""]
    if out.evaluation:
        rows = _score_rows(out.evaluation)
        # The macro row says over how many pairs; the notes of unscored pairs follow the table.
        lines += _md_table(["pair", "n", "BLEU", "chrF++", "TER"],
                           [[f"{r[0]} ({note})" if r[0] == "macro" else r[0], *r[1:]] for r, note in rows])
        notes = [f"{r[0]}: {note}." for r, note in rows if note == NOT_SCORED or note.startswith("n = 0")]
        lines += ["", *notes] if notes else []
        lines += ["", f"Signatures and example translations: `{shown(out.eval_report)}`."]
    else:
        lines.append("Not evaluated yet (the evaluate stage has not run).")
    lines.append("")
    if out.adaptation is not None and out.adaptation.get("enabled") is False:
        lines += ["## Adaptation", "", "Not run (`adapt.enabled: false`).", ""]
    for title, header, rows in _adapt_tables(out.adaptation or {}):
        lines += [f"## {title}", "", *_md_table(header, rows), ""]
    if out.clean_report:
        lines += ["## Cleaning", "",
                  *_md_table(["pair", "in", "kept", "removed most by"], _clean_rows(out.clean_report), "lrrl"),
                  "", f"Examples of removed pairs, per filter: `{shown(out.clean_report_path)}`.", ""]
    if _released(out):
        lines += ["## Release", "", f"`{shown(out.release)}` (model card: `MODEL_CARD.md`)."]
        cmd = _translate_command(out, command)
        if cmd:
            lines += ["", "```bash", cmd, "```"]
    return "\n".join(lines).rstrip("\n") + "\n"
