"""Stage train: the multilingual model over `languages.targets` (held-out languages excluded)."""
from __future__ import annotations

import logging
import os
import tempfile

from babelflow.config import Params
from babelflow.io import atomic_dir
from babelflow.tokenizer import Tokenizer
from babelflow.train import train_model
from tasks._common import Paths, stage_main, write_metrics

log = logging.getLogger("babelflow.train")


# What DVC compares between runs (data/metrics/train.json); every figure is in data/train/train_state.json.
HEADLINE = ("dev_loss",)


def run(params: Params, paths: Paths) -> dict:
    tokenizer = Tokenizer(paths.tokenizer / "spm.model", max_placeholders=params.tokenizer.max_placeholders)
    # The weights folder is swapped in whole at the end; checkpoints live outside it so a killed
    # run resumes from data/checkpoints/train.
    if int(os.environ.get("RANK", "0")) != 0:
        # Under torchrun only rank 0 writes; the others train into a throwaway folder.
        with tempfile.TemporaryDirectory(prefix="babelflow-rank-") as out:
            return train_model(params, paths.clean, tokenizer, out, paths.checkpoints("train"),
                               paths.plots("train"), log=log.info, encoded_dir=paths.encoded)
    with atomic_dir(paths.train) as out:
        metrics = train_model(params, paths.clean, tokenizer, out, paths.checkpoints("train"),
                              paths.plots("train"), log=log.info, encoded_dir=paths.encoded)
    write_metrics(paths, "train", metrics, keys=HEADLINE)
    return metrics


if __name__ == "__main__":
    stage_main("train", run)
