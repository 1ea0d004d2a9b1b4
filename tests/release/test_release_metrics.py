"""babelflow.metrics gives the same numbers and signatures as sacrebleu's own command line."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from babelflow.errors import BabelflowError
from babelflow.metrics import bleu_tokenizer, score

SACREBLEU = Path(sys.executable).with_name("sacrebleu")


def perturb(lines: list[str], seed: int) -> list[str]:
    """Plausible system output: words dropped, swapped and replaced, some lines left intact."""
    rng = random.Random(seed)
    out = []
    for line in lines:
        words = line.split()
        if rng.random() < 0.3 or len(words) < 2:
            out.append(line)
            continue
        i = rng.randrange(len(words))
        op = rng.choice(["drop", "swap", "replace"])
        if op == "drop":
            del words[i]
        elif op == "swap":
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = "xyz"
        out.append(" ".join(words))
    return out


def cli_scores(tmp_path: Path, hyps, refs, tokenize: str, asian: bool) -> dict:
    hyp_f, ref_f = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp_f.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    ref_f.write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    cmd = [str(SACREBLEU), str(ref_f), "-i", str(hyp_f), "-m", "bleu", "chrf", "ter",
           "--chrf-word-order", "2", "--tokenize", tokenize, "--format", "json", "-w", "6"]
    if asian:
        cmd.append("--ter-asian-support")
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {"bleu": res[0], "chrfpp": res[1], "ter": res[2]}  # -m chrf with word order 2: chrF++


def assert_same(ours: dict, cli: dict) -> None:
    for name in ("bleu", "chrfpp", "ter"):
        assert ours[name] == pytest.approx(cli[name]["score"], abs=1e-5), name
        assert ours["signatures"][name] == cli[name]["signature"], name


def test_matches_sacrebleu_cli_on_multi30k(tmp_path, multi30k_dir):
    refs = (multi30k_dir / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:300]
    hyps = perturb(refs, seed=1)
    ours = score(hyps, refs, "de")
    assert ours["n"] == 300
    assert 0 < ours["bleu"] < 100
    assert_same(ours, cli_scores(tmp_path, hyps, refs, "13a", asian=False))


@pytest.mark.parametrize("lang", ["fr", "zh", "ja"])
def test_matches_sacrebleu_cli_per_tokenizer(tmp_path, lang):
    refs = {
        "fr": ["Le chat dort sur le canapé.", "Deux chiens jouent dans la neige !", "Une femme chante."],
        "zh": ["我喜欢吃苹果。", "今天天气很好", "他在看书"],
        "ja": ["猫がソファで寝ている。", "今日はいい天気です", "本を読んでいます"],
    }[lang] * 4
    hyps = [r[:-1] if i % 3 == 0 else r for i, r in enumerate(refs)]
    hyps[1] = hyps[1][::-1]
    ours = score(hyps, refs, lang)
    assert ours["tokenize"] == bleu_tokenizer(lang)
    assert_same(ours, cli_scores(tmp_path, hyps, refs, bleu_tokenizer(lang), asian=lang in ("zh", "ja")))


def test_tokenizer_choice():
    assert bleu_tokenizer("de") == "13a"
    assert bleu_tokenizer("zh") == "zh"
    assert bleu_tokenizer("ja") == bleu_tokenizer("ko") == "char"


def test_perfect_and_length_mismatch():
    refs = ["a b c d e", "f g h i j"]
    perfect = score(refs, refs, "de")
    assert perfect["bleu"] == pytest.approx(100.0)
    assert perfect["ter"] == pytest.approx(0.0)
    with pytest.raises(BabelflowError, match="2 hypotheses but 3 references"):
        score(refs, refs + ["x"], "de")
    # Nothing to score is n = 0 without scores, never BLEU 0 / TER 0.
    empty = score([], [], "de")
    assert empty["n"] == 0 and empty["bleu"] is None and empty["chrfpp"] is None and empty["ter"] is None
    assert empty["note"] == "n = 0, not scored" and empty["signatures"] == {}


def test_lowercased_bleu_matches_sacrebleu_cli(tmp_path):
    """bleu_lc is sacrebleu's BLEU with --lowercase on the same tokens: the figure set beside papers that
    score lowercased tokenised text (Multi30k's); case errors cost cased BLEU only."""
    refs = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau singt auf der Bühne."] * 3
    hyps = [r.lower() if i % 2 else r for i, r in enumerate(refs)]
    hyps[4] = "Zwei Katzen spielen im Schnee."
    ours = score(hyps, refs, "de")
    assert ours["bleu_lc"] > ours["bleu"]
    assert score([r.upper() for r in refs], refs, "de")["bleu_lc"] == pytest.approx(100.0)
    for f, lines in (("hyp.txt", hyps), ("ref.txt", refs)):
        (tmp_path / f).write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    cli = json.loads(subprocess.run([str(SACREBLEU), str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
                                     "-m", "bleu", "-lc", "--tokenize", "13a", "--format", "json", "-w", "6"],
                                    check=True, capture_output=True, text=True).stdout)
    assert ours["bleu_lc"] == pytest.approx(cli["score"], abs=1e-5)
    assert ours["signatures"]["bleu_lc"] == cli["signature"]
    assert score([], [], "de")["bleu_lc"] is None
