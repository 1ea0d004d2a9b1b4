"""One shared SentencePiece model for every language of a run, and the encode/decode used at the
model boundary (placeholder masking, target-language tags, BOS/EOS).

Training is made byte-reproducible: the language mix is drawn with a seeded RNG and written in a
fixed order, SentencePiece does no sampling or shuffling of its own and runs single-threaded.
"""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

from babelflow import placeholders
from babelflow.config import TokenizerConfig
from babelflow.digests import DigestSet, digest
from babelflow.errors import ConfigError, InputError
from babelflow.io import atomic_path, chunks, fingerprint_of, write_text
from babelflow.specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID, lang_tag


def read_lines(source: Sequence[str] | str | Path) -> list[str]:
    return list(iter_lines(source))


def iter_lines(source: Sequence[str] | str | Path) -> Iterator[str]:
    """A file's lines (split on "\n" only, as written), streamed; InputError names a bad line."""
    if not isinstance(source, (str, Path)):
        yield from source
        return
    path = Path(source)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    with fh:
        for n, raw in enumerate(fh, 1):
            try:
                yield raw.rstrip(b"\n").decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(path, "not valid UTF-8", line=n) from None


class _Lines:
    """One language's training lines: the non-blank lines of its sources, each distinct line once when
    `distinct` (the English side recurs in every pair of a multi-way corpus; counting it once keeps it
    from dominating the mix). Read twice, never held: a first pass counts them (and marks the first
    occurrences, 1 byte a line, with an 8-byte digest set), `pick` reads again for the sampled ones."""

    def __init__(self, sources: list, distinct: bool, keep_first: int):
        self.sources = sources
        self.first: list[str] = []  # the first `keep_first` lines, for the report
        self.marks: list[np.ndarray] | None = [] if distinct else None
        seen = DigestSet(flush=1 << 16)  # ~5 MB of Python set, then 8 bytes a line
        n = 0
        for src in sources:
            marks = bytearray()
            for chunk in chunks(iter_lines(src), 1 << 14):
                digests = [digest(t) for t in chunk] if distinct else None
                if distinct:
                    seen.prepare(digests)
                for i, t in enumerate(chunk):
                    ok = bool(t.strip())
                    if ok and distinct:
                        ok = digests[i] not in seen
                        if ok:
                            seen.add(digests[i])
                    if distinct:
                        marks.append(ok)
                    if ok:
                        if n < keep_first:
                            self.first.append(t)
                        n += 1
            if self.marks is not None:
                self.marks.append(np.frombuffer(bytes(marks), np.bool_))
        self.n = n

    def pick(self, wanted: np.ndarray) -> dict[int, str]:
        """{line number: line} for the sorted, distinct line numbers in `wanted`."""
        out: dict[int, str] = {}
        if not len(wanted):
            return out
        n, at = 0, 0
        for k, src in enumerate(self.sources):
            marks = self.marks[k] if self.marks is not None else None
            for i, t in enumerate(iter_lines(src)):
                if not (marks[i] if marks is not None else t.strip()):
                    continue
                if n == wanted[at]:
                    out[n] = t
                    at += 1
                    if at == len(wanted):
                        return out
                n += 1
        return out


def _is_file_list(src) -> bool:
    return isinstance(src, (list, tuple)) and bool(src) and all(isinstance(x, Path) for x in src)


def temperature_sample(counts: dict[str, int], total: int, temperature: float, seed: int) -> dict[str, np.ndarray]:
    """Line numbers of up to `total` sentences, language l with probability proportional to n_l^(1/T).

    Without replacement inside a language while it lasts (a language asked for more than it has
    is repeated), so a small language gets more weight than its share without being drowned. Only
    the draw is held (numpy picks k of n in O(k) memory), never a permutation of a big corpus.
    """
    langs = sorted(lang for lang, n in counts.items() if n)
    if not langs:
        return {}
    weights = [counts[lang] ** (1.0 / temperature) for lang in langs]
    norm = sum(weights)
    budget = min(total, sum(counts[lang] for lang in langs))
    rng = np.random.Generator(np.random.PCG64(seed))
    out: dict[str, np.ndarray] = {}
    for lang, w in zip(langs, weights):
        n = counts[lang]
        want = max(1, round(budget * w / norm))
        if want <= n:
            out[lang] = rng.choice(n, size=want, replace=False)
        else:
            out[lang] = rng.permutation(n)[np.arange(want) % n]
    return out


def train_tokenizer(
    texts_by_lang: dict[str, Sequence[str] | str | Path | list[Path]],
    out_dir: str | Path,
    cfg: TokenizerConfig,
    langs: Sequence[str],
    seed: int,
    distinct: Sequence[str] = (),
) -> dict:
    """Train spm.model/spm.vocab in `out_dir` and return the report (see `report`).

    `texts_by_lang` maps a language code (the English source side included) to its sentences, a
    file of them or a list of files; `langs` are the target languages whose `<2xx>` tags become
    symbols; the languages in `distinct` count each repeated line once. Files are streamed: only the
    sample SentencePiece trains on (`cfg.sample_sentences`) is ever in memory.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpora = {lang: _Lines(src if _is_file_list(src) else [src], lang in distinct, keep_first=2000)
               for lang, src in texts_by_lang.items()}
    if not any(c.n for c in corpora.values()):
        raise InputError(out_dir, "no sentences to train the tokenizer on")
    draw = temperature_sample({lang: c.n for lang, c in corpora.items()}, cfg.sample_sentences, cfg.temperature, seed)
    sample = {}
    for lang, idx in draw.items():
        picked = corpora[lang].pick(np.unique(idx))
        sample[lang] = [placeholders.mask(picked[i], limit=cfg.max_placeholders)[0] for i in idx.tolist()]
    user_symbols = [lang_tag(lang) for lang in langs] + placeholders.symbols(cfg.max_placeholders)
    lines = [line for lang in sorted(sample) for line in sample[lang]]
    model = io.BytesIO()
    # In-memory input and output: a file-based run would record its temporary paths inside the
    # model's trainer spec, making the bytes differ between otherwise identical runs.
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            model_type=cfg.model_type,
            vocab_size=cfg.vocab_size,
            character_coverage=cfg.character_coverage,
            byte_fallback=cfg.byte_fallback,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            user_defined_symbols=user_symbols,
            # Determinism: no internal sampling or shuffling, one thread.
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=1,
            # Tiny corpora cannot fill a large vocabulary; take what there is instead of failing.
            hard_vocab_limit=False,
            max_sentence_length=1 << 16,
            minloglevel=2,
        )
    except RuntimeError as exc:
        if "Vocabulary size" in str(exc):
            raise ConfigError(f"tokenizer.vocab_size={cfg.vocab_size} is too small for this corpus: {exc}") from None
        raise
    with atomic_path(out_dir / "spm.model") as target:
        target.write_bytes(model.getvalue())
    proc = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = "".join(f"{proc.IdToPiece(i)}\t{proc.GetScore(i):g}\n" for i in range(proc.GetPieceSize()))
    write_text(out_dir / "spm.vocab", vocab)
    tok = Tokenizer(out_dir / "spm.model")
    return tok.report({lang: c.first for lang, c in corpora.items()}, max_sentences=2000)


def tokenizer_inputs_key(
    texts_by_lang: dict[str, Sequence[str] | str | Path], cfg: TokenizerConfig, langs: Sequence[str], seed: int
) -> str:
    """A digest of everything `train_tokenizer` reads: the texts, the settings, the tags and the seed."""
    texts = {lang: hashlib.sha256("\n".join(read_lines(src)).encode("utf-8")).hexdigest()
             for lang, src in texts_by_lang.items()}
    return fingerprint_of(cfg.model_dump(mode="json"), sorted(langs), seed, texts)


def reuse_or_train_tokenizer(
    texts_by_lang: dict[str, Sequence[str] | str | Path],
    out_dir: str | Path,
    cfg: TokenizerConfig,
    langs: Sequence[str],
    seed: int,
) -> tuple["Tokenizer", bool]:
    """The tokenizer in `out_dir` if it was trained on exactly these inputs, else a new one.

    For callers outside the DVC pipeline (benchmarks, notebooks), where DVC does not decide what is
    stale: an spm.model left by other texts or settings is retrained, never silently reused.
    Returns the tokenizer and whether it was reused.
    """
    out_dir = Path(out_dir)
    key = tokenizer_inputs_key(texts_by_lang, cfg, langs, seed)
    key_file = out_dir / "spm.inputs.sha256"
    model_file = out_dir / "spm.model"
    if model_file.is_file() and key_file.is_file() and key_file.read_text(encoding="utf-8").strip() == key:
        return Tokenizer(model_file), True
    # The old key goes first: a crash after the new spm.model is written must not leave it looking
    # like the model of the old inputs.
    key_file.unlink(missing_ok=True)
    train_tokenizer(texts_by_lang, out_dir, cfg, langs, seed)
    write_text(key_file, key + "\n")  # written last: a crash before it means "retrain next time"
    return Tokenizer(model_file), False


class Tokenizer:
    """The SentencePiece model plus the project's conventions for source and target sides."""

    def __init__(self, model_path: str | Path, max_placeholders: int | None = None):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise InputError(self.path, "tokenizer model not found")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(self.path))
        except (OSError, RuntimeError) as exc:
            raise InputError(self.path, f"not a SentencePiece model: {exc}") from None
        self.vocab_size = self.sp.GetPieceSize()
        self.pieces = [self.sp.IdToPiece(i) for i in range(self.vocab_size)]  # piece string of each id
        ph_ids = [i for i, piece in enumerate(self.pieces) if placeholders.SYMBOL_RE.fullmatch(piece)]
        self._ph_id = {int(placeholders.SYMBOL_RE.fullmatch(self.pieces[i]).group(1)): i for i in ph_ids}
        # Only as many placeholders are masked as the model has symbols for; the rest stay literal.
        self.max_placeholders = len(ph_ids) if max_placeholders is None else max_placeholders
        # Byte-fallback pieces <0x00>..<0xFF>: the byte of each, and the piece of each byte.
        self._byte_of = {i: int(piece[3:5], 16) for i, piece in enumerate(self.pieces) if self.sp.IsByte(i)}
        self._byte_id = {b: i for i, b in self._byte_of.items()}
        tag_re = re.compile(r"<2[A-Za-z_]+>")
        self._special = {PAD_ID, BOS_ID, EOS_ID} | {i for i, piece in enumerate(self.pieces) if tag_re.fullmatch(piece)}

    def tag_id(self, lang: str) -> int:
        tag = lang_tag(lang)
        i = self.sp.PieceToId(tag)
        if i == UNK_ID or self.sp.IdToPiece(i) != tag:
            raise InputError(self.path, f"tokenizer has no target tag {tag}; retrain it with {lang!r}")
        return i

    def encode_source(self, text: str, tgt_lang: str) -> tuple[list[int], list[str]]:
        masked, mapping = placeholders.mask(text, limit=self.max_placeholders)
        return [self.tag_id(tgt_lang)] + self.sp.EncodeAsIds(masked) + [EOS_ID], mapping

    def encode_target(self, text: str, mapping: Sequence[str] = ()) -> list[int]:
        masked, _ = placeholders.mask(text, mapping=list(mapping), limit=self.max_placeholders)
        return self.sp.EncodeAsIds(masked) + [EOS_ID]

    def encode_pair(self, src: str, tgt: str, tgt_lang: str) -> tuple[list[int], list[int]]:
        src_ids, mapping = self.encode_source(src, tgt_lang)
        return src_ids, self.encode_target(tgt, mapping)

    def decode(self, ids: Iterable[int], mapping: Sequence[str] = (), source_ids: Sequence[int] | None = None) -> str:
        """The text of `ids` (up to the EOS, specials dropped) with the placeholders of `mapping` put back;
        given the `source_ids` they were translated from, a placeholder is restored at most as often
        as the source holds it (placeholders.unmask)."""
        kept: list[int] = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in self._special or not 0 <= i < self.vocab_size:
                continue
            kept.append(i)
        counts = None
        if source_ids is not None:
            source = list(source_ids)
            counts = [source.count(self._ph_id.get(n, -1)) for n in range(len(mapping))]
        return placeholders.unmask(self.sp.DecodeIds(self._valid_utf8(kept)), list(mapping), counts)

    def _valid_utf8(self, ids: list[int]) -> list[int]:
        """`ids` with each run of byte pieces cut to the bytes that form valid UTF-8: a model can emit a
        run that does not (a lone lead byte, a stray continuation byte), which SentencePiece would
        decode to U+FFFD."""
        if not self._byte_of:
            return ids
        out: list[int] = []
        run: list[int] = []
        for i in [*ids, -1]:  # -1 ends the last run
            if i in self._byte_of:
                run.append(self._byte_of[i])
                continue
            if run:
                out += [self._byte_id[b] for b in bytes(run).decode("utf-8", "ignore").encode("utf-8")]
                run = []
            if i != -1:
                out.append(i)
        return out

    def report(self, texts_by_lang: dict[str, list[str]], max_sentences: int = 2000) -> dict:
        """Per language: average pieces per sentence, byte-fallback piece share, coverage (non-unk)."""
        out: dict[str, dict] = {}
        for lang in sorted(texts_by_lang):
            lines = texts_by_lang[lang][:max_sentences]
            pieces = byte = unk = 0
            for line in lines:
                masked, _ = placeholders.mask(line, limit=self.max_placeholders)
                ids = self.sp.EncodeAsIds(masked)
                pieces += len(ids)
                byte += sum(1 for i in ids if self.sp.IsByte(i))
                unk += sum(1 for i in ids if i == UNK_ID)
            out[lang] = {
                "sentences": len(lines),
                "avg_pieces_per_sentence": round(pieces / len(lines), 4) if lines else 0.0,
                "byte_fallback_share": round(byte / pieces, 6) if pieces else 0.0,
                "coverage": round(1 - unk / pieces, 6) if pieces else 1.0,
            }
        return {"vocab_size": self.vocab_size, "languages": out}
