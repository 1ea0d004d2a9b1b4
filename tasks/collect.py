"""Stage collect: every configured source -> data/raw/<pair>/{train,dev,test}.{src,tgt} + manifest."""
from __future__ import annotations

import logging

from babelflow.config import Params
from babelflow.corpus.records import skipped
from babelflow.corpus.sources import check, collected
from babelflow.io import atomic_dir, write_json
from tasks._common import Paths, stage_main

log = logging.getLogger("babelflow.collect")


def run(params: Params, paths: Paths) -> dict:
    src_lang = params.languages.source
    per_pair: dict[str, dict[str, int]] = {}
    # The sorted runs collect spills go inside the temporary output folder: removed before it is
    # renamed into place, and a killed run's leftovers go with that folder's (atomic_dir).
    with atomic_dir(paths.raw) as tmp, \
            collected(params, paths.root / params.collect.cache_dir, tmp) as (out, records):
        for lang, splits in out.items():
            pair = params.languages.pair(lang)
            (tmp / pair).mkdir()
            per_pair[pair] = {}
            for split, items in splits.items():
                with open(tmp / pair / f"{split}.src", "w", encoding="utf-8", newline="\n") as fs, \
                        open(tmp / pair / f"{split}.tgt", "w", encoding="utf-8", newline="\n") as ft:
                    n = 0
                    for p in items:
                        fs.write(p.src + "\n")
                        ft.write(p.tgt + "\n")
                        n += 1
                per_pair[pair][split] = n
            log.info("%s: %s", pair, per_pair[pair])
        check(params, {lang: sum(per_pair[params.languages.pair(lang)].values()) for lang in out}, records)
        skips = skipped(records)
        inputs = sorted((r.to_json() for r in records), key=lambda r: (r["source"], r["lang"], r["path"]))
        write_json(tmp / "manifest.json", {
            "source_language": src_lang,
            "languages": params.languages.all_targets,
            "split": params.collect.split.model_dump(),
            "max_pairs": params.collect.max_pairs,
            "on_error": params.collect.on_error,
            "sources": [s.model_dump() for s in params.collect.sources],
            "inputs": inputs,
            "pairs": per_pair,
            "errors": [r["path"] + ": " + r["error"] for r in inputs if "error" in r],
            "skipped": skips,  # under on_error: skip; the model card lists them
        })
    metrics = {"pairs": per_pair, "inputs": len(records),
               "total": {s: sum(c[s] for c in per_pair.values()) for s in ("train", "dev", "test")},
               "skipped_inputs": sum(s["whole"] for s in skips), "skipped_lines": sum(s["lines"] for s in skips)}
    write_json(paths.metrics("collect"), metrics)
    return metrics


if __name__ == "__main__":
    stage_main("collect", run)
