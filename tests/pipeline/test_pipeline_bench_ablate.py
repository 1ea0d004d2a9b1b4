"""bench/ablate.py with no stages scores the --data project's own trained model under each variant's
decoding settings: nothing is trained again and each variant decodes with its own beam."""
from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import yaml

from babelflow.config import load_params
from babelflow.io import write_json
from babelflow.models import build_model, save_model
from bench import ablate
from tests.pipeline.tiny_project import TINY_PARAMS, tokenized_project


def trained_project(tmp_path: Path) -> tuple[Path, Path]:
    params = yaml.safe_load(yaml.safe_dump(TINY_PARAMS))
    params["languages"] = {"source": "en", "targets": ["de"], "heldout": []}
    params["meta"]["enabled"] = params["adapt"]["enabled"] = False
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    project = tokenized_project(tmp_path, dev_lines=8)
    model = build_model(load_params(params_file).model, 30)
    save_model(model, project / "data" / "train")
    write_json(project / "data" / "train" / "train_state.json", {"steps": 123})
    return params_file, project


def test_no_stages_decodes_the_projects_model(tmp_path):
    params_file, project = trained_project(tmp_path)
    args = Namespace(params=str(params_file), data=str(project), stages=[], dev_sentences=0,
                     work=str(tmp_path / "work"))
    rows = [ablate.run_variant(args, *ablate.parse_variant(v))
            for v in ("beam1: evaluate.beam_size=1", "beam3: evaluate.beam_size=3 evaluate.length_penalty=0.6")]
    for row in rows:
        work = tmp_path / "work" / row.name
        # The project's model was scored, not a new one trained: its train folder is linked read-only.
        assert (work / "data" / "train").resolve() == (project / "data" / "train").resolve()
        assert not (work / "data" / "checkpoints").exists()
        assert row.steps == 123 and row.train_s is None and [d.n for d in row.dev] == [8]
        saved = json.loads((work / "ablation.json").read_text(encoding="utf-8"))
        assert saved["overrides"] == row.overrides
    assert "| beam3 | evaluate.beam_size=3 evaluate.length_penalty=0.6 | 123 | - |" in ablate.table(rows)
