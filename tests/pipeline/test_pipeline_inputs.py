"""DVC sees the pipeline's inputs, and a bad params.yaml stops the run before any output is touched.

Real dvc on tiny projects: editing a Moses, TSV or TMX file or adding/changing a gettext catalog
re-runs collect (and what its outputs feed); an unchanged machine, or a file merely touched, runs
only the always-run `inputs` stage and leaves dvc.lock as it was. A typo anywhere in params.yaml
fails the run naming the key while every existing output stays byte-identical.
"""
from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from tests.corpus.mo_writer import make_mo
from tests.pipeline.tiny_project import make_project, ran_stages, sh, stale_stages

pytestmark = pytest.mark.slow


def _lines(multi30k_dir, lang: str, start: int, n: int) -> list[str]:
    with open(multi30k_dir / f"train.{lang}", encoding="utf-8") as fh:
        return fh.read().split("\n")[start:start + n]


def _mo(en: list[str], tgt: list[str]) -> bytes:
    return make_mo({s.encode(): t.encode() for s, t in zip(en, tgt)})


def _tmx(en: list[str], fr: list[str]) -> str:
    tus = "".join(f'<tu><tuv xml:lang="en"><seg>{s}</seg></tuv><tuv xml:lang="fr"><seg>{t}</seg></tuv></tu>\n'
                  for s, t in zip(en, fr))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header/><body>\n{tus}</body></tmx>\n'


def _snapshot(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in (root / "data").rglob("*") if p.is_file()}


@pytest.fixture()
def mixed_project(tmp_path, multi30k_dir):
    """The tiny project with one source of each local kind: Moses, TSV, TMX and gettext catalogs."""
    sources = [
        {"type": "aligned", "name": "moses", "format": "moses", "path": "corpus", "splits": {"train": "train"}},
        {"type": "aligned", "name": "tsv", "format": "tsv", "path": "extra", "lang": "de",
         "splits": {"train": "train.tsv"}},
        {"type": "aligned", "name": "tmx", "format": "tmx", "path": "tm", "splits": {"train": "memory.tmx"}},
        {"type": "gettext", "name": "catalogs", "search": ["locale"]},
    ]
    root = make_project(tmp_path / "p", multi30k_dir, lines=200, overrides={"collect.sources": sources})
    en, de, fr = (_lines(multi30k_dir, lang, 400, 60) for lang in ("en", "de", "fr"))
    (root / "extra").mkdir()
    (root / "extra" / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in zip(en[:20], de[:20])))
    (root / "tm").mkdir()
    (root / "tm" / "memory.tmx").write_text(_tmx(en[20:40], fr[20:40]))
    (root / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (root / "locale" / "fr" / "LC_MESSAGES" / "app.mo").write_bytes(_mo(en[40:50], fr[40:50]))
    return root, en, de, fr


def test_input_edits_rerun_collect_and_an_unchanged_machine_runs_nothing(mixed_project):
    root, en, de, fr = mixed_project
    first = sh(["dvc", "repro", "clean"], root).stdout
    assert {"collect", "clean"} <= ran_stages(first), first

    def repro() -> set[str]:
        return ran_stages(sh(["dvc", "repro", "clean"], root).stdout)

    lock = (root / "dvc.lock").read_bytes()
    # Nothing changed: at most the always-run inputs stage runs; dvc.lock and status stay clean.
    assert repro() <= {"inputs"}
    assert (root / "dvc.lock").read_bytes() == lock
    assert stale_stages(root, "clean", "--with-deps") == {}

    # Touched but unchanged inputs, and a file collect does not read (es is no language here).
    for path in [*root.joinpath("corpus").iterdir(), root / "extra" / "train.tsv", root / "tm" / "memory.tmx",
                 root / "locale" / "fr" / "LC_MESSAGES" / "app.mo"]:
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    (root / "corpus" / "train.es").write_text("hola\n" * 200)
    assert repro() <= {"inputs"}
    assert (root / "dvc.lock").read_bytes() == lock

    def edited(what: str, path, content) -> None:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        ran = repro()
        assert {"collect", "clean"} <= ran, f"{what}: {ran}"

    moses = root / "corpus" / "train.de"
    edited("moses edit", moses, moses.read_text(encoding="utf-8").replace("\n", " Hallo.\n", 1))
    edited("tsv edit", root / "extra" / "train.tsv",
           (root / "extra" / "train.tsv").read_text(encoding="utf-8") + f"{en[20]}\t{de[20]}\n")
    edited("tmx edit", root / "tm" / "memory.tmx", _tmx(en[20:41], fr[20:41]))
    edited("gettext catalog changed", root / "locale" / "fr" / "LC_MESSAGES" / "app.mo", _mo(en[40:52], fr[40:52]))
    (root / "locale" / "de" / "LC_MESSAGES").mkdir(parents=True)
    edited("gettext catalog added", root / "locale" / "de" / "LC_MESSAGES" / "new.mo", _mo(en[52:60], de[52:60]))
    manifest = json.loads((root / "data" / "raw" / "manifest.json").read_text())
    assert any(r["path"].endswith("de/LC_MESSAGES/new.mo") for r in manifest["inputs"]), manifest["inputs"]
    # Settled again: the next run is a no-op.
    lock = (root / "dvc.lock").read_bytes()
    assert repro() <= {"inputs"}
    assert (root / "dvc.lock").read_bytes() == lock


def test_params_typo_fails_naming_the_key_before_any_output_is_touched(tmp_path, multi30k_dir):
    root = make_project(tmp_path / "p", multi30k_dir, lines=200)
    sh(["dvc", "repro", "tokenize"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "tiny run"], root)
    before = _snapshot(root)
    assert any(p.startswith("data/tokenizer/") for p in before)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tokenizer"]["vocab_sise"] = 600  # the typo: tokenize's params changed, so DVC would re-run it
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["dvc", "repro"], ["dvc", "repro", "tokenize"], ["dvc", "exp", "run"]):
        res = sh(cmd, root, check=False)
        out = res.stdout + res.stderr
        assert res.returncode != 0, out[-3000:]
        assert "tokenizer.vocab_sise: unknown key" in out, out[-3000:]
        assert ran_stages(out) <= {"inputs"}, out[-3000:]
        assert _snapshot(root) == before, cmd


def test_prefect_flow_ends_on_a_params_typo_with_the_message_before_any_stage(tmp_path, multi30k_dir):
    root = make_project(tmp_path / "p", multi30k_dir, lines=50, overrides={"train.lrr": 0.1})
    res = sh(["python", "-m", "flows.pipeline", str(root)], root, check=False,
             extra_env={"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_API_URL": ""})
    out = res.stdout + res.stderr
    # The flow run fails with the message (Prefect logs its own traceback of a failed run), then the
    # process ends with the message alone and exit 2, as every stage does; no stage started.
    assert res.returncode == 2, out[-3000:]
    assert re.search(r"Finished in state Failed\(.*ConfigError.*train\.lrr: unknown key", out), out[-3000:]
    assert f"babelflow pipeline: error: {root / 'params.yaml'}: train.lrr: unknown key\n" in res.stderr, out[-3000:]
    assert "Running stage" not in out and not (root / "data").exists(), out[-3000:]
