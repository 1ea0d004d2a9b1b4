"""End to end on a tiny config: DVC and Prefect produce the same artifacts, reruns are no-ops,
a param change re-runs only what depends on it, and CPU runs are bit-for-bit reproducible."""
from __future__ import annotations

import pytest
import yaml

from tests.pipeline.tiny_project import lock_hashes, make_project, ran_stages, sh, stale_stages

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory, multi30k_dir):
    root = make_project(tmp_path_factory.mktemp("dvc"), multi30k_dir)
    sh(["dvc", "repro"], root, timeout=900)
    return root


def test_repro_then_status_clean_and_noop(dvc_project):
    assert stale_stages(dvc_project) == {}
    lock = (dvc_project / "dvc.lock").read_bytes()
    again = sh(["dvc", "repro"], dvc_project).stdout
    assert ran_stages(again) == {"inputs"}, again  # it always runs, and finds the inputs unchanged
    assert (dvc_project / "dvc.lock").read_bytes() == lock
    release = dvc_project / "data" / "release"
    names = {p.name for p in release.iterdir()}
    assert {"model.safetensors", "spm.model", "params.yaml", "MODEL_CARD.md", "SHA256SUMS",
            "learning_curve.png"} <= names


def test_prefect_flow_matches_dvc(dvc_project, tmp_path_factory, multi30k_dir):
    root = make_project(tmp_path_factory.mktemp("prefect"), multi30k_dir)
    home = tmp_path_factory.mktemp("prefect-home")
    sh(["python", "-m", "flows.pipeline", str(root)], root, timeout=900,
       extra_env={"PREFECT_HOME": str(home), "PREFECT_API_URL": "", "PREFECT_LOGGING_LEVEL": "WARNING"})
    assert stale_stages(root) == {}
    assert lock_hashes(root) == lock_hashes(dvc_project)


def test_train_param_change_reruns_only_downstream(dvc_project):
    params_file = dvc_project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["train"]["lr"] = 0.001
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = sh(["dvc", "repro", "--dry"], dvc_project).stdout
    finally:
        params_file.write_text(original)
    ran = ran_stages(out)
    # meta and adapt read other train keys and evaluate none (dvc.yaml names the leaf keys each reads):
    # they depend on data/train, which a real run would change, and --dry does not look that far.
    assert "train" in ran and not ran & {"collect", "clean", "tokenize", "meta", "adapt", "evaluate"}, out


def test_forced_rerun_is_bit_identical(dvc_project):
    before = lock_hashes(dvc_project)
    sh(["dvc", "repro", "--force"], dvc_project, timeout=900)
    assert lock_hashes(dvc_project) == before
