"""Decoding with a CTranslate2 export of a babelflow Transformer (made by babelflow.export).

Same contract as `babelflow.decode.translate_ids` / `translate_nbest`: token ids in, best hypothesis ids
(or the n best with their scores) out (no BOS/EOS), input order kept, length-sorted batches, the same length limit per sentence. CTranslate2 takes one
limit per call and does not count the EOS in it, as babelflow does: each batch is decoded to its
longest sentence's limit minus one, and every hypothesis is then cut to its own sentence's. A greedy
hypothesis does not depend on the rest of its batch, so the cut gives PyTorch's greedy output. Beam
outputs can differ: CTranslate2 normalises scores by length^alpha where babelflow uses the GNMT
penalty (bench/decode_speed.py counts the lines).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from babelflow.decode import Hypothesis, length_limit, length_sorted_batches
from babelflow.errors import BabelflowError, InputError
from babelflow.executor import usable_cpus
from babelflow.io import sha256_file

PROVENANCE = "babelflow_export.json"  # written by `babelflow export` next to the CTranslate2 files


def weights_sha256(model_meta: dict, weights: Path) -> str:
    """What names the weights an export is made from: model.json's record (save_model writes it, load_model
    and the release's SHA256SUMS check it), so they are not hashed again; the file's own hash only where
    a hand-made model.json lacks it."""
    return model_meta.get("weights_sha256") or sha256_file(weights)


def read_vocabulary(folder: Path) -> list[str]:
    """The target vocabulary CTranslate2 saved with the model (one JSON list, or one token per line)."""
    for name in ("shared_vocabulary.json", "target_vocabulary.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text(encoding="utf-8"))
    for name in ("shared_vocabulary.txt", "target_vocabulary.txt"):
        if (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8").split("\n")[:-1]
    raise InputError(folder, "no CTranslate2 vocabulary file: not a CTranslate2 model folder")


class CT2Decoder:
    """A CTranslate2 translator over `folder`, checked against the tokenizer's `vocabulary`.

    On CPU it decodes `threads` batches at once, one thread each (CTranslate2's inter_threads; the
    layout bench/decode_speed.py found fastest), default all cores; `parallel_batches=False` runs one
    batch at a time on all `threads` instead.
    """

    def __init__(self, folder: str | Path, vocabulary: Sequence[str], device: str = "cpu", threads: int = 0,
                 compute_type: str = "default", max_positions: int | None = None, parallel_batches: bool = True):
        # max_positions: the rows of the exported position table (the model config's max_positions).
        try:
            import ctranslate2
        except ImportError:
            raise BabelflowError("ctranslate2 is not installed (pip install 'babelflow[export]')") from None
        self.folder = Path(folder)
        theirs = read_vocabulary(self.folder)
        if list(vocabulary) != theirs:
            raise InputError(self.folder, f"its vocabulary ({len(theirs)} tokens) is not the tokenizer's "
                                          f"({len(vocabulary)}): exported from another model")
        self.vocab = list(vocabulary)
        self.piece_id = {p: i for i, p in enumerate(self.vocab)}
        self.max_positions = max_positions
        # torch's "cuda:1" is CTranslate2's device="cuda", device_index=1.
        device, _, index = device.partition(":")
        try:
            supported = {"default", "auto"} | set(ctranslate2.get_supported_compute_types(device))
        except (RuntimeError, ValueError) as exc:  # no CUDA driver, or a build without CUDA
            raise BabelflowError(f"CTranslate2 cannot decode on {device} here: {exc}") from None
        if compute_type not in supported:
            raise BabelflowError(f"--quantization {compute_type}: not a compute type CTranslate2 supports on "
                                 f"{device} here; use one of {', '.join(sorted(supported))}")
        if device == "cpu" and parallel_batches:
            inter, intra = threads or usable_cpus(), 1
        else:
            inter, intra = 1, threads if device == "cpu" else 0  # 0: CTranslate2's default
        self.translator = ctranslate2.Translator(str(self.folder), device=device, device_index=int(index or 0),
                                                 compute_type=compute_type, inter_threads=inter, intra_threads=intra)

    def translate_ids(self, sources: Sequence[Sequence[int]], beam_size: int = 4, length_penalty: float = 1.0,
                      max_length_ratio: float = 2.0, batch_sentences: int = 64, **limits) -> list[list[int]]:
        """`limits`: max_length and no_repeat_ngram_size, as babelflow.decode.translate_ids."""
        return [h[0].tokens for h in self.translate_nbest(sources, beam_size, length_penalty, max_length_ratio,
                                                          batch_sentences, 1, **limits)]

    def translate_nbest(self, sources: Sequence[Sequence[int]], beam_size: int = 4, length_penalty: float = 1.0,
                        max_length_ratio: float = 2.0, batch_sentences: int = 64, nbest: int = 1,
                        max_length: int | None = None, no_repeat_ngram_size: int = 0) -> list[list[Hypothesis]]:
        """babelflow.decode.translate_nbest's contract; the scores are CTranslate2's own (log-probability
        normalised by length ** length_penalty), not babelflow's GNMT-penalised ones."""
        if self.max_positions:
            longest = max((len(r) for r in sources), default=0)
            if longest > self.max_positions:
                # CTranslate2 would truncate it silently: the exported position table stops there.
                raise BabelflowError(f"a source of {longest} tokens is longer than the model's "
                                     f"{self.max_positions} positions")
        # Tokens before the EOS that babelflow's limit leaves room for, per sentence.
        limits = [length_limit(len(src), max_length_ratio, self.max_positions, max_length) - 1 for src in sources]
        jobs = []
        for idx in length_sorted_batches(sources, batch_sentences):
            # Asynchronous: the batches run side by side on the inter_threads workers.
            jobs.append((idx, self.translator.translate_batch(
                [[self.vocab[t] for t in sources[i]] for i in idx], beam_size=beam_size,
                length_penalty=length_penalty, max_batch_size=len(idx), num_hypotheses=nbest,
                no_repeat_ngram_size=no_repeat_ngram_size, return_scores=True,
                max_decoding_length=max(limits[i] for i in idx), asynchronous=True)))
        out: list[list[Hypothesis] | None] = [None] * len(sources)
        for idx, results in jobs:
            for i, r in zip(idx, results):
                r = r.result()
                out[i] = [Hypothesis([self.piece_id[p] for p in hyp[: limits[i]]], score, score)
                          for hyp, score in zip(r.hypotheses, r.scores)]
        return out  # type: ignore[return-value]
