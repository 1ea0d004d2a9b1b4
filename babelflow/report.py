"""The evaluation report as Markdown: per-pair scores, a few examples, links to the curve pictures.

Pure text building: the caller decides where it is written and which pictures exist.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from babelflow.curve import read_curve
from babelflow.metrics import NOT_SCORED, SCORES


def _cell(text: str) -> str:
    # A pipe or newline in a sentence would break the Markdown table row.
    return text.replace("|", "\\|").replace("\n", " ")


def metrics_table(metrics: dict[str, dict]) -> list[str]:
    lines = ["| pair | n | BLEU | chrF++ | TER | BLEU, lowercased |", "|---|---:|---:|---:|---:|---:|"]
    for pair in sorted(metrics):
        m = metrics[pair]
        # None: an empty test split, or (bleu_lc) metrics written before it existed.
        cells = ["–" if m.get(k) is None else f"{m[k]:.2f}" for k in SCORES]
        lines.append(f"| {pair} | {m['n']} | " + " | ".join(cells) + " |")
    unscored = [pair for pair in sorted(metrics) if metrics[pair]["bleu"] is None]
    return lines + (["", *(f"{pair}: {NOT_SCORED} (empty test split)." for pair in unscored)] if unscored else [])


def signatures_block(metrics: dict[str, dict]) -> list[str]:
    """Signatures grouped: identical ones are listed once with the pairs that share them."""
    by_sig: dict[tuple[str, str], list[str]] = {}
    for pair in sorted(metrics):
        for name, sig in sorted(metrics[pair].get("signatures", {}).items()):
            by_sig.setdefault((name, sig), []).append(pair)
    lines = []
    for (name, sig), pairs in sorted(by_sig.items()):
        lines.append(f"- {name} ({', '.join(pairs)}): `{sig}`")
    return lines


def examples_block(pair: str, rows: Iterable[tuple[str, str, str]]) -> list[str]:
    lines = [f"### {pair}", "", "| source | reference | hypothesis |", "|---|---|---|"]
    for src, ref, hyp in rows:
        lines.append(f"| {_cell(src)} | {_cell(ref)} | {_cell(hyp)} |")
    return lines + [""]


def render_report(
    metrics: dict[str, dict],
    macro: dict | None,
    examples: dict[str, Sequence[tuple[str, str, str]]],
    images: Sequence[tuple[str, str]] = (),
    external: dict[str, dict] | None = None,
    settings: dict | None = None,
) -> str:
    """`images`: (caption, relative link) pairs, shown in the order given."""
    lines = ["# babelflow evaluation", ""]
    if settings:
        lines += ["Decoding: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())), ""]
    lines += ["## Test split (sacrebleu)", ""] + metrics_table(metrics) + [""]
    if macro and macro["bleu"] is not None:
        lines += [
            f"Macro average over {macro['pairs']} pairs: BLEU {macro['bleu']:.2f}, "
            f"chrF++ {macro['chrfpp']:.2f}, TER {macro['ter']:.2f}.",
            "",
        ]
    if external:
        lines += ["## External test sets", ""] + metrics_table(external) + [""]
    all_scored = dict(metrics)
    all_scored.update({f"external/{k}": v for k, v in (external or {}).items()})
    lines += ["## Signatures", ""] + signatures_block(all_scored) + [""]
    if images:
        lines += ["## Curves", ""]
        for caption, link in images:
            lines += [f"![{caption}]({link})", ""]
    if any(examples.values()):
        lines += ["## Example translations", ""]
        for pair in sorted(examples):
            if examples[pair]:
                lines += examples_block(pair, examples[pair])
    return "\n".join(lines).rstrip("\n") + "\n"


def plot_learning_curve(plots_dir: Path, png_path: Path) -> bool:
    """Draw the trainer's curve files (babelflow.curve) as a PNG: loss, dev BLEU and learning rate, each
    on its own axes, each series only at the steps where it was measured.

    Returns False when there is nothing to draw. The PNG carries no software/date metadata, so the
    same curve gives the same bytes.
    """
    series = read_curve(plots_dir)
    if not any(steps for steps, _ in series.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from babelflow.io import atomic_path

    panels = [("loss per token", ("train_loss", "dev_loss")), ("dev BLEU (greedy)", ("dev_bleu",)),
              ("learning rate", ("lr",))]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 3.2))
    for ax, (ylabel, columns) in zip(axes, panels):
        for col in columns:
            steps, values = series.get(col, ([], []))
            if steps:
                ax.plot(steps, values, marker="." if len(steps) > 20 else "o", markersize=3, label=col)
        if not ax.lines:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(ax.lines) > 1:
            ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True
