"""Each stage's `params:` in dvc.yaml is what its code reads, so DVC re-runs a stage when, and only when, a
knob it reads changes (issue 17). Checked against the real reads: every stage runs in-process on a tiny
project while each params field it touches (or dumps, as a checkpoint key does) is recorded.

- every key a stage reads is declared (else editing it leaves a stale output DVC calls up to date);
- every declared entry is read (else editing it re-runs the stage for nothing);
- a whole section is declared only where the stage reads all of it: otherwise its leaf keys are listed
  (DVC's example-get-started convention), so e.g. `evaluate.examples` re-runs evaluate, not adapt.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager

import pytest
import yaml

from tests.pipeline.tiny_project import ROOT, make_project

pytestmark = pytest.mark.slow

STAGES = ["inputs", "collect", "clean", "tokenize", "encode", "train", "meta", "adapt", "evaluate", "release"]
# Sections a stage declares whole although the tiny run reads only part of them: what it reads
# depends on a setting the tiny config does not take.
PARTLY_READ = {
    ("inputs", "collect"): "always_changed: it runs every time, so its params only record what it saw",
    ("adapt", "model"): "builds the scratch init from the subsection of model.arch (transformer or rnn)",
    ("adapt", "adapt"): "select_metric and select_sentences are read only with select_every > 0",
}


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _sections(params) -> dict[int, str]:
    """id of every section object of `params` -> its dotted path ('' for params itself)."""
    from babelflow.config import Section

    where: dict[int, str] = {}

    def walk(obj, prefix: str) -> None:
        where[id(obj)] = prefix
        for name in type(obj).model_fields:
            value = obj.__dict__[name]
            if isinstance(value, Section):
                walk(value, _key(prefix, name))

    walk(params, "")
    return where


def leaves(params, prefix: str = "") -> set[str]:
    """The dotted path of every knob that is not itself a section."""
    from babelflow.config import Section

    out = set()
    for name in type(params).model_fields:
        value = params.__dict__[name]
        out |= leaves(value, _key(prefix, name)) if isinstance(value, Section) else {_key(prefix, name)}
    return out


@contextmanager
def recorded_reads(params):
    """The dotted keys of `params` read while the block runs: field reads, and model_dump's fields."""
    from babelflow.config import Section

    where, reads = _sections(params), set()

    def getattribute(self, name):
        value = object.__getattribute__(self, name)
        prefix = where.get(id(self))
        if prefix is not None and name in type(self).model_fields and not isinstance(value, Section):
            reads.add(_key(prefix, name))
        return value

    dump = Section.model_dump

    def model_dump(self, *args, include=None, exclude=None, **kwargs):
        prefix = where.get(id(self))
        if prefix is not None:
            names = set(type(self).model_fields)
            names = (names & set(include) if include is not None else names) - set(exclude or ())
            reads.update(_key(prefix, n) for n in names)
        return dump(self, *args, include=include, exclude=exclude, **kwargs)

    Section.__getattribute__ = getattribute
    Section.model_dump = model_dump
    try:
        yield reads
    finally:
        del Section.__getattribute__
        Section.model_dump = dump


def covers(entry: str, key: str) -> bool:
    return key == entry or key.startswith(entry + ".")


@pytest.fixture(scope="module")
def reads(tmp_path_factory, multi30k_dir):
    """stage -> the params keys its run() read, on a tiny project, stages in pipeline order."""
    import os

    import torch

    from babelflow.config import load_params
    from tasks._common import Paths

    torch.set_num_threads(1)
    root = make_project(tmp_path_factory.mktemp("reads"), multi30k_dir)
    params = load_params(root / "params.yaml")
    cwd = os.getcwd()
    os.chdir(root)  # the tiny corpus path is relative, as in a real project
    try:
        out = {}
        for stage in STAGES:
            with recorded_reads(params) as got:
                importlib.import_module(f"tasks.{stage}").run(params, Paths(root))
            out[stage] = got
    finally:
        os.chdir(cwd)
    return params, out


def declared(stage: str) -> tuple[list[str], bool]:
    """(the stage's params entries, whether it depends on params.yaml whole)."""
    body = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    entries = []
    for item in body.get("params") or []:
        entries += [item] if isinstance(item, str) else [k for keys in item.values() for k in keys]
    return entries, "params.yaml" in (body.get("deps") or [])


@pytest.mark.parametrize("stage", STAGES)
def test_stage_declares_exactly_the_params_it_reads(reads, stage):
    params, got = reads
    read = got[stage]
    assert read, f"{stage} read no params at all: the recorder is broken"
    entries, whole_file = declared(stage)
    if whole_file:  # release copies params.yaml: any change is a change of its output
        return
    undeclared = sorted(k for k in read if not any(covers(e, k) for e in entries))
    assert not undeclared, f"dvc.yaml stage {stage} reads but does not declare: {undeclared}"
    unread = [e for e in entries if not any(covers(e, k) or covers(k, e) for k in read)]
    assert not unread, f"dvc.yaml stage {stage} declares params it never reads: {unread}"
    all_leaves = leaves(params)
    for entry in entries:
        part = {leaf for leaf in all_leaves if covers(entry, leaf)}
        missed = sorted(leaf for leaf in part if not any(covers(k, leaf) for k in read))
        if missed and (stage, entry) not in PARTLY_READ:
            pytest.fail(f"dvc.yaml stage {stage} declares all of {entry!r} but reads only part of it "
                        f"(not {missed}): list the leaf keys it reads")


def test_the_recorder_sees_a_read_through_a_section_alias():
    """`cfg = params.train; cfg.lr` is recorded as train.lr, and model_dump(include=...) as those keys."""
    from babelflow.config import load_params

    params = load_params(ROOT / "params.yaml")
    with recorded_reads(params) as got:
        cfg = params.train
        _ = cfg.lr
        params.evaluate.model_dump(include={"beam_size"})
    assert got == {"train.lr", "evaluate.beam_size"}
