"""The typed form of params.yaml: every knob of the pipeline, validated once before any work starts.

Each pipeline section is one class; `load_params` is the single entry point. Unknown keys, wrong types
and impossible values raise `ConfigError` naming the file and the dotted key, so a typo in
params.yaml fails in a second instead of after an hour of training.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from babelflow.errors import ConfigError
from babelflow.languages import LANG_RE

MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer
MAX_VOCAB = 1_000_000


class KnobError(ValueError):
    """A model validator's complaint about one knob: `loc` is its path below the validated model, so the
    message names `train.average_last`, not just `train`."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc = loc


class Section(BaseModel):
    # No NaN or infinity anywhere: `lr: .inf` passes `gt=0` and trains to NaN.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------------- languages
class LanguagesConfig(Section):
    source: str = "en"
    targets: list[str] = Field(min_length=1)
    # Pairs kept out of train/meta; the adapt stage measures how fast each init learns them.
    heldout: list[str] = Field(default_factory=list)

    @field_validator("source")
    @classmethod
    def _lang(cls, v: str) -> str:
        if not LANG_RE.match(v):
            raise ValueError(f"not a language code: {v!r}")
        return v

    @field_validator("targets", "heldout")
    @classmethod
    def _langs(cls, v: list[str]) -> list[str]:
        for code in v:
            if not LANG_RE.match(code):
                raise ValueError(f"not a language code: {code!r}")
        if len(set(v)) != len(v):
            raise ValueError("duplicate language codes")
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> "LanguagesConfig":
        overlap = set(self.targets) & set(self.heldout)
        if overlap:
            raise ValueError(f"languages both in targets and heldout: {sorted(overlap)}")
        if self.source in self.targets or self.source in self.heldout:
            raise ValueError("source language also listed as a target")
        return self

    @property
    def all_targets(self) -> list[str]:
        return list(self.targets) + list(self.heldout)

    def pair(self, tgt: str) -> str:
        return f"{self.source}-{tgt}"


# ----------------------------------------------------------------------------------------------- collect
class GettextSource(Section):
    type: Literal["gettext"]
    name: str = Field(default="gettext", min_length=1)
    # Folders holding <lang>/LC_MESSAGES/*.mo; "system" and "python" expand to the machine's
    # locale folders and to every installed package's catalogs.
    search: list[str] = Field(default_factory=lambda: ["system", "python"])
    paths: list[str] = Field(default_factory=list)  # explicit .mo/.po files or folders
    domains: list[str] | None = Field(default=None, min_length=1)  # restrict to these catalog domains
    licence: str | None = "per package (see each catalog's project); mostly GPL/LGPL/BSD"

    @model_validator(mode="after")
    def _somewhere(self) -> "GettextSource":
        if not self.search and not self.paths:
            raise ValueError("search and paths are both empty: no catalog would be read")
        return self


class AlignedSource(Section):
    type: Literal["aligned"]
    name: str = Field(min_length=1)
    # Moses layout: <path>/<split>.<lang>; tsv/tatoeba/tmx: one file per split (or one file, split by hash).
    format: Literal["moses", "tsv", "tatoeba", "tmx"] = "moses"
    path: str = Field(min_length=1)
    # split name in the pipeline -> file stem (moses) or file name (others). Missing dev/test => hash split.
    splits: dict[Literal["train", "dev", "test"], str] = Field(default_factory=lambda: {"train": "train"})
    lang: str | None = None  # target language of a two-column TSV
    licence: str | None = None


class UrlSource(Section):
    type: Literal["url"]
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^(https?|ftp|file)://\S+$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    format: Literal["moses", "tsv", "tatoeba", "tmx", "opus-moses-zip"] = "opus-moses-zip"
    # For archives: which members hold which split/lang; free-form, interpreted by the url source.
    members: dict[str, str] = Field(default_factory=dict)
    retries: int = Field(default=4, ge=0, le=20)
    timeout_s: float = Field(default=3600.0, gt=0)  # the whole download, retries included
    max_bytes: int = Field(default=2_000_000_000, gt=0)
    licence: str | None = None


class SacrebleuSource(Section):
    type: Literal["sacrebleu"]
    name: str = Field(min_length=1)
    test_set: str = Field(min_length=1)  # e.g. "wmt14"
    split: Literal["dev", "test"] = "test"
    licence: str | None = None


SourceConfig = Annotated[
    Union[GettextSource, AlignedSource, UrlSource, SacrebleuSource], Field(discriminator="type")
]


class SplitConfig(Section):
    # Fractions of distinct English source strings (by hash, shared by every target language).
    dev: float = Field(default=0.02, ge=0, lt=0.5)
    test: float = Field(default=0.03, ge=0, lt=0.5)
    salt: str = "babelflow"


class CollectConfig(Section):
    sources: list[SourceConfig] = Field(min_length=1)
    split: SplitConfig = SplitConfig()
    max_pairs: int | None = Field(default=None, gt=0)  # cap per pair on train, after dedup of exact pairs
    on_error: Literal["fail", "skip"] = "fail"
    cache_dir: str = Field(default="data/cache", min_length=1)  # downloads; outside DVC outs so a rerun does not download again


# ------------------------------------------------------------------------------------------------- clean
class CleanConfig(Section):
    unicode_form: Literal["NFC", "NFKC"] = "NFC"
    unescape_html: bool = True
    strip_markup: bool = True
    strip_accelerators: bool = True
    placeholder_agreement: bool = True
    min_tokens: int = Field(default=1, ge=0)
    max_tokens: int = Field(default=80, gt=0)
    max_token_chars: int = Field(default=40, gt=0)
    max_length_ratio: float = Field(default=3.0, gt=1)
    ratio_min_tokens: int = Field(default=4, ge=1)  # the ratio test only applies to longer pairs
    number_agreement: bool = True
    script_min_share: float = Field(default=0.5, ge=0, le=1)
    langid: bool = True
    langid_min_prob: float = Field(default=0.5, ge=0, le=1)
    langid_min_chars: int = Field(default=25, ge=0)  # shorter strings are too short to identify
    # The source side too. Off by default: English UI strings are short and technical ("cannot queue
    # commands during COPY") and langid mislabels them, dropping a good pair from every language.
    langid_source: bool = False
    drop_copies: bool = True
    dedup: bool = True
    workers: int = Field(default=0, ge=0)  # 0 = all cores
    # Small enough that both workers stay busy to the end of a file (a 29k-line file was 20k + 9k),
    # large enough that per-chunk costs (pickling, one langid pass) vanish.
    chunk_lines: int = Field(default=2_000, gt=0)
    examples_per_filter: int = Field(default=3, ge=0)
    on_error: Literal["fail", "skip"] = "skip"

    @model_validator(mode="after")
    def _token_range(self) -> "CleanConfig":
        if self.min_tokens > self.max_tokens:
            raise KnobError(("min_tokens",), f"{self.min_tokens} is above max_tokens={self.max_tokens}: "
                                             "every pair would be dropped")
        return self


# --------------------------------------------------------------------------------------------- tokenizer
class TokenizerConfig(Section):
    model_type: Literal["unigram", "bpe"] = "unigram"
    vocab_size: int = Field(default=8000, ge=100, le=MAX_VOCAB)
    character_coverage: float = Field(default=0.9995, gt=0, le=1)
    temperature: float = Field(default=5.0, ge=1)  # language sampling T for the training mix
    sample_sentences: int = Field(default=200_000, gt=0)
    byte_fallback: bool = True
    max_placeholders: int = Field(default=10, ge=0, le=100)


# ------------------------------------------------------------------------------------------------ encode
class EncodeConfig(Section):
    workers: int = Field(default=0, ge=0)  # 0 = all cores; the bytes written do not depend on it
    chunk_lines: int = Field(default=2_000, gt=0)


# ---------------------------------------------------------------------------------------------- executor
class ExecutorConfig(Section):
    # A Dask distributed scheduler (tcp://host:8786) that clean and encode send their chunks to;
    # null: local processes. The output bytes are the same either way.
    address: str | None = None


# ------------------------------------------------------------------------------------------------- model
class TransformerConfig(Section):
    d_model: int = Field(default=256, gt=0)
    ffn_dim: int = Field(default=1024, gt=0)
    heads: int = Field(default=4, gt=0)
    encoder_layers: int = Field(default=3, gt=0)
    decoder_layers: int = Field(default=3, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    attention_dropout: float = Field(default=0.0, ge=0, lt=1)
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"
    max_positions: int = Field(default=512, gt=0, le=65_536)  # the position table is built at this size
    # How the shared embedding (and an untied output layer) start: `normal` is fairseq's N(0, d^-1/2),
    # `xavier` Sockeye's N(0, 2/(V+d)). See babelflow/models/transformer.py for what each does at step 0.
    embed_init: Literal["normal", "xavier"] = "normal"
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> "TransformerConfig":
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by heads={self.heads}")
        return self


class RNNConfig(Section):
    cell: Literal["gru", "lstm"] = "gru"
    embed_dim: int = Field(default=256, gt=0)
    hidden_dim: int = Field(default=256, gt=0)
    encoder_layers: int = Field(default=1, gt=0)
    decoder_layers: int = Field(default=1, gt=0)
    attention: Literal["bahdanau", "luong-dot", "luong-general"] = "bahdanau"
    input_feeding: bool = True
    dropout: float = Field(default=0.2, ge=0, lt=1)
    tie_embeddings: bool = True


class ModelConfig(Section):
    arch: Literal["transformer", "rnn"] = "transformer"
    transformer: TransformerConfig = TransformerConfig()
    rnn: RNNConfig = RNNConfig()


# ------------------------------------------------------------------------------------------------- train
class TrainConfig(Section):
    max_tokens: int = Field(default=4096, gt=0)  # target tokens per batch (before accumulation)
    accumulate: int = Field(default=1, ge=1)
    max_steps: int = Field(default=2000, gt=0)
    lr: float = Field(default=7e-4, gt=0)
    warmup_steps: int = Field(default=400, ge=0)
    schedule: Literal["inverse_sqrt", "cosine", "constant"] = "inverse_sqrt"
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    clip_norm: float = Field(default=1.0, ge=0)
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    max_len: int = Field(default=128, gt=0)  # pieces per side; longer pairs are skipped by the loader
    checkpoint_every: int = Field(default=500, gt=0)
    keep_checkpoints: int = Field(default=3, ge=1)
    validate_every: int = Field(default=500, gt=0)
    dev_bleu_sentences: int = Field(default=200, ge=0)
    early_stopping_metric: Literal["dev_loss", "dev_bleu"] = "dev_loss"
    early_stopping_patience: int = Field(default=0, ge=0)  # validations without improvement; 0 = off
    # k: average the last k checkpoints (1 = the last weights). A list: candidates, each k as above,
    # the one with the best greedy dev BLEU kept (dev only, never test).
    average_last: Annotated[int, Field(ge=1)] | list[Annotated[int, Field(ge=1)]] = 1
    select_sentences: int = Field(default=0, ge=0)  # dev sentences per target scoring the candidates; 0 = all
    resume: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True  # autocast on CUDA only; CPU stays fp32 for bit-for-bit reproducibility
    bf16_cpu: bool = False  # autocast on CPU too (train stage; slow on CPUs without bf16 units)
    compile: bool = False
    threads: int = Field(default=0, ge=0)  # torch intra-op threads on CPU; 0 = all cores
    temperature: float = Field(default=1.0, ge=1)  # language sampling T for the training mix

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"Adam's betas must each be in [0, 1), got {list(v)}")
        return v

    @field_validator("average_last")
    @classmethod
    def _candidates(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, list) and not v:
            raise ValueError("lists no candidate (give k, or a list of k to choose from on dev BLEU)")
        return sorted(set(v)) if isinstance(v, list) else v

    @property
    def average_candidates(self) -> list[int]:
        return self.average_last if isinstance(self.average_last, list) else [self.average_last]

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        made = -(-self.max_steps // self.checkpoint_every)  # one every checkpoint_every steps, and the last
        most = max(self.average_candidates)
        if most > min(self.keep_checkpoints, made):
            raise KnobError(("average_last",), f"{most} checkpoints to average, but only "
                            f"{min(self.keep_checkpoints, made)} exist at the end (keep_checkpoints="
                            f"{self.keep_checkpoints}, max_steps={self.max_steps}, "
                            f"checkpoint_every={self.checkpoint_every})")
        if self.early_stopping_metric == "dev_bleu" and self.early_stopping_patience and not self.dev_bleu_sentences:
            raise KnobError(("dev_bleu_sentences",), "is 0, so early stopping on dev_bleu has no BLEU to "
                                                     "watch and would stop after `patience` validations")
        return self


# -------------------------------------------------------------------------------------------------- meta
class MetaConfig(Section):
    enabled: bool = True
    algorithm: Literal["fomaml", "reptile", "maml"] = "reptile"
    init: Literal["scratch", "train"] = "train"  # meta-train from random init or from the train stage
    meta_steps: int = Field(default=300, gt=0)
    tasks_per_step: int = Field(default=4, gt=0)
    inner_steps: int = Field(default=3, gt=0)
    inner_lr: float = Field(default=1e-3, gt=0)
    inner_optimizer: Literal["sgd", "adam"] = "adam"
    outer_lr: float = Field(default=1.0, gt=0)  # Reptile: interpolation factor; MAML: Adam lr
    support_tokens: int = Field(default=1024, gt=0)
    query_tokens: int = Field(default=1024, gt=0)
    temperature: float = Field(default=1.0, ge=1)
    checkpoint_every: int = Field(default=100, gt=0)
    resume: bool = True

    @model_validator(mode="after")
    def _reptile_step(self) -> "MetaConfig":
        if self.algorithm == "reptile" and self.outer_lr > 1:
            raise KnobError(("outer_lr",), f"{self.outer_lr} is above 1: for reptile it is the fraction of the "
                                           "way to the adapted weights, (0, 1]")
        return self


class AdaptConfig(Section):
    enabled: bool = True
    k: list[int] = Field(default_factory=lambda: [100, 500, 1000])
    steps: int = Field(default=200, gt=0)
    lr: float = Field(default=3e-4, gt=0)
    max_tokens: int = Field(default=2048, gt=0)
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(default_factory=lambda: [1], min_length=1)
    inits: list[Literal["scratch", "transfer", "meta"]] = Field(
        default_factory=lambda: ["scratch", "transfer", "meta"], min_length=1
    )
    eval_sentences: int = Field(default=0, ge=0)  # 0 = the whole held-out test split
    # > 0: keep the weights that score best on the held-out pair's dev split, checked every N steps
    # (and at step 0 and the last step); 0: the weights after `steps` updates.
    select_every: int = Field(default=0, ge=0)
    select_metric: Literal["dev_loss", "dev_bleu"] = "dev_loss"  # dev_bleu: greedy, costs a decode
    select_sentences: int = Field(default=0, ge=0)  # dev sentences scored; 0 = the whole dev split

    @field_validator("k")
    @classmethod
    def _k_positive(cls, v: list[int]) -> list[int]:
        if not v or any(k <= 0 for k in v):
            raise ValueError("k must be a non-empty list of positive sentence counts")
        return sorted(set(v))

    @field_validator("seeds", "inits")
    @classmethod
    def _distinct(cls, v: list) -> list:
        if len(set(v)) != len(v):
            raise ValueError(f"repeats an entry: {v}")
        return v


# ---------------------------------------------------------------------------------------------- evaluate
class ExternalTestSet(Section):
    # Names a file (data/eval/external.<name>.hyp): no folders, no hidden files.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    tgt: str  # target language
    sacrebleu: str | None = None  # a sacrebleu test set name
    src_path: str | None = Field(default=None, min_length=1)
    ref_path: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> "ExternalTestSet":
        if (self.sacrebleu is None) == (self.src_path is None):
            raise ValueError("give either sacrebleu: or src_path:+ref_path:")
        if self.src_path is not None and self.ref_path is None:
            raise ValueError("src_path needs ref_path")
        return self


class EvaluateConfig(Section):
    beam_size: int = Field(default=4, ge=1)
    length_penalty: float = Field(default=1.0, ge=0)
    max_length_ratio: float = Field(default=2.0, gt=0)
    # A word or phrase (up to 8 pieces) at most this many times in a row in a translation; 0 = off.
    # An undertrained model loops ("bei bei bei bei"); three in a row is rare in real text.
    max_run: int = Field(default=3, ge=0)
    batch_sentences: int = Field(default=64, gt=0)
    max_sentences: int = Field(default=0, ge=0)  # 0 = whole test split
    examples: int = Field(default=5, ge=0)
    external: list[ExternalTestSet] = Field(default_factory=list)

    @field_validator("external")
    @classmethod
    def _names_distinct(cls, v: list[ExternalTestSet]) -> list[ExternalTestSet]:
        names = [e.name for e in v]
        if len(set(names)) != len(names):
            raise ValueError(f"two external test sets share a name: {names}")
        return v


# ----------------------------------------------------------------------------------------------- release
class ReleaseConfig(Section):
    name: str = Field(default="babelflow-model", min_length=1)
    version: str = "0.0.0-dev"
    # The model card's `license` (a Hugging Face license id). "other": babelflow cannot choose one for
    # weights trained on sources under their own licences; whoever publishes the model decides.
    license: str = Field(default="other", pattern=r"^[a-z0-9][a-z0-9.+-]*$")
    remote: str = "localremote"
    intended_use: str = (
        "Research and prototyping of translation for software UI strings; not for high-stakes use."
    )

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not re.match(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", v):
            raise ValueError(f"not a semantic version: {v!r}")
        return v


# ---------------------------------------------------------------------------------------------- schedule
def check_cron(expr: str) -> str:
    """`expr` when the Prefect server can schedule it, else ValueError. croniter 6.0.0 is the parser
    Prefect 3.8.8 vendors (prefect._vendor.croniter), and like Prefect this refuses croniter's random
    and hashed fields; importing Prefect itself here would cost every stage a second."""
    from croniter import croniter

    if not croniter.is_valid(expr) or any(f.casefold() in ("r", "h") for f in expr.split()):
        raise ValueError(f"not a valid cron expression: {expr!r} (e.g. '0 3 * * *')")
    return expr


def check_timezone(name: str) -> str:
    """`name` when it is an IANA timezone (the set Prefect accepts), else ValueError."""
    from zoneinfo import available_timezones

    if name not in available_timezones():
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as 'UTC' or 'Europe/Paris')")
    return name


class ScheduleConfig(Section):
    cron: str | None = None
    timezone: str = "UTC"
    deployment: str = "babelflow-nightly"
    # Prefect retries of the stages that touch the network (collect), on top of a source's own
    # download retries: a mirror that is down for minutes outlasts the seconds of the latter.
    network_retries: int = Field(default=3, ge=0, le=20)
    retry_delay_s: list[float] = Field(default_factory=lambda: [5.0, 30.0, 120.0])

    @field_validator("retry_delay_s")
    @classmethod
    def _delays(cls, v: list[float]) -> list[float]:
        if not v or any(d < 0 for d in v):
            raise ValueError("retry_delay_s needs at least one delay, none negative")
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        return v if v is None else check_cron(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return check_timezone(v)


# -------------------------------------------------------------------------------------------------- root
class Params(Section):
    seed: int = Field(default=1234, ge=0, le=MAX_SEED)
    languages: LanguagesConfig
    collect: CollectConfig
    clean: CleanConfig = CleanConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    encode: EncodeConfig = EncodeConfig()
    executor: ExecutorConfig = ExecutorConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    meta: MetaConfig = MetaConfig()
    adapt: AdaptConfig = AdaptConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    release: ReleaseConfig = ReleaseConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _across_sections(self) -> "Params":
        langs = self.languages.all_targets
        if self.adapt.enabled and not self.languages.heldout:
            raise KnobError(("languages", "heldout"), "is empty but adapt.enabled is true: the adapt stage "
                                                      "needs a held-out language (or set adapt.enabled: false)")
        tok = self.tokenizer
        # The pieces train_tokenizer reserves before any text: pad/unk/bos/eos, a <2xx> tag per language,
        # the placeholder symbols, and 256 byte pieces with byte_fallback.
        reserved = 4 + len(langs) + tok.max_placeholders + (256 if tok.byte_fallback else 0)
        if tok.vocab_size <= reserved:
            raise KnobError(("tokenizer", "vocab_size"), f"{tok.vocab_size} leaves no room for text: {reserved} "
                            f"pieces are reserved (4 specials, {len(langs)} language tags, {tok.max_placeholders} "
                            f"placeholders{', 256 bytes' if tok.byte_fallback else ''})")
        tf = self.model.transformer
        # Both sides of a training batch are at most train.max_len long (the source's tag and EOS and the
        # decoder input's BOS included: babelflow.data), so learned positions need that many rows.
        if self.model.arch == "transformer" and tf.positions == "learned" and tf.max_positions < self.train.max_len:
            raise KnobError(("model", "transformer", "max_positions"), f"{tf.max_positions} learned positions "
                            f"cannot hold train.max_len={self.train.max_len} pieces")
        for i, src in enumerate(self.collect.sources):
            key, lang = ("lang",), getattr(src, "lang", None)
            if isinstance(src, UrlSource):  # a downloaded TSV names its language in members (download.py)
                key, lang = ("members",), src.members.get("lang") if src.format in ("tsv", "tatoeba") else None
            if lang is None and getattr(src, "format", None) == "tsv" and len(langs) != 1:
                raise KnobError(("collect", "sources", i, src.type, *key),
                                "a two-column TSV needs its target language (lang) when there are several")
            if lang is not None and lang not in langs:
                raise KnobError(("collect", "sources", i, src.type, *key),
                                f"{lang!r} is not in languages.targets or languages.heldout")
        for i, ext in enumerate(self.evaluate.external):
            if ext.tgt not in langs:
                raise KnobError(("evaluate", "external", i, "tgt"),
                                f"{ext.tgt!r} is not in languages.targets or languages.heldout")
        return self


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def parse_params(data: Any, path: str | Path = "<params>") -> Params:
    """Validate an already-loaded mapping; errors name `path` and each offending dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            # Discriminated unions put the tag in the location ("sources.0.gettext.paths"); keep it,
            # it tells the user which source type was assumed.
            loc, msg = tuple(err["loc"]), err["msg"]
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, KnobError):
                loc, msg = loc + cause.loc, str(cause)
            key = _format_loc(loc)
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            # pydantic prefixes a validator's own ValueError with "Value error, ": noise to a user.
            lines.append(f"{path}: {key}: {msg.removeprefix('Value error, ')}")
        # One mistake, one line; several get a line each under a header.
        raise ConfigError(lines[0] if len(lines) == 1 else "invalid params:\n  " + "\n  ".join(lines)) from None


def apply_overrides(data: Any, overrides: Sequence[str]) -> Any:
    """A copy of `data` with each `section.key=value` set (the value read as YAML: `[de,fr]`, `false`).
    Only the shape is checked here; the keys and values are validated with the rest of the file."""
    if not overrides or not isinstance(data, dict):  # a top level that is no mapping: parse_params says so
        return data
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        names = key.split(".")
        if not sep or not all(names):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.max_steps=100")
        node = out
        for i, name in enumerate(names[:-1]):
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(names[:i + 1])} is not a section")
        try:
            node[names[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: not a YAML value: {' '.join(str(exc).split())}") from None
    return out


def load_params(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """The params file with `overrides` (`--set section.key=value`) applied, validated as one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {exc}") from None
    return parse_params(apply_overrides(data, overrides), f"{path} with --set" if overrides else path)
