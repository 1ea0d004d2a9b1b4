"""clean and encode on a Dask distributed cluster (`executor.address`) write the bytes of a local run."""
from __future__ import annotations

import pytest

from babelflow.clean import clean_corpus
from babelflow.config import CleanConfig
from babelflow.encode import encode_corpus

PAIRS = ["en-de", "en-fr", "en-ga"]


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _worker_did_both() -> bool:
    from babelflow.clean import worker
    from babelflow.encode import _TOKENIZERS

    return worker._INSTALLED[0] is not None and bool(_TOKENIZERS)


def test_clean_and_encode_on_a_dask_cluster_match_the_local_run(clean_dir, tokenizer, tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg = CleanConfig(workers=1, chunk_lines=16)
    out = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        for name, address in (("local", None), ("dask", cluster.scheduler_address)):
            clean, enc = tmp_path / name / "clean", tmp_path / name / "encoded"
            clean.mkdir(parents=True)
            report = clean_corpus(clean_dir, clean, cfg, "en", ["de", "fr", "ga"], address=address)
            manifest = encode_corpus(clean, enc, tokenizer.path, tokenizer.max_placeholders, PAIRS, workers=1,
                                     chunk_lines=16, address=address)
            out[name] = (report, manifest, _files(clean), _files(enc))
        with distributed.Client(cluster) as client:  # both workers filtered and encoded chunks
            assert all(client.run(_worker_did_both).values()) and len(client.run(_worker_did_both)) == 2
    local, dask = out["local"], out["dask"]
    assert local[0] == dask[0] and local[1] == dask[1]
    assert local[2] == dask[2] and local[3] == dask[3]
    assert sum(r["train"]["out"] for r in local[0]["pairs"].values()) > 100  # something was kept to compare
