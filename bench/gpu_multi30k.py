"""The direct Multi30k path that bench/gpu_check.py's multi30k part still uses (it trains in chunks to
fit a lease): the corpus copied as clean files, selection on val through the train option's
`checkpoint.select_average`, test decoded here. bench/multi30k.py runs the stages instead; this goes
when gpu_check's part does the same (issue 18)."""
from __future__ import annotations

import time
from pathlib import Path

from bench.pipeline import preset_params

SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}
PRESETS = {p: {"select_sentences": preset_params(f"multi30k-{p}").train.select_sentences} for p in ("gpu", "smoke")}


def build_params(preset: str, targets: list[str]):
    # Trained in chunks, each ending where train would select: select_on_val chooses once, at the end.
    return preset_params(f"multi30k-{preset}", [f"languages.targets=[{', '.join(targets)}]", "train.average_last=1"])


def build_clean(corpus: Path, clean: Path, targets: list[str], limit: int | None) -> None:
    """The `clean/en-xx/{train,dev,test}.{src,tgt}` layout the trainer reads, straight from the corpus."""
    for lang in targets:
        (clean / f"en-{lang}").mkdir(parents=True, exist_ok=True)
        for split, stem in SPLITS.items():
            for side, code in (("src", "en"), ("tgt", lang)):
                lines = (corpus / f"{stem}.{code}").read_text(encoding="utf-8").splitlines()
                lines = lines[:limit] if limit and split == "train" else lines
                (clean / f"en-{lang}" / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")


def evaluate_split(model, tokenizer, clean: Path, targets: list[str], split: str, beam: int, ev, limit: int = 0):
    from babelflow.decode import translate
    from babelflow.metrics import score

    out = {}
    for lang in targets:
        src, ref = ((clean / f"en-{lang}" / f"{split}.{s}").read_text(encoding="utf-8").splitlines()[:limit or None]
                    for s in ("src", "tgt"))
        t = time.monotonic()
        hyps = translate(model, tokenizer, src, lang, beam_size=beam, length_penalty=ev.length_penalty,
                         max_length_ratio=ev.max_length_ratio, batch_sentences=ev.batch_sentences)
        out[lang] = {**score(hyps, ref, lang), "decode_s": round(time.monotonic() - t, 1), "hyps": hyps}
    return out


def select_on_val(params, tokenizer, clean: Path, ckpt_dir: Path, limit: int, log):
    """The last weights or the average of the last 3 or 5 checkpoints, whichever has the best greedy val BLEU."""
    import torch

    from babelflow.checkpoint import average_weights, checkpoints, select_average
    from babelflow.data import read_parallel
    from babelflow.models import build_model
    from babelflow.validation import dev_bleu

    device = "cuda" if params.train.device != "cpu" and torch.cuda.is_available() else "cpu"
    model = build_model(params.model, tokenizer.vocab_size).to(device)
    average_weights(checkpoints(ckpt_dir)[-1:], model)  # the last weights, which one candidate leaves as they are
    dev = {lang: read_parallel(clean / f"en-{lang}" / "dev.src", clean / f"en-{lang}" / "dev.tgt")
           for lang in params.languages.targets}
    chosen = select_average(ckpt_dir, model, [k for k in (1, 3, 5) if k <= max(1, len(checkpoints(ckpt_dir)))],
                            lambda m: dev_bleu(m, tokenizer, dev, (limit or 10**9) * len(dev)), log)
    return model.eval(), chosen
