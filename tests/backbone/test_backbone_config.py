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


def _set(params: dict, dotted: str, value) -> None:
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value


INF = float("inf")
TSV = {"type": "aligned", "name": "t", "format": "tsv", "path": "corpus.tsv"}
# Issue 16: knobs that were accepted and then failed late (or trained to NaN). Each case: the keys set
# on the shipped params.yaml, and the dotted key the error must name. Shipped: targets de fr es ru sv,
# heldout ga, byte_fallback on, 10 placeholders, train.max_len 64, keep_checkpoints 2, adapt on.
BAD_KNOBS = {
    "seed_above_int64": ({"seed": 2**63}, "seed"),
    "seed_negative": ({"seed": -1}, "seed"),
    "betas_one": ({"train.betas": [0.9, 1.0]}, "train.betas"),
    "betas_negative": ({"train.betas": [-0.1, 0.98]}, "train.betas"),
    # 4 specials + 6 tags + 10 placeholders + 256 byte pieces do not fit in 200.
    "vocab_below_reserved": ({"tokenizer.vocab_size": 200}, "tokenizer.vocab_size"),
    "vocab_absurd": ({"tokenizer.vocab_size": 2_000_000}, "tokenizer.vocab_size"),
    "learned_positions_short": ({"model.transformer.positions": "learned", "model.transformer.max_positions": 63},
                                "model.transformer.max_positions"),
    "tsv_lang_not_a_target": ({"collect.sources": [{**TSV, "lang": "it"}]}, "collect.sources[0].aligned.lang"),
    "tsv_without_lang": ({"collect.sources": [TSV]}, "collect.sources[0].aligned.lang"),
    "url_tsv_lang_not_a_target": ({"collect.sources": [{"type": "url", "name": "u", "url": "https://x.org/a.tsv",
                                                        "format": "tsv", "members": {"lang": "it"}}]},
                                  "collect.sources[0].url.members"),
    "url_sha256_malformed": ({"collect.sources": [{"type": "url", "name": "u", "url": "https://x.org/a.zip",
                                                   "sha256": "abc"}]}, "collect.sources[0].url.sha256"),
    "url_timeout_inf": ({"collect.sources": [{"type": "url", "name": "u", "url": "https://x.org/a.zip",
                                              "timeout_s": INF}]}, "collect.sources[0].url.timeout_s"),
    "gettext_no_domains": ({"collect.sources": [{"type": "gettext", "domains": []}]},
                           "collect.sources[0].gettext.domains"),
    "source_name_empty": ({"collect.sources": [{**TSV, "lang": "de", "name": ""}]}, "collect.sources[0].aligned.name"),
    "source_path_empty": ({"collect.sources": [{**TSV, "lang": "de", "path": ""}]}, "collect.sources[0].aligned.path"),
    "cache_dir_empty": ({"collect.cache_dir": ""}, "collect.cache_dir"),
    "heldout_empty_with_adapt": ({"languages.heldout": []}, "languages.heldout"),
    "train_lr_inf": ({"train.lr": INF}, "train.lr"),
    "meta_inner_lr_inf": ({"meta.inner_lr": INF}, "meta.inner_lr"),
    "meta_outer_lr_inf": ({"meta.outer_lr": INF}, "meta.outer_lr"),
    "reptile_outer_lr_above_one": ({"meta.outer_lr": 2.0}, "meta.outer_lr"),
    "adapt_lr_inf": ({"adapt.lr": INF}, "adapt.lr"),
    "clip_norm_inf": ({"train.clip_norm": INF}, "train.clip_norm"),
    "weight_decay_inf": ({"train.weight_decay": INF}, "train.weight_decay"),
    "train_temperature_inf": ({"train.temperature": INF}, "train.temperature"),
    "meta_temperature_inf": ({"meta.temperature": INF}, "meta.temperature"),
    "tokenizer_temperature_inf": ({"tokenizer.temperature": INF}, "tokenizer.temperature"),
    "clean_length_ratio_inf": ({"clean.max_length_ratio": INF}, "clean.max_length_ratio"),
    "clean_min_above_max_tokens": ({"clean.min_tokens": 60}, "clean.min_tokens"),
    "eval_length_penalty_inf": ({"evaluate.length_penalty": INF}, "evaluate.length_penalty"),
    "eval_length_ratio_inf": ({"evaluate.max_length_ratio": INF}, "evaluate.max_length_ratio"),
    "average_last_above_kept": ({"train.average_last": 3}, "train.average_last"),
    "average_last_above_made": ({"train.average_last": 3, "train.keep_checkpoints": 5, "train.max_steps": 400,
                                 "train.checkpoint_every": 300}, "train.average_last"),
    "early_stopping_on_no_bleu": ({"train.early_stopping_metric": "dev_bleu", "train.early_stopping_patience": 2,
                                   "train.dev_bleu_sentences": 0}, "train.dev_bleu_sentences"),
    "adapt_no_seeds": ({"adapt.seeds": []}, "adapt.seeds"),
    "adapt_seed_negative": ({"adapt.seeds": [-1]}, "adapt.seeds[0]"),
    "adapt_no_inits": ({"adapt.inits": []}, "adapt.inits"),
    "adapt_duplicate_inits": ({"adapt.inits": ["meta", "meta"]}, "adapt.inits"),
    "external_tgt_unknown": ({"evaluate.external": [{"name": "x", "tgt": "it", "sacrebleu": "wmt14"}]},
                             "evaluate.external[0].tgt"),
    "external_name_is_a_path": ({"evaluate.external": [{"name": "../x", "tgt": "de", "sacrebleu": "wmt14"}]},
                                "evaluate.external[0].name"),
    "external_names_repeat": ({"evaluate.external": [{"name": "x", "tgt": "de", "sacrebleu": "wmt14"},
                                                     {"name": "x", "tgt": "fr", "sacrebleu": "wmt14"}]},
                              "evaluate.external"),
    "release_name_empty": ({"release.name": ""}, "release.name"),
    "gettext_nowhere_to_look": ({"collect.sources": [{"type": "gettext", "search": [], "paths": []}]},
                                "collect.sources[0].gettext"),
    "url_not_a_url": ({"collect.sources": [{"type": "url", "name": "u", "url": "corpus.zip"}]},
                      "collect.sources[0].url.url"),
    "max_positions_absurd": ({"model.transformer.max_positions": 10**8}, "model.transformer.max_positions"),
    "external_src_path_empty": ({"evaluate.external": [{"name": "x", "tgt": "de", "src_path": "", "ref_path": "r"}]},
                                "evaluate.external[0].src_path"),
}


@pytest.mark.parametrize("case", sorted(BAD_KNOBS))
def test_every_knob_is_bounded_up_front(base, tmp_path, case):
    overrides, key = BAD_KNOBS[case]
    for dotted, value in overrides.items():
        _set(base, dotted, value)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert f"{path}: {key}: " in str(exc.value)


def test_the_bounds_leave_the_edges_valid(base):
    """Just inside each new bound still loads."""
    _set(base, "seed", 2**63 - 1)
    _set(base, "train.betas", [0.0, 0.999])
    _set(base, "tokenizer.vocab_size", 4 + 6 + 10 + 256 + 1)
    _set(base, "model.transformer.positions", "learned")
    _set(base, "model.transformer.max_positions", 64)  # == train.max_len: see the test below
    _set(base, "meta.outer_lr", 1.0)
    _set(base, "train.average_last", 2)
    _set(base, "clean.min_tokens", 50)
    _set(base, "collect.sources", [{**TSV, "lang": "ga"}])
    _set(base, "evaluate.external", [{"name": "wmt14.de", "tgt": "de", "sacrebleu": "wmt14"}])
    parse_params(base)
    _set(base, "languages.heldout", [])
    _set(base, "adapt.enabled", False)
    _set(base, "collect.sources", [{**TSV, "lang": "de"}])
    parse_params(base)


def test_learned_positions_equal_to_max_len_train():
    """The bound is exact: a batch of train.max_len pieces per side (the <2xx> tag and EOS counted in the
    source, BOS replacing the last target piece in the decoder input) fits max_positions == max_len."""
    import torch

    from babelflow.config import ModelConfig, TransformerConfig
    from babelflow.data import collate
    from babelflow.models import build_model

    max_len = 12
    cfg = ModelConfig(transformer=TransformerConfig(d_model=8, ffn_dim=16, heads=2, encoder_layers=1,
                                                    decoder_layers=1, positions="learned", max_positions=max_len))
    model = build_model(cfg, vocab_size=40)
    batch = collate([([5] * max_len, [6] * (max_len - 1) + [3])])
    assert batch.src.shape[1] == batch.tgt_in.shape[1] == max_len
    with torch.no_grad():
        model(batch.src, batch.tgt_in)


@pytest.mark.parametrize("key, value, message", [
    ("timezone", "Mars/Base", "schedule.timezone: unknown timezone 'Mars/Base'"),
    ("cron", "0 3 * *", "schedule.cron: not a valid cron expression: '0 3 * *'"),
    ("cron", "61 * * * *", "schedule.cron: not a valid cron expression"),
    ("cron", "H * * * *", "schedule.cron: not a valid cron expression"),  # Prefect refuses hashed
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


# ------------------------------------------------------------------ overrides: `--set section.key=value`
def test_overrides_set_leaf_keys_as_yaml_values(repo_root):
    params = load_params(repo_root / "params.yaml", ["train.max_steps=100", "languages.targets=[de,fr]",
                                                     "model.transformer.d_model=128", "train.bf16=false"])
    assert params.train.max_steps == 100 and params.languages.targets == ["de", "fr"]
    assert params.model.transformer.d_model == 128 and params.train.bf16 is False
    assert params.model.transformer.heads == load_params(repo_root / "params.yaml").model.transformer.heads


def test_override_of_a_section_the_file_leaves_out(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("languages: {targets: [de]}\ncollect: {sources: [{type: gettext}]}\nadapt: {enabled: false}\n")
    assert load_params(path, ["clean.min_tokens=2"]).clean.min_tokens == 2


@pytest.mark.parametrize("override,named", [
    ("train.max_stepz=100", "train.max_stepz: unknown key"),
    ("trian.max_steps=100", "trian: unknown key"),
    ("train.max_steps=-1", "train.max_steps: Input should be greater than 0"),
    ("train.max_steps.x=1", "train.max_steps is not a section"),
    ("train.max_steps", "expected section.key=value"),
    ("=3", "expected section.key=value"),
])
def test_a_bad_override_is_one_line_naming_the_key(repo_root, override, named):
    with pytest.raises(ConfigError) as exc:
        load_params(repo_root / "params.yaml", [override])
    assert named in str(exc.value) and "\n" not in str(exc.value)
    assert "--set" in str(exc.value)


def test_overrides_apply_before_validation(repo_root):
    # Alone each value is refused (4 heads do not divide 130); together they are valid.
    with pytest.raises(ConfigError, match="not divisible"):
        load_params(repo_root / "params.yaml", ["model.transformer.d_model=130"])
    params = load_params(repo_root / "params.yaml", ["model.transformer.d_model=130", "model.transformer.heads=2"])
    assert params.model.transformer.d_model == 130


def test_stage_main_takes_set(tmp_path, repo_root):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tasks.inputs", "--params", str(repo_root / "params.yaml"),
                           "--root", str(tmp_path), "--set", "train.max_stepz=3"],
                          cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "train.max_stepz: unknown key" in proc.stderr.strip().splitlines()[-1]
