"""Stage meta: meta-learn an init over the target pairs (held-out pairs stay unseen) -> data/meta."""
from __future__ import annotations

import logging
import shutil

from babelflow.config import Params
from babelflow.errors import InputError
from babelflow.io import atomic_dir, write_json
from tasks._common import VOLATILE_METRICS, Paths, stage_main, write_metrics

log = logging.getLogger("babelflow.meta")


def run(params: Params, paths: Paths) -> dict:
    from babelflow.meta.train import meta_train
    from babelflow.tokenizer import Tokenizer

    spm_model = paths.tokenizer / "spm.model"
    if not spm_model.is_file():
        raise InputError(spm_model, "missing tokenizer; run the tokenize stage first")
    with atomic_dir(paths.meta) as out:
        if params.meta.enabled:
            tokenizer = Tokenizer(spm_model, max_placeholders=params.tokenizer.max_placeholders)
            metrics = meta_train(params, paths.clean, tokenizer, paths.train, out,
                                 paths.checkpoints("meta"), log, encoded_dir=paths.encoded)
        else:
            # Downstream stages (adapt) still need a model here; the metrics say it is not meta-learned.
            for name in ("model.safetensors", "model.json"):
                src = paths.train / name
                if not src.is_file():
                    raise InputError(src, "meta.enabled is false and the train model to copy is missing")
                shutil.copy2(src, out / name)
            metrics = {"enabled": False,
                       "note": "meta.enabled is false: meta-learning was not run; data/meta is a copy of the "
                               "train model"}
            # dvc.yaml declares the checkpoint folder: it must exist even when nothing is checkpointed.
            paths.checkpoints("meta").mkdir(parents=True, exist_ok=True)
        write_json(out / "meta_state.json", {k: v for k, v in metrics.items() if k not in VOLATILE_METRICS})
    write_metrics(paths, "meta", metrics)
    return metrics


if __name__ == "__main__":
    stage_main("meta", run)
