"""`schedule`, `run` and `export` hand over to the flows and the exporter with the user's arguments."""
from __future__ import annotations

import sys
import types

from babelflow.cli import main


def fake_module(monkeypatch, name: str, **attrs) -> None:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)


def test_schedule_delegates_to_flows_serve(monkeypatch, tmp_path):
    calls = []
    fake_module(monkeypatch, "flows.schedule", serve=lambda cron, **kw: calls.append((cron, kw)))
    (tmp_path / "params.yaml").write_text(
        "languages: {targets: [de]}\ncollect: {sources: [{type: gettext}]}\nadapt: {enabled: false}\n"
        "schedule: {cron: '5 4 * * *', timezone: Europe/Paris, deployment: nightly-x}\n")
    assert main(["schedule", "--root", str(tmp_path)]) == 0
    assert calls == [("5 4 * * *", {"root": str(tmp_path), "name": "nightly-x", "timezone": "Europe/Paris",
                                     "stages": None})]
    assert main(["schedule", "--cron", "0 1 * * *", "--root", str(tmp_path), "--timezone", "UTC"]) == 0
    assert calls[-1][0] == "0 1 * * *" and calls[-1][1]["timezone"] == "UTC"
    assert main(["schedule", "--root", str(tmp_path), "--stages", "collect"]) == 0
    assert calls[-1][1]["stages"] == ["collect"]


def test_run_delegates_to_pipeline_flow(monkeypatch, tmp_path):
    from flows.pipeline import check_stages

    calls = []
    fake_module(monkeypatch, "flows.pipeline", run_pipeline=lambda root, **kw: calls.append((root, kw)) or 0,
                check_stages=check_stages)
    (tmp_path / "params.yaml").write_text(
        "languages: {targets: [de]}\ncollect: {sources: [{type: gettext}]}\nadapt: {enabled: false}\n")
    assert main(["run", "--root", str(tmp_path), "--stages", "evaluate", "release"]) == 0
    assert calls == [(tmp_path.resolve(), {"stages": ["evaluate", "release"]})]


def test_export_passes_its_arguments(monkeypatch):
    seen = []
    fake_module(monkeypatch, "babelflow.export", main=lambda argv: seen.append(argv) or 0)
    assert main(["export", "--format", "ctranslate2", "--release", "data/release", "--output", "ct2"]) == 0
    assert seen == [["--format", "ctranslate2", "--release", "data/release", "--output", "ct2"]]


def test_export_missing_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "babelflow.export", None)  # import fails as if absent
    assert main(["export", "--format", "ctranslate2"]) == 2
    assert "export is not available" in capsys.readouterr().err
