"""Stage encode: data/clean + data/tokenizer -> data/encoded (memory-mapped token arrays, see
babelflow/encode.py), so no later stage encodes text: train, meta and adapt read these arrays."""
from __future__ import annotations

from babelflow.config import Params
from babelflow.encode import encode_corpus
from babelflow.io import atomic_dir, write_json
from tasks._common import Paths, stage_main


def run(params: Params, paths: Paths) -> dict:
    langs = params.languages
    pairs = [langs.pair(lang) for lang in langs.all_targets]
    with atomic_dir(paths.encoded) as out:
        manifest = encode_corpus(paths.clean, out, paths.tokenizer / "spm.model", params.tokenizer.max_placeholders,
                                 pairs, workers=params.encode.workers,
                                 chunk_lines=params.encode.chunk_lines, address=params.executor.address)
    metrics = {"dtype": manifest["dtype"],
               "pairs": {pair: {split: {k: r[k] for k in ("sentences", "src_tokens", "tgt_tokens")}
                                for split, r in splits.items()} for pair, splits in manifest["pairs"].items()}}
    paths.metrics("encode").parent.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics("encode"), metrics)
    return metrics


if __name__ == "__main__":
    stage_main("encode", run)
