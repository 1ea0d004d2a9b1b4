"""Quality benchmark of issue 5: train on Multi30k with the library's own tokenizer, trainer, decoder
and metrics; select on val; report sacrebleu BLEU and chrF++ (with signatures) on test_2016_flickr.

    python bench/multi30k.py [--preset cpu|gpu|smoke] [--runs ende multi]
                             [--corpus ../shared/corpora/multi30k] [--work /tmp/babelflow_multi30k]

Runs:
- `ende`:  a bilingual en->de model (tokenizer on en+de, one target tag).
- `multi`: one multilingual en->de+fr model (tokenizer on en+de+fr, the `<2xx>` tag picks the output).
Both get the same step budget, so the multilingual model sees about half as much en->de data.

Selection on val (test is never looked at before the choice): the kept checkpoints are scored with
greedy BLEU on the whole val split (mean over target languages) as the last checkpoint, the average
of the last 3 and of the last 5; the best candidate is decoded on test with beam search.

Presets:
- `cpu`:  Transformer 3+3, d=256, vocab 8000, 300 steps of 2048 tokens (about one epoch). Sized for a
          2-core machine shared with other jobs, where a step took 5-10 s wall (not the ~1 s of an
          idle machine); on an idle 2-core box raise max_steps: the run resumes from its checkpoints.
- `gpu`:  the base size (6+6, d=512, ffn 2048, 8 heads) with a budget comparable to published
          Multi30k Transformer runs (about 30 epochs of 8k-token batches); not run on the CPU box.
- `smoke`: tiny model, minutes; numbers meaningless, it checks the path.
Each run folder keeps its selected model (`<work>/<run>/model`, with spm.model) for bench/decode_speed.py.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babelflow.config import parse_params  # noqa: E402

SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}
RUN_TARGETS = {"ende": ["de"], "multi": ["de", "fr"]}

_TRAIN_COMMON = {"schedule": "inverse_sqrt", "label_smoothing": 0.1, "max_len": 100, "keep_checkpoints": 5,
                 "average_last": 1, "early_stopping_patience": 0, "resume": True, "temperature": 1.0}
PRESETS = {
    "cpu": {
        "tokenizer": {"vocab_size": 8000, "sample_sentences": 200000},
        "model": {"arch": "transformer", "transformer": {
            "d_model": 256, "ffn_dim": 1024, "heads": 4, "encoder_layers": 3, "decoder_layers": 3,
            "dropout": 0.1}},
        "train": {**_TRAIN_COMMON, "max_tokens": 2048, "max_steps": 300, "lr": 0.001, "warmup_steps": 200,
                  "checkpoint_every": 100, "validate_every": 275, "dev_bleu_sentences": 100, "threads": 2,
                  "device": "cpu"},
        "evaluate": {"beam_size": 4, "length_penalty": 1.0, "max_length_ratio": 2.0, "batch_sentences": 64},
        "select_sentences": 300,
    },
    "gpu": {
        "tokenizer": {"vocab_size": 8000, "sample_sentences": 200000},
        "model": {"arch": "transformer", "transformer": {
            "d_model": 512, "ffn_dim": 2048, "heads": 8, "encoder_layers": 6, "decoder_layers": 6,
            "dropout": 0.3}},
        "train": {**_TRAIN_COMMON, "max_tokens": 8192, "max_steps": 4000, "lr": 0.0007, "warmup_steps": 800,
                  "checkpoint_every": 250, "validate_every": 500, "dev_bleu_sentences": 200,
                  "device": "auto", "bf16": True},
        "evaluate": {"beam_size": 4, "length_penalty": 1.0, "max_length_ratio": 2.0, "batch_sentences": 128},
        "select_sentences": 0,
    },
    "smoke": {
        "tokenizer": {"vocab_size": 1000, "sample_sentences": 20000},
        "model": {"arch": "transformer", "transformer": {
            "d_model": 32, "ffn_dim": 64, "heads": 2, "encoder_layers": 1, "decoder_layers": 1}},
        "train": {**_TRAIN_COMMON, "max_tokens": 1024, "max_steps": 30, "lr": 0.001, "warmup_steps": 5,
                  "checkpoint_every": 5, "validate_every": 10, "dev_bleu_sentences": 10, "threads": 2,
                  "device": "cpu"},
        "evaluate": {"beam_size": 4, "length_penalty": 1.0, "max_length_ratio": 2.0, "batch_sentences": 64},
        "select_sentences": 50,
    },
}


def build_params(preset: str, targets: list[str]):
    p = {k: v for k, v in PRESETS[preset].items() if k != "select_sentences"}
    return parse_params({
        "seed": 1,
        "languages": {"source": "en", "targets": targets, "heldout": []},
        "collect": {"sources": [{"type": "aligned", "name": "multi30k", "path": "multi30k"}]},
        "adapt": {"enabled": False},  # no held-out language: config.py refuses adapt without one
        **p,
    })


def build_clean(corpus: Path, clean: Path, targets: list[str], limit: int | None) -> None:
    """The `clean/en-xx/{train,dev,test}.{src,tgt}` layout the trainer reads, straight from the corpus."""
    for lang in targets:
        folder = clean / f"en-{lang}"
        folder.mkdir(parents=True, exist_ok=True)
        for split, stem in SPLITS.items():
            for side, code in (("src", "en"), ("tgt", lang)):
                path = corpus / f"{stem}.{code}"
                if not path.is_file():
                    raise SystemExit(f"{path}: missing corpus file")
                lines = path.read_text(encoding="utf-8").splitlines()
                if limit and split == "train":
                    lines = lines[:limit]
                (folder / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def evaluate_split(model, tokenizer, clean: Path, targets: list[str], split: str, beam: int, ev,
                   limit: int = 0) -> dict:
    from babelflow.decode import translate
    from babelflow.metrics import score

    out = {}
    for lang in targets:
        src = _lines(clean / f"en-{lang}" / f"{split}.src")
        ref = _lines(clean / f"en-{lang}" / f"{split}.tgt")
        if limit:
            src, ref = src[:limit], ref[:limit]
        t = time.monotonic()
        hyps = translate(model, tokenizer, src, lang, beam_size=beam, length_penalty=ev.length_penalty,
                         max_length_ratio=ev.max_length_ratio, batch_sentences=ev.batch_sentences)
        out[lang] = {**score(hyps, ref, lang), "decode_s": round(time.monotonic() - t, 1), "hyps": hyps}
    return out


def select_on_val(params, tokenizer, clean: Path, ckpt_dir: Path, limit: int, log) -> tuple[object, dict]:
    """Pick among last / avg-3 / avg-5 checkpoints by greedy BLEU on the first `limit` val sentences
    (0: all) per target language, averaged over the targets."""
    import torch

    from babelflow.checkpoint import average_weights, checkpoints
    from babelflow.models import build_model

    # Decode where training ran: the gpu preset's val and test decoding on CPU would take most of a lease.
    device = "cuda" if params.train.device != "cpu" and torch.cuda.is_available() else "cpu"
    kept = checkpoints(ckpt_dir)
    cands = {"last": kept[-1:]}
    for k in (3, 5):
        if len(kept) >= k:
            cands[f"avg{k}"] = kept[-k:]
    scores = {}
    best_name, best_model, best_bleu = None, None, -1.0
    for name, paths in cands.items():
        model = build_model(params.model, tokenizer.vocab_size)
        average_weights(paths, model)
        model.to(device).eval()
        res = evaluate_split(model, tokenizer, clean, params.languages.targets, "dev", 1, params.evaluate, limit)
        bleu = sum(r["bleu"] for r in res.values()) / len(res)
        scores[name] = {"val_greedy_bleu": round(bleu, 2), "checkpoints": [p.name for p in paths],
                        "decode_s": sum(r["decode_s"] for r in res.values())}
        log(f"val greedy BLEU {name}: {bleu:.2f}")
        if bleu > best_bleu:
            best_name, best_model, best_bleu = name, model, bleu
    return best_model, {"chosen": best_name, "candidates": scores}


def run_one(name: str, args, log) -> dict:
    from babelflow.models import save_model
    from babelflow.tokenizer import reuse_or_train_tokenizer
    from babelflow.train import train_model

    import torch

    targets = RUN_TARGETS[name]
    params = build_params(args.preset, targets)
    run_dir = Path(args.work) / args.preset / name
    clean, tok_dir = run_dir / "clean", run_dir / "tokenizer"
    build_clean(Path(args.corpus), clean, targets, 2000 if args.preset == "smoke" else None)
    timings = {}
    t0 = t = time.monotonic()
    texts = {"en": clean / f"en-{targets[0]}" / "train.src"}
    texts.update({lang: clean / f"en-{lang}" / "train.tgt" for lang in targets})
    tokenizer, _ = reuse_or_train_tokenizer(texts, tok_dir, params.tokenizer, targets, params.seed)
    timings["tokenizer_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    train_metrics = train_model(params, clean, tokenizer, run_dir / "train", run_dir / "ckpt", run_dir / "plots", log)
    timings["train_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    torch.set_num_threads(params.train.threads or torch.get_num_threads())
    limit = PRESETS[args.preset]["select_sentences"]
    model, selection = select_on_val(params, tokenizer, clean, run_dir / "ckpt", limit, log)
    selection["val_sentences_per_language"] = limit or "all"
    timings["select_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    test = evaluate_split(model, tokenizer, clean, targets, "test", params.evaluate.beam_size, params.evaluate)
    timings["test_s"] = round(time.monotonic() - t, 1)
    timings["total_s"] = round(time.monotonic() - t0, 1)
    # The selected model plus its tokenizer: a folder bench/decode_speed.py can load like a release.
    model_dir = run_dir / "model"
    save_model(model, model_dir)
    shutil.copyfile(tok_dir / "spm.model", model_dir / "spm.model")
    for lang, r in test.items():
        (run_dir / f"test.{lang}.hyp").write_text("\n".join(r.pop("hyps")) + "\n", encoding="utf-8")
    result = {
        "run": name, "preset": args.preset, "targets": targets,
        "test": {lang: {k: r[k] for k in ("bleu", "chrfpp", "ter", "n", "signatures", "decode_s")} for lang, r in test.items()},
        "selection": selection,
        "train": {k: train_metrics.get(k) for k in ("steps", "tokens_seen", "parameters", "train_loss", "dev_loss",
                                                    "dev_bleu", "device", "wall_time_s", "tokens_per_s")},
        "budget": {"max_steps": params.train.max_steps, "max_tokens": params.train.max_tokens,
                   "model": params.model.transformer.model_dump(), "vocab_size": tokenizer.vocab_size,
                   "beam_size": params.evaluate.beam_size, "threads": params.train.threads},
        "timings": timings,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }
    (run_dir / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return result


def table(results: list[dict]) -> str:
    lines = ["| run | test pair | BLEU | chrF++ | steps | target tokens | train wall | total wall | device | val choice |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for lang, m in r["test"].items():
            lines.append(
                f"| {r['run']} | en->{lang} | {m['bleu']:.2f} | {m['chrfpp']:.2f} | {r['train']['steps']} | "
                f"{r['train']['tokens_seen']:,} | {r['timings']['train_s'] / 60:.1f} min | "
                f"{r['timings']['total_s'] / 60:.1f} min | {r['train']['device']} | {r['selection']['chosen']} |")
    sigs = sorted({m["signatures"][k] for r in results for m in r["test"].values() for k in ("bleu", "chrfpp")})
    return "\n".join(lines + [""] + [f"- `{s}`" for s in sigs])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--runs", nargs="+", choices=sorted(RUN_TARGETS), default=["ende", "multi"])
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    ap.add_argument("--work", default="/tmp/babelflow_multi30k")
    args = ap.parse_args()
    results = [run_one(name, args, lambda s: print(s, flush=True)) for name in args.runs]
    print(table(results))


if __name__ == "__main__":
    main()
