"""Decoding-speed benchmark of issue 7: sentences/second on Multi30k test_2016_flickr (en->xx) for
PyTorch beam search and greedy and for the CTranslate2 export (float32 and int8, beam and greedy), in
one run, same model, same cores, plus each output's sacrebleu BLEU against the references.

    python bench/decode_speed.py [--model /tmp/babelflow_multi30k/cpu/ende/data/train | --release data/release]
                                 [--corpus ../shared/corpora/multi30k] [--lang de] [--threads 2]
                                 [--beam 4] [--batch 64 ...] [--repeats 1] [--systems NAME ...] [--json out.json]

`--model`/`--release` is a folder with model.json, model.safetensors and spm.model (the model that
bench/multi30k.py keeps, or a babelflow release). What is timed is ids -> ids decoding of the whole
test set (SentencePiece encoding and decoding are the same work for every system, done outside the
timer). The CTranslate2 export and model load are not timed either. Each system gets one untimed
warm-up batch, then `--repeats` timed passes over the test set; the best pass is reported.

Every system gets the same `--threads` cores in one of two layouts, named in the system's name:
`1xN` decodes one batch at a time on N intra-op threads; `Nx1` decodes N batches at once, one thread
each (babelflow's `translate_ids(workers=N)`, CTranslate2's `inter_threads=N`). Both engines get the
same length-sorted batches of `--batch` sentences and the same per-sentence length limit
(ceil(ratio x source) + 5 with the EOS; CTranslate2 takes one limit per call, so each batch gets its
longest): `babelflow.ct2_decode.CT2Decoder`, what `babelflow translate --ctranslate2` uses.
Several `--batch` sizes run every system at each (suffix `-b<size>`): the engines do not peak at the
same size (Python's per-step overhead wants big batches, CTranslate2 smaller ones).
Goal (issue 7): CTranslate2 >= 5x the PyTorch beam search at equal beam size and equal cores, BLEU
within 0.3; the ratio is taken against the fastest PyTorch beam row (layout and batch size).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.timing import best_of  # noqa: E402

BLEU_TOLERANCE = 0.3
GOAL_RATIO = 5.0


class System(NamedTuple):
    engine: str  # "pytorch" or "ct2"
    compute: str  # CTranslate2's "float32" or "int8"; PyTorch runs float32
    beam: int  # 1 = greedy
    workers: int  # batches decoded at once
    per_worker: int  # intra-op threads of each

    @property
    def name(self) -> str:
        """e.g. 'ct2-int8-beam4-2x1', 'pytorch-greedy-2x1'."""
        parts = [self.engine] + ([self.compute] if self.engine == "ct2" else [])
        parts += ["greedy" if self.beam == 1 else f"beam{self.beam}", f"{self.workers}x{self.per_worker}"]
        return "-".join(parts)


def all_systems(beam: int, threads: int) -> list[System]:
    """Every system at one batch size: both layouts at `beam`, greedy in the parallel layout."""
    one, par = (1, threads), (threads, 1)
    systems = [System("pytorch", "float32", beam, *one), System("pytorch", "float32", beam, *par),
               System("pytorch", "float32", 1, *par)]
    for layout in (one, par):
        systems += [System("ct2", compute, beam, *layout) for compute in ("float32", "int8")]
    systems += [System("ct2", compute, 1, *par) for compute in ("float32", "int8")]
    return systems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--model", default="/tmp/babelflow_multi30k/cpu/ende/data/train",
                       help="a model folder; spm.model beside it or in ../tokenizer (a bench/multi30k.py run)")
    where.add_argument("--release")
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    ap.add_argument("--split", default="test_2016_flickr")
    ap.add_argument("--lang", default="de")
    ap.add_argument("--threads", type=int, default=2, help="cores every system gets")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--batch", type=int, nargs="+", default=[64], help="sentences per batch, every system")
    ap.add_argument("--length-penalty", type=float, default=1.0)
    ap.add_argument("--max-length-ratio", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N sentences only (0: all)")
    ap.add_argument("--systems", nargs="+", default=None,
                    help="subset of the systems to run (names as printed, without the -b<size>)")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    if args.threads < 1 or args.beam < 2 or min(args.batch) < 1:
        ap.error("--threads and --batch must be >= 1 and --beam >= 2 (greedy rows are always there)")
    systems = all_systems(args.beam, args.threads)
    if args.systems:
        known = [system.name for system in systems]
        unknown = [s for s in args.systems if s not in known]
        if unknown:
            ap.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(known)}")
        systems = [system for system in systems if system.name in args.systems]
    runs = [(system, size) for size in args.batch for system in systems]
    folder = Path(args.release or args.model)
    corpus = Path(args.corpus)
    for path in (folder / "model.json", corpus / f"{args.split}.en", corpus / f"{args.split}.{args.lang}"):
        if not path.is_file():
            ap.error(f"{path} not found")

    # Thread pools are sized at import/first use: set every knob before torch and ctranslate2 load.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import ctranslate2
    import sacrebleu
    import torch

    from babelflow.ct2_decode import CT2Decoder
    from babelflow.decode import translate_ids
    from babelflow.export import export_ctranslate2
    from babelflow.models import load_model
    from babelflow.tokenizer import Tokenizer

    model = load_model(folder)
    tok = Tokenizer(folder / "spm.model" if (folder / "spm.model").is_file() else folder.parent / "tokenizer" / "spm.model")
    src_text = (corpus / f"{args.split}.en").read_text(encoding="utf-8").splitlines()
    refs = (corpus / f"{args.split}.{args.lang}").read_text(encoding="utf-8").splitlines()
    if args.limit:
        src_text, refs = src_text[: args.limit], refs[: args.limit]
    encoded = [tok.encode_source(s, args.lang) for s in src_text]
    ids = [e[0] for e in encoded]
    n = len(ids)
    vocab = tok.pieces
    rows, bleu_metric = {}, sacrebleu.BLEU()
    with tempfile.TemporaryDirectory(prefix="babelflow_ct2_") as work:
        exported = {}
        for system, size in runs:
            name, compute = f"{system.name}-b{size}", system.compute
            if system.engine == "pytorch":
                def fn(rows, system=system, size=size):
                    torch.set_num_threads(system.per_worker)
                    return translate_ids(model, rows, system.beam, args.length_penalty, args.max_length_ratio, size,
                                         system.workers)
            else:
                if compute not in exported:
                    exported[compute] = export_ctranslate2(
                        model, vocab, Path(work) / compute, quantization=None if compute == "float32" else compute)
                decoder = CT2Decoder(exported[compute], vocab, threads=args.threads, compute_type=compute,
                                     max_positions=model.cfg.max_positions, parallel_batches=system.workers > 1)

                def fn(rows, system=system, size=size, decoder=decoder):
                    return decoder.translate_ids(rows, system.beam, args.length_penalty, args.max_length_ratio, size)
            fn(ids[:size])  # one untimed batch first: first-call allocations and lazy inits are not decoding speed
            secs, out = best_of(lambda: fn(ids), args.repeats)
            hyps = [tok.decode(h, e[1]) for h, e in zip(out, encoded)]
            bleu = bleu_metric.corpus_score(hyps, [refs]).score
            rows[name] = {"seconds": round(secs, 2), "sent_per_s": round(n / secs, 2), "bleu": round(bleu, 2),
                          "beam": system.beam, "batch": size, "engine": system.engine, "hyps": hyps}
            print(f"{name}: {secs:.1f} s, {n / secs:.1f} sent/s, BLEU {bleu:.2f}", flush=True)

    def fastest(engine: str, beam: int) -> str | None:
        return max((k for k, r in rows.items() if r["engine"] == engine and r["beam"] == beam),
                   key=lambda k: rows[k]["sent_per_s"], default=None)

    base_name, greedy_name = fastest("pytorch", args.beam), fastest("pytorch", 1)
    base, signature = rows.get(base_name), str(bleu_metric.get_signature())
    print(f"\n{n} sentences en->{args.lang}, {args.threads} cores per system, batches of "
          f"{'/'.join(map(str, args.batch))} sentences, torch {torch.__version__}, ctranslate2 "
          f"{ctranslate2.__version__}; BLEU signature `{signature}`\n")
    print(f"| system | seconds | sentences/s | vs {base_name} | BLEU | BLEU - {base_name} | "
          "same output as PyTorch at equal beam |\n|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        # Identical detokenized lines against PyTorch with the same beam size (greedy vs greedy).
        twin = rows.get(base_name if r["beam"] > 1 else greedy_name)
        r["ratio"] = round(r["sent_per_s"] / base["sent_per_s"], 3) if base else None
        r["same_as_pytorch"] = sum(a == b for a, b in zip(r["hyps"], twin["hyps"])) / n if twin else None
        ratio = f"{r['ratio']:.2f}x" if base else "-"
        delta = f"{r['bleu'] - base['bleu']:+.2f}" if base else "-"
        same = f"{r['same_as_pytorch']:.1%}" if twin else "-"
        print(f"| {name} | {r['seconds']:.1f} | {r['sent_per_s']:.1f} | {ratio} | {r['bleu']:.2f} | {delta} | {same} |")
    verdict = None
    if base:
        ok = [k for k, r in rows.items() if r["engine"] == "ct2" and r["beam"] == args.beam
              and abs(r["bleu"] - base["bleu"]) <= BLEU_TOLERANCE]
        best = max(ok, key=lambda k: rows[k]["ratio"], default=None)
        verdict = (f"Goal (CTranslate2 >= {GOAL_RATIO:g}x {base_name}, BLEU within {BLEU_TOLERANCE}): "
                   f"{'met' if rows[best]['ratio'] >= GOAL_RATIO else 'not met'}: best is {best} at "
                   f"{rows[best]['ratio']:.2f}x, BLEU {rows[best]['bleu'] - base['bleu']:+.2f} (on {n} sentences)."
                   if best else f"Goal: not met: no CTranslate2 beam {args.beam} row within {BLEU_TOLERANCE} BLEU.")
        print(f"\n{verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "n": n, "threads": args.threads, "beam": args.beam, "batch": args.batch, "signature": signature,
            "torch": torch.__version__, "ctranslate2": ctranslate2.__version__, "model": str(folder),
            "baseline": base_name, "verdict": verdict,
            "systems": {k: {kk: vv for kk, vv in v.items() if kk != "hyps"} for k, v in rows.items()},
        }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
