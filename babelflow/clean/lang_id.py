"""Language identification of a whole chunk of lines at once, with langid.py's model.

langid.py scores a text as `nb_pc + sum_f count(f) * nb_ptc[f]`, where the features f are the byte
n-grams that its DFA emits on each state it enters. That sum is linear in the visited states, so it
folds into one score row per DFA state: `row[s] = sum of nb_ptc[f] for f in output(s)`, restricted
to the candidate languages. A chunk of texts then walks the DFA in lock-step (one numpy gather per
byte position for every text still that long) and adds the rows of the states it enters. It is the
classifier of `langid.langid.LanguageIdentifier.classify(norm_probs=True)` with `set_languages`:
same model, candidates, arg-max and normalised probability (checked against langid.py in the tests),
without langid.py's Python loop over every byte, which was half of the clean stage's time.

The model is read from py3langid 0.2.x's `model.plzma`: the same arrays as langid.py 1.1.6's (equal
element by element), but lzma-pickled instead of a base64 bz2 string inside a Python module, so it
loads in 0.2 s instead of several seconds. py3langid's own classifier is not used: 0.2.x computes in
float32, and from 0.3 on it changes the model and the scoring (log-counts).
"""
from __future__ import annotations

import importlib.util
import lzma
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

MODEL = "langid.py 1.1.6 model (97 languages), read from py3langid 0.2.x"


@dataclass(frozen=True)
class Tables:
    """What a worker needs to classify among `langs`; built once in the parent, sent to each worker."""

    langs: tuple[str, ...]  # candidate languages, in the model's order (ties go to the first)
    nextmove: np.ndarray  # (n_states * 256,) DFA transitions: nextmove[state << 8 | byte]
    rows: np.ndarray  # (n_states, len(langs)) float64: summed feature log-probabilities per state
    prior: np.ndarray  # (len(langs),) float64: log prior per language


def _model_path() -> Path:
    spec = importlib.util.find_spec("py3langid")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("clean.langid needs the py3langid package (pip install 'py3langid>=0.2.2,<0.3')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "model.plzma"
    if not path.is_file():
        raise RuntimeError(f"{path}: no langid model here; py3langid >= 0.3 ships another model, "
                           "install 'py3langid>=0.2.2,<0.3'")
    return path


@lru_cache(maxsize=1)
def _model() -> tuple:
    with lzma.open(_model_path()) as fh:
        ptc, pc, classes, nextmove, output = pickle.load(fh)
    n_classes = len(pc)
    ptc = np.frombuffer(ptc, dtype=np.float32).reshape(-1, n_classes)
    return ptc, np.frombuffer(pc, dtype=np.float32), tuple(classes), np.frombuffer(nextmove, dtype=np.uint16), output


def languages() -> frozenset[str]:
    """The language codes the model knows."""
    return frozenset(_model()[2])


@lru_cache(maxsize=8)
def tables(langs: tuple[str, ...]) -> Tables:
    """Tables restricted to `langs` (all of them known to the model; empty: every language)."""
    ptc, pc, classes, nextmove, output = _model()
    unknown = set(langs) - set(classes)
    if unknown:
        raise ValueError(f"languages unknown to the langid model: {sorted(unknown)}")
    cols = [i for i, c in enumerate(classes) if not langs or c in langs]
    ptc = ptc[:, cols].astype(np.float64)
    rows = np.zeros((len(nextmove) >> 8, len(cols)), dtype=np.float64)
    for state, feats in output.items():
        if feats:
            rows[state] = ptc[list(feats)].sum(axis=0)
    return Tables(tuple(classes[i] for i in cols), nextmove, rows, pc[cols].astype(np.float64))


def classify(texts: Sequence[str], t: Tables) -> tuple[list[str], np.ndarray]:
    """Most likely language of each text and its probability among `t.langs`.

    Each text's score is accumulated over its own bytes in order, whatever else is in the batch, so
    the result for a text does not depend on which chunk or worker it lands in.
    """
    uniq = list(dict.fromkeys(texts))
    if not uniq:
        return [], np.zeros(0)
    data = [s.encode("utf-8") for s in uniq]
    lens = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
    order = np.argsort(-lens, kind="stable")  # longest first: the texts still running form a prefix
    flat = np.frombuffer(b"".join(data[i] for i in order), dtype=np.uint8)
    slens = lens[order]
    starts = np.concatenate(([0], np.cumsum(slens)[:-1]))
    # running[p]: how many texts are longer than p bytes (the first that many of the sorted order).
    running = np.searchsorted(-slens, -np.arange(int(slens[0]) if len(slens) else 0), side="left")
    state = np.zeros(len(data), dtype=np.int64)
    score = np.zeros((len(data), len(t.langs)), dtype=np.float64)
    for p, n in enumerate(running.tolist()):
        s = t.nextmove[(state[:n] << 8) | flat[starts[:n] + p]].astype(np.int64)
        state[:n] = s
        score[:n] += t.rows[s]
    score += t.prior
    # langid.py's norm_probs: p_i = 1 / sum_j exp(score_j - score_i) (overflow -> p_i = 0).
    with np.errstate(over="ignore"):
        probs = 1.0 / np.exp(score[:, None, :] - score[:, :, None]).sum(axis=2)
    best = np.argmax(probs, axis=1)
    conf = probs[np.arange(len(data)), best]
    pred_sorted = [t.langs[i] for i in best.tolist()]
    by_text = {}
    for k, i in enumerate(order.tolist()):
        by_text[uniq[i]] = (pred_sorted[k], conf[k])
    preds = [by_text[s][0] for s in texts]
    return preds, np.array([by_text[s][1] for s in texts], dtype=np.float64)
