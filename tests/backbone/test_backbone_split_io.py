"""The hash split (no leakage across languages) and the atomic writers."""
from __future__ import annotations

import os
import stat

import pytest

from babelflow import io, placeholders
from babelflow.io import atomic_dir, write_text
from babelflow.corpus.split import assign_split, split_key


def test_split_is_shared_by_every_language_and_ignores_accelerators():
    # Same English string, three UI spellings: one split, whatever the target language.
    variants = ["_Open File", "&Open File", "Open File", "open file", "O&pen File"]
    assert len({split_key(v) for v in variants}) == 1
    assert len({assign_split(v, 0.3, 0.3) for v in variants}) == 1


def test_split_fractions_roughly_hold():
    splits = [assign_split(f"sentence number {i}", 0.1, 0.2) for i in range(20000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "dev", "test")}
    assert abs(share["test"] - 0.2) < 0.02 and abs(share["dev"] - 0.1) < 0.02


def test_salt_changes_assignment():
    a = [assign_split(f"s{i}", 0.1, 0.1, salt="a") for i in range(2000)]
    b = [assign_split(f"s{i}", 0.1, 0.1, salt="b") for i in range(2000)]
    assert a != b


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    io.write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with io.atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temp file left behind


def test_atomic_dir_swaps_whole_folder(tmp_path):
    target = tmp_path / "stage"
    with io.atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(KeyError):
        with io.atomic_dir(target) as d:
            (d / "b").write_text("2")
            raise KeyError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_write_json_is_deterministic(tmp_path):
    io.write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    io.write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert io.sha256_file(tmp_path / "a.json") == io.sha256_file(tmp_path / "b.json")


@pytest.mark.parametrize("src,tgt,expected", [
    ("Delete %s files?", "%s Dateien löschen?", True),
    ("%(count)d of %(total)d", "%(total)d sur %(count)d", True),
    ("Open {0}", "Öffnen", False),
    ("100%% done", "100 % erledigt", True),  # escaped percent and French spacing are not placeholders
    ("Copy %1 to %2", "Kopiere %2 nach %1", True),
])
def test_placeholder_agreement(src, tgt, expected):
    assert placeholders.agree(src, tgt) is expected


def test_mask_unmask_round_trip():
    src, tgt = "Move %1$s to %2$s", "%2$s: %1$s verschieben"
    msrc, mtgt, mapping = placeholders.mask_pair(src, tgt)
    assert msrc == "Move <ph0> to <ph1>" and mtgt == "<ph1>: <ph0> verschieben"
    assert placeholders.unmask(mtgt, mapping) == tgt
    assert placeholders.unmask("stray <ph7> symbol", mapping) == "stray symbol"  # dropped with its space


def test_atomic_outputs_get_the_umask_permissions_not_temp_file_ones(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "b.txt").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
