"""Markdown rendering of the clean report (for the Prefect artifact and humans)."""
from __future__ import annotations


def _cell(text: object, width: int = 60) -> str:
    s = str(text).replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def to_markdown(report: dict) -> str:
    order = report.get("order", [])
    lines = ["# Clean report", ""]
    tot = report.get("totals", {})
    if tot:
        lines += [f"Total: {tot['in']} pairs in, {tot['out']} kept "
                  f"({(tot['out'] / tot['in'] * 100) if tot['in'] else 0:.1f}%).", ""]
    head = ["pair", "split", "in", *order, "out"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pair, splits in report.get("pairs", {}).items():
        for split, rep in splits.items():
            row = [pair, split, rep["in"], *(rep["removed"].get(f, 0) for f in order), rep["out"]]
            lines.append("| " + " | ".join(map(str, row)) + " |")
    notes = report.get("notes", {})
    if notes:
        lines += ["", "## Notes", ""]
        for pair, items in notes.items():
            lines += [f"- {pair}: {item}" for item in items]
    lines += ["", "## Examples of removed pairs", ""]
    for pair, splits in report.get("pairs", {}).items():
        for split, rep in splits.items():
            for reason, examples in rep.get("examples", {}).items():
                for ex in examples:
                    if "error" in ex:
                        lines.append(f"- {pair}/{split} **{reason}** {ex['file']}:{ex['line']}: {_cell(ex['error'])}")
                    else:
                        lines.append(f"- {pair}/{split} **{reason}** line {ex['line']}: "
                                     f"`{_cell(ex['src'])}` → `{_cell(ex['tgt'])}`")
    return "\n".join(lines) + "\n"
