"""Decoding-speed benchmark of issue 7: sentences/second on Multi30k test_2016_flickr (en->xx) for
PyTorch beam search and greedy and for the CTranslate2 export (float32 and int8, beam and greedy), in
one run, same model, same thread count, plus each output's sacrebleu BLEU against the references.

    python bench/decode_speed.py [--model /tmp/babelflow_multi30k/cpu/ende/model | --release data/release]
                                 [--corpus ../shared/corpora/multi30k] [--lang de] [--threads 2]
                                 [--beam 4] [--batch 64] [--repeats 1] [--json out.json]

`--model`/`--release` is a folder with model.json, model.safetensors and spm.model (the model that
bench/multi30k.py keeps, or a babelflow release). What is timed is ids -> ids decoding of the whole
test set (SentencePiece encoding and decoding are the same work for every system, done outside the
timer). The CTranslate2 export and model load are not timed either. Each system gets one untimed
warm-up batch, then `--repeats` timed passes over the test set; the best pass is reported.
Goal (issue 7): CTranslate2 >= 5x PyTorch beam search at equal beam size, BLEU within 0.3.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.timing import best_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--model", default="/tmp/babelflow_multi30k/cpu/ende/model")
    where.add_argument("--release")
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    ap.add_argument("--split", default="test_2016_flickr")
    ap.add_argument("--lang", default="de")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64, help="sentences per batch, every system")
    ap.add_argument("--length-penalty", type=float, default=1.0)
    ap.add_argument("--max-length-ratio", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N sentences only (0: all)")
    ap.add_argument("--systems", nargs="+", default=None, help="subset of the systems to run")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()

    # Thread pools are sized at import/first use: set every knob before torch and ctranslate2 load.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import ctranslate2
    import sacrebleu
    import torch

    from babelflow.decode import max_lengths, pad_batch, translate_ids
    from babelflow.export import export_ctranslate2
    from babelflow.models import load_model
    from babelflow.tokenizer import Tokenizer

    torch.set_num_threads(args.threads)
    folder = Path(args.release or args.model)
    model = load_model(folder)
    tok = Tokenizer(folder / "spm.model")
    corpus = Path(args.corpus)
    src_text = (corpus / f"{args.split}.en").read_text(encoding="utf-8").splitlines()
    refs = (corpus / f"{args.split}.{args.lang}").read_text(encoding="utf-8").splitlines()
    if args.limit:
        src_text, refs = src_text[: args.limit], refs[: args.limit]
    encoded = [tok.encode_source(s, args.lang) for s in src_text]
    ids = [e[0] for e in encoded]
    n = len(ids)
    vocab = [tok.sp.IdToPiece(i) for i in range(tok.vocab_size)]
    piece_id = {p: i for i, p in enumerate(vocab)}
    # CTranslate2 has one max length per call, babelflow a per-sentence one; give it the longest.
    ct2_max_len = max(max_lengths(pad_batch([r]), args.max_length_ratio, model)[0] for r in ids)

    work = Path(tempfile.mkdtemp(prefix="babelflow_ct2_"))
    export_ctranslate2(model, vocab, work / "float32")
    export_ctranslate2(model, vocab, work / "int8", quantization="int8")

    def pytorch(beam: int):
        return lambda rows: translate_ids(model, rows, beam, args.length_penalty, args.max_length_ratio, args.batch)

    def ct2(compute_type: str, beam: int):
        translator = ctranslate2.Translator(str(work / compute_type), device="cpu", compute_type=compute_type,
                                            intra_threads=args.threads, inter_threads=1)

        def run(rows):
            res = translator.translate_batch(
                [[vocab[i] for i in row] for row in rows], beam_size=beam, length_penalty=args.length_penalty,
                max_batch_size=args.batch, batch_type="examples", max_decoding_length=ct2_max_len)
            return [[piece_id[p] for p in r.hypotheses[0]] for r in res]
        return run

    systems = {
        f"pytorch beam{args.beam}": pytorch(args.beam),
        "pytorch greedy": pytorch(1),
        f"ct2 float32 beam{args.beam}": ct2("float32", args.beam),
        f"ct2 int8 beam{args.beam}": ct2("int8", args.beam),
        "ct2 float32 greedy": ct2("float32", 1),
        "ct2 int8 greedy": ct2("int8", 1),
    }
    if args.systems:
        systems = {k: v for k, v in systems.items() if k in args.systems}
    rows = {}
    bleu_metric = sacrebleu.BLEU()
    for name, fn in systems.items():
        # One untimed batch first: first-call allocations and lazy inits are not decoding speed.
        fn(ids[: args.batch])
        secs, out = best_of(lambda: fn(ids), args.repeats)
        hyps = [tok.decode(h, e[1]) for h, e in zip(out, encoded)]
        bleu = bleu_metric.corpus_score(hyps, [refs])
        rows[name] = {"seconds": round(secs, 2), "sent_per_s": round(n / secs, 2), "bleu": round(bleu.score, 2),
                      "hyps": hyps}
        print(f"{name}: {secs:.1f} s, {n / secs:.1f} sent/s, BLEU {bleu.score:.2f}", flush=True)

    base_name = f"pytorch beam{args.beam}"
    base = rows.get(base_name)
    signature = str(bleu_metric.get_signature())
    print()
    print(f"{n} sentences en->{args.lang}, {args.threads} threads, batch {args.batch} sentences, "
          f"torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}; BLEU signature `{signature}`")
    print()
    print(f"| system | seconds | sentences/s | vs {base_name} | BLEU | BLEU - {base_name} | "
          "same output as PyTorch at equal beam |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        ratio = f"{r['sent_per_s'] / base['sent_per_s']:.2f}x" if base else "-"
        delta = f"{r['bleu'] - base['bleu']:+.2f}" if base else "-"
        # Identical detokenized lines against PyTorch with the same beam size (greedy vs greedy).
        twin = rows.get(base_name if "beam" in name else "pytorch greedy")
        r["same_as_pytorch"] = sum(a == b for a, b in zip(r["hyps"], twin["hyps"])) / n if twin else None
        same = f"{r['same_as_pytorch']:.1%}" if twin else "-"
        print(f"| {name} | {r['seconds']:.1f} | {r['sent_per_s']:.1f} | {ratio} | {r['bleu']:.2f} | {delta} | {same} |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "n": n, "threads": args.threads, "beam": args.beam, "batch": args.batch, "signature": signature,
            "torch": torch.__version__, "ctranslate2": ctranslate2.__version__, "model": str(folder),
            "systems": {k: {kk: vv for kk, vv in v.items() if kk != "hyps"} for k, v in rows.items()},
        }, indent=2) + "\n", encoding="utf-8")



if __name__ == "__main__":
    main()
