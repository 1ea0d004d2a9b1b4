"""Stage tokenize: one SentencePiece model over the English side and every target language."""
from __future__ import annotations

from pathlib import Path

from babelflow.config import Params
from babelflow.errors import InputError
from babelflow.io import atomic_dir, write_json
from babelflow.tokenizer import train_tokenizer
from tasks._common import Paths, stage_main


def run(params: Params, paths: Paths) -> dict:
    langs = params.languages
    texts: dict[str, list[Path]] = {langs.source: []}
    for tgt in langs.all_targets:
        folder = paths.clean / langs.pair(tgt)
        src_file, tgt_file = folder / "train.src", folder / "train.tgt"
        if not src_file.is_file() or not tgt_file.is_file():
            raise InputError(folder, "missing train.src/train.tgt; run the clean stage first")
        texts[langs.source].append(src_file)
        texts[tgt] = [tgt_file]
    with atomic_dir(paths.tokenizer) as out:
        report = train_tokenizer(texts, out, params.tokenizer, langs.all_targets, params.seed, distinct=[langs.source])
        write_json(out / "report.json", report)
    metrics = {
        "vocab_size": report["vocab_size"],
        **{
            f"{lang}.{key}": value
            for lang, stats in report["languages"].items()
            for key, value in stats.items()
            if key != "sentences"
        },
    }
    write_json(paths.metrics("tokenizer"), metrics)
    return metrics


if __name__ == "__main__":
    stage_main("tokenize", run)
