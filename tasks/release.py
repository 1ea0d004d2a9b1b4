"""Release stage: assemble data/release from the trained model, tokenizer, params and metrics."""
from __future__ import annotations

from babelflow.config import Params
from babelflow.release import ReleaseInputs, build_release
from tasks._common import Paths, stage_main


def run(params: Params, paths: Paths) -> dict:
    inputs = ReleaseInputs(
        train_dir=paths.train,
        tokenizer_dir=paths.tokenizer,
        eval_metrics=paths.eval / "metrics.json",
        adapt_dir=paths.adapt,
        manifest=paths.raw / "manifest.json",
        clean_report=paths.clean / "report.json",
        learning_curve=paths.eval / "learning_curve.png",
    )
    files = build_release(paths.release, params.model_dump(mode="json"), inputs)
    return {"files": len(files)}


if __name__ == "__main__":
    stage_main("release", run)
