"""Benchmark of issue 6: meta-train on Multi30k en->de and en->fr, hold out en->cs, adapt with
K in {500, 2000, 29000} from scratch / transfer / meta inits, write bench/results_meta.md.

    python bench/meta_multi30k.py [--corpus ../shared/corpora/multi30k] [--work bench/_meta_work]
                                  [--smoke]   # minutes-long CPU check of the whole path

The transfer init is the multilingual model trained on en->de+fr (same budget as the pipeline's
train stage); the meta init starts from it (meta.init=train). Every init then gets the same
adaptation budget; scores are on test_2016_flickr (cs), nothing is tuned on it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.config import parse_params  # noqa: E402

FULL = {
    "seed": 1,
    "languages": {"source": "en", "targets": ["de", "fr"], "heldout": ["cs"]},
    "collect": {"sources": [{"type": "aligned", "name": "multi30k", "path": "multi30k"}]},
    "tokenizer": {"vocab_size": 8000, "sample_sentences": 200000},
    "model": {"arch": "transformer", "transformer": {"d_model": 256, "ffn_dim": 1024, "heads": 4,
                                                     "encoder_layers": 3, "decoder_layers": 3}},
    "train": {"max_tokens": 8192, "max_steps": 4000, "lr": 0.0007, "warmup_steps": 400,
              "checkpoint_every": 1000, "validate_every": 1000, "dev_bleu_sentences": 100},
    "meta": {"algorithm": "reptile", "init": "train", "meta_steps": 400, "tasks_per_step": 4,
             "inner_steps": 3, "inner_lr": 0.0003, "inner_optimizer": "adam", "outer_lr": 0.5,
             "support_tokens": 2048, "query_tokens": 2048, "checkpoint_every": 100},
    "adapt": {"k": [500, 2000, 29000], "steps": 1000, "lr": 0.0003, "max_tokens": 4096, "seeds": [1, 2],
              "eval_sentences": 0},
    "evaluate": {"beam_size": 4},
}
SMOKE = {
    **FULL,
    "tokenizer": {"vocab_size": 1000, "sample_sentences": 20000},
    "model": {"arch": "transformer", "transformer": {"d_model": 32, "ffn_dim": 64, "heads": 2,
                                                     "encoder_layers": 1, "decoder_layers": 1}},
    "train": {"max_tokens": 1024, "max_steps": 20, "warmup_steps": 5, "checkpoint_every": 10,
              "validate_every": 10, "dev_bleu_sentences": 5, "threads": 2},
    "meta": {**FULL["meta"], "meta_steps": 4, "tasks_per_step": 2, "inner_steps": 1,
             "support_tokens": 512, "query_tokens": 512, "checkpoint_every": 2},
    "adapt": {"k": [50, 200], "steps": 5, "max_tokens": 1024, "seeds": [1], "eval_sentences": 20},
    "evaluate": {"beam_size": 1},
}
SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}


def build_clean(corpus: Path, clean: Path, langs: list[str], limit: int | None) -> None:
    for lang in langs:
        folder = clean / f"en-{lang}"
        folder.mkdir(parents=True, exist_ok=True)
        for split, stem in SPLITS.items():
            for side, code in (("src", "en"), ("tgt", lang)):
                lines = (corpus / f"{stem}.{code}").read_text(encoding="utf-8").splitlines()
                if limit and split == "train":
                    lines = lines[:limit]
                (folder / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "babelflow_meta_bench"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_meta.md"))
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()

    from babelflow.meta.adapt import adapt_experiment
    from babelflow.meta.train import meta_train
    from babelflow.tokenizer import Tokenizer, train_tokenizer
    from babelflow.train import train_model

    params = parse_params(SMOKE if args.smoke else FULL)
    corpus, work = Path(args.corpus), Path(args.work)
    clean, tok_dir = work / "clean", work / "tokenizer"
    build_clean(corpus, clean, ["de", "fr", "cs"], 2000 if args.smoke else None)
    timings = {}
    t = time.monotonic()
    if not (tok_dir / "spm.model").is_file():
        texts = {"en": clean / "en-de" / "train.src"}
        texts.update({lang: clean / f"en-{lang}" / "train.tgt" for lang in ("de", "fr", "cs")})
        train_tokenizer(texts, tok_dir, params.tokenizer, ["de", "fr", "cs"], params.seed)
    tokenizer = Tokenizer(tok_dir / "spm.model")
    timings["tokenizer_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    train_metrics = train_model(params, clean, tokenizer, work / "train", work / "ckpt_train", work / "plots")
    timings["train_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    meta_metrics = meta_train(params, clean, tokenizer, work / "train", work / "meta", work / "ckpt_meta", print)
    timings["meta_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    results = adapt_experiment(params, clean, tokenizer, work / "train", work / "meta", print)
    timings["adapt_s"] = round(time.monotonic() - t, 1)
    (work / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True), encoding="utf-8")

    cs = results["languages"]["cs"]
    lines = [
        "# Meta-learning benchmark: Multi30k, meta-train en->de+fr, adapt to held-out en->cs",
        "",
        f"Mode: {'SMOKE (tiny config, numbers meaningless)' if args.smoke else 'full'}. "
        f"Device: {results['budget']['device']}. Command: `python bench/meta_multi30k.py"
        f"{' --smoke' if args.smoke else ''}`.",
        "",
        f"Budget: train {params.train.max_steps} steps x {params.train.max_tokens} tokens; meta "
        f"{params.meta.algorithm} {params.meta.meta_steps} steps x {params.meta.tasks_per_step} tasks x "
        f"{params.meta.inner_steps} inner steps; adapt {params.adapt.steps} AdamW steps x "
        f"{params.adapt.max_tokens} tokens, lr {params.adapt.lr}, seeds {list(params.adapt.seeds)}; "
        f"beam {params.evaluate.beam_size}. Wall time: {timings}.",
        "",
        f"Test: test_2016_flickr en->cs, {cs['test_sentences']} sentences. "
        f"BLEU signature: `{results['signatures']['cs']['bleu']}`.",
        "",
        "| K | scratch BLEU | transfer BLEU | meta BLEU | meta - transfer | scratch chrF++ | transfer chrF++ | meta chrF++ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, row in sorted(cs["k"].items(), key=lambda kv: int(kv[0])):
        def cell(init: str, metric: str) -> str:
            return f"{row[init][metric + '_mean']:.2f} ± {row[init][metric + '_std']:.2f}"
        lines.append(f"| {row['k_used']} | {cell('scratch', 'bleu')} | {cell('transfer', 'bleu')} | "
                     f"{cell('meta', 'bleu')} | {row['meta_minus_transfer_bleu']:+.2f} | "
                     f"{cell('scratch', 'chrf')} | {cell('transfer', 'chrf')} | {cell('meta', 'chrf')} |")
    lines += ["", "Summary (goal: meta >= transfer + 1 BLEU at K=500 and 2000):", ""]
    lines += [f"- {s}" for s in results["summary"]]
    lines += ["", f"Train stage: {json.dumps({k: train_metrics.get(k) for k in ('steps', 'dev_loss', 'dev_bleu') if k in train_metrics})}",
              f"Meta stage: query loss {meta_metrics['query_loss_first']} -> {meta_metrics['query_loss_last']}", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
