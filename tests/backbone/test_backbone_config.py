"""params.yaml validation: every mistake is named by file and key before any work starts."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from babelflow.config import load_params, parse_params
from babelflow.errors import ConfigError


@pytest.fixture()
def base(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_shipped_params_are_valid(repo_root):
    params = load_params(repo_root / "params.yaml")
    assert params.languages.source == "en"
    assert params.collect.sources[0].type == "gettext"
    assert set(params.languages.heldout).isdisjoint(params.languages.targets)


def test_unknown_key_named_with_file(base, tmp_path):
    base["train"]["max_stepz"] = 10
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert f"{path}: train.max_stepz: unknown key" in str(exc.value)


def test_wrong_type_and_impossible_value(base):
    bad = copy.deepcopy(base)
    bad["train"]["lr"] = "fast"
    bad["model"]["transformer"]["heads"] = 3  # 256 is not divisible by 3
    with pytest.raises(ConfigError) as exc:
        parse_params(bad, "params.yaml")
    msg = str(exc.value)
    assert "params.yaml: train.lr" in msg
    assert "not divisible by heads=3" in msg


def test_heldout_must_not_be_trained_on(base):
    base["languages"]["heldout"] = ["de"]
    with pytest.raises(ConfigError, match="both in targets and heldout"):
        parse_params(base)


@pytest.mark.parametrize("code", ["sr@latin", "ca@valencia", "pt_BR", "zh_Hant"])
def test_gettext_language_codes_are_targets(base, code):
    base["languages"]["targets"] = ["de", code]
    assert parse_params(base).languages.targets == ["de", code]


@pytest.mark.parametrize("code", ["German", "de-DE", "sr@", "de/../x", "sr@latin@x"])
def test_other_language_codes_are_refused(base, code):
    base["languages"]["targets"] = ["de", code]
    with pytest.raises(ConfigError, match="not a language code"):
        parse_params(base)


def test_unknown_source_type(base):
    base["collect"]["sources"] = [{"type": "ftp", "name": "x"}]
    with pytest.raises(ConfigError, match=r"collect\.sources\[0\]"):
        parse_params(base)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("seed: 1\nlanguages: [unclosed\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:\d+: not valid YAML"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


BASE = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())


@settings(max_examples=60, deadline=None)
@given(section=st.sampled_from(["train", "meta", "adapt", "clean", "tokenizer", "evaluate"]),
       key_index=st.integers(0, 100),
       value=st.one_of(st.text(max_size=5), st.integers(-5, 5), st.floats(allow_nan=True), st.none(),
                       st.lists(st.integers(), max_size=2)))
def test_random_values_never_crash_the_loader(section, key_index, value):
    """Any value for any key either validates or raises ConfigError, nothing else."""
    keys = sorted(BASE[section])
    bad = copy.deepcopy(BASE)
    bad[section][keys[key_index % len(keys)]] = value
    try:
        parse_params(bad)
    except ConfigError as exc:
        assert section in str(exc)


@pytest.mark.parametrize("key, value, message", [
    ("timezone", "Mars/Base", "schedule.timezone: Value error, unknown timezone 'Mars/Base'"),
    ("cron", "0 3 * *", "schedule.cron: Value error, not a valid cron expression: '0 3 * *'"),
    ("cron", "61 * * * *", "schedule.cron: Value error, not a valid cron expression"),
    ("cron", "H * * * *", "schedule.cron: Value error, not a valid cron expression"),  # Prefect refuses hashed
])
def test_schedule_cron_and_timezone_are_checked_at_load(base, tmp_path, key, value, message):
    base["schedule"][key] = value
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert f"{path}: {message}" in str(exc.value)


@pytest.mark.parametrize("cron, timezone", [("*/15 2-4 * * MON-FRI", "Europe/Paris"), ("@daily", "Etc/UTC"),
                                            (None, "America/New_York")])
def test_schedule_accepts_what_prefect_accepts(base, cron, timezone):
    base["schedule"].update(cron=cron, timezone=timezone)
    assert parse_params(base).schedule.timezone == timezone
