"""Training throughput (target tokens/s) of babelflow vs OpenNMT-py and JoeyNMT, one run, same batches.

All toolkits run the same training step (forward, label-smoothed cross-entropy summed over target
tokens, backward, clip, AdamW) on identical padded batches from Multi30k en->de, with the same model
size and thread count. Only the model+optimizer step is timed: data loading is excluded everywhere,
so the figure compares the model implementations.

The peers pin other torch versions (OpenNMT-py 3.5.1 needs torch < 2.3), so each toolkit runs as a
persistent worker process in its own venv (see ../shared/PEERS.md). This driver builds the batches
once, saves them to a file every worker loads, and then asks the workers for one timed step at a
time, round-robin with a rotating order: only one worker computes at any moment, and load changes
on a shared machine hit all toolkits alike instead of whichever happened to run last.

    nice -n 19 .venv/bin/python bench/train_speed.py --steps 30 --warmup 3 --batches B.pt --prepare-only
    flock /tmp/babelflow-bench.lock .venv/bin/python bench/train_speed.py --threads 2 --steps 30 \\
        --warmup 3 --batches B.pt --budget-s 360

The first command trains the tokenizer and caches the batches, so the locked timing holds only the
timing. The peers' pythons default to /tmp/joeyvenv and /tmp/onmtvenv (`--joeynmt-python`,
`--opennmt-python`); a peer whose python does not exist is reported as missing, and `--peers` names the
peers to run (none: babelflow alone; `--json` also writes the figures to a file). `--device cuda` runs
every worker on the GPU with bf16 autocast and fused AdamW; `--peak-tflops` (the GPU's dense bf16
peak) adds model FLOPs utilisation (MFU) per toolkit.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
LABEL_SMOOTHING = 0.1
CLIP = 1.0


# ------------------------------------------------------------------------------------------- driver
def make_batches(corpus: Path, n_sent: int, vocab: int, max_tokens: int, steps: int, work: Path):
    from babelflow.config import TokenizerConfig
    from babelflow.data import TokenBatcher, encoded_for, load_encoded
    from babelflow.tokenizer import Tokenizer, train_tokenizer

    src = (corpus / "train.en").read_text(encoding="utf-8").splitlines()[:n_sent]
    tgt = (corpus / "train.de").read_text(encoding="utf-8").splitlines()[:n_sent]
    train_tokenizer({"en": src, "de": tgt}, work, TokenizerConfig(vocab_size=vocab, sample_sentences=2 * n_sent),
                    ["de"], 1)
    tok = Tokenizer(work / "spm.model")
    clean = work / "clean" / "en-de"
    clean.mkdir(parents=True)
    (clean / "train.src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (clean / "train.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    examples = load_encoded(encoded_for(work / "clean", tok, ["en-de"]), "en-de", "train", 128)
    batcher = TokenBatcher(examples, max_tokens, shuffle=True, seed=1, infinite=True)
    it = iter(batcher)
    return tok.vocab_size, [next(it) for _ in range(steps)]


def step_flops(b: dict, d: int, ffn: int, enc_layers: int, dec_layers: int, vocab: int) -> float:
    """Model FLOPs of one training step (3x forward; a multiply-add is 2 FLOPs), counted on real
    tokens, not padding: the usual MFU convention, so padding waste shows as lower MFU."""
    s = (b["src"] != 0).sum(1).double()
    t = (b["tgt_out"] != 0).sum(1).double()
    ns, nt = s.sum().item(), t.sum().item()
    enc = enc_layers * (2 * (4 * d * d + 2 * d * ffn) * ns + 4 * d * (s * s).sum().item())
    dec = dec_layers * (2 * (6 * d * d + 2 * d * ffn) * nt + 2 * 2 * d * d * ns  # cross-attn K,V of memory
                        + 4 * d * (t * (t + 1) / 2).sum().item() + 4 * d * (t * s).sum().item())
    return 3 * (enc + dec + 2 * d * vocab * nt)


class Worker:
    """One toolkit in its own process; `step(i)` returns the seconds its training step on batch i took."""

    def __init__(self, name: str, python: str, spec: dict, extra_path: str | None = None):
        env = dict(os.environ)
        if extra_path:
            env["PYTHONPATH"] = extra_path + os.pathsep + env.get("PYTHONPATH", "")
        self.name = name
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", name, json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited (code {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def step(self, i: int) -> dict:
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def run_round_robin(workers: list[Worker], n: int, warmup: int, budget_s: float | None) -> dict[str, list[dict]]:
    """Batch i goes to every worker before batch i+1; the order rotates each batch so no toolkit
    always follows the same neighbour (caches, frequency boost) or always runs first. With a budget,
    timing stops after the first full round that ends past it, so every toolkit has the same batches."""
    replies: dict[str, list[dict]] = {w.name: [] for w in workers}
    t0 = time.monotonic()
    for i in range(n):
        k = i % len(workers)
        for w in workers[k:] + workers[:k]:
            replies[w.name].append(w.step(i))
        if budget_s is not None and i >= warmup and time.monotonic() - t0 > budget_s:
            break
    return replies


def load_or_make_batches(args, n: int) -> tuple[int, list[dict]]:
    """The batches as plain tensors any torch can load; cached in `--batches` so the tokenizer is
    trained outside the timed (locked) run."""
    meta = {"corpus": str(Path(args.corpus).resolve()), "sentences": args.sentences, "vocab": args.vocab,
            "max_tokens": args.max_tokens}
    path = Path(args.batches) if args.batches else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=True)
        if saved["meta"] != meta or len(saved["batches"]) < n:
            raise SystemExit(f"{path}: made for {saved['meta']} with {len(saved['batches'])} batches, "
                             f"not {meta} with {n}; delete it or pass another --batches")
        return saved["vocab"], saved["batches"][:n]
    with tempfile.TemporaryDirectory() as tmp:
        vocab, batches = make_batches(Path(args.corpus), args.sentences, args.vocab, args.max_tokens, n, Path(tmp))
    plain = [{"src": b.src, "tgt_in": b.tgt_in, "tgt_out": b.tgt_out, "ntokens": b.ntokens} for b in batches]
    if path is not None:
        torch.save({"meta": meta, "vocab": vocab, "batches": plain}, path)
    return vocab, plain


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    for flag, default in (("threads", 2), ("steps", 20), ("warmup", 3), ("max-tokens", 2048), ("vocab", 8000),
                          ("sentences", 10000), ("layers", 2), ("d-model", 256)):
        ap.add_argument(f"--{flag}", type=int, default=default)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense bf16 peak (e.g. 989 for H100 SXM), for MFU")
    ap.add_argument("--joeynmt-python", default="/tmp/joeyvenv/bin/python")
    ap.add_argument("--opennmt-python", default="/tmp/onmtvenv/bin/python")
    ap.add_argument("--peers", nargs="*", default=["opennmt-py", "joeynmt"], choices=["opennmt-py", "joeynmt"],
                    help="the peers to time beside babelflow (none: babelflow alone)")
    ap.add_argument("--json", help="also write the figures here as JSON")
    ap.add_argument("--batches", default=None,
                    help="cache file for the batches: made (tokenizer trained) when missing, else loaded")
    ap.add_argument("--prepare-only", action="store_true", help="only make the --batches file")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop timing after the round that passes this many seconds (fewer timed steps)")
    ap.add_argument("--worker", nargs=2, metavar=("NAME", "SPEC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker[0], json.loads(args.worker[1]))

    n = args.warmup + args.steps
    d = args.d_model
    result: dict = {"device": args.device, "threads": args.threads, "machine": platform.machine(),
                    "max_tokens": args.max_tokens, "layers": args.layers, "d_model": d}
    vocab, saved = load_or_make_batches(args, n)
    if args.prepare_only:
        return print(f"{len(saved)} batches, vocabulary {vocab}, in {args.batches}")
    result["vocab"] = vocab
    with tempfile.TemporaryDirectory() as tmp:
        batch_file = Path(tmp) / "batches.pt"
        torch.save(saved, batch_file)
        spec = {"batches": str(batch_file), "vocab": vocab, "d_model": d, "ffn": 4 * d, "heads": d // 64,
                "layers": args.layers, "dropout": 0.1, "threads": args.threads, "device": args.device}
        pythons = {"babelflow": sys.executable, "opennmt-py": args.opennmt_python, "joeynmt": args.joeynmt_python}
        workers = []
        try:
            for name, python in pythons.items():
                if name != "babelflow" and name not in args.peers:
                    continue
                if not Path(python).exists():
                    result[f"{name}_missing"] = f"no python at {python}"
                    continue
                # Only babelflow's worker imports the project; the peers' venvs do not have it installed.
                workers.append(Worker(name, python, spec, str(ROOT) if name == "babelflow" else None))
            result["loadavg_before"] = round(os.getloadavg()[0], 2)
            replies = run_round_robin(workers, n, args.warmup, args.budget_s)
            result["loadavg_after"] = round(os.getloadavg()[0], 2)
        finally:
            for w in workers:
                w.close()

    done = len(replies[workers[0].name])
    result["timed_steps"] = done - args.warmup
    saved = saved[:done]
    flops = [step_flops(b, d, 4 * d, args.layers, args.layers, vocab) for b in saved[args.warmup:]]
    for w in workers:
        secs = [r["seconds"] for r in replies[w.name][args.warmup:]]
        tokens = sum(b["ntokens"] for b in saved[args.warmup:])
        entry = dict(w.info, tokens=tokens, seconds=round(sum(secs), 3),
                     tokens_per_s=round(tokens / sum(secs), 1),
                     median_step_s=round(statistics.median(secs), 4),
                     # Same batch, fresh init: of the order of ln(vocab) everywhere, a check that every
                     # toolkit got the same work. JoeyNMT reports KL to the smoothed target (lower).
                     step_seconds=[round(x, 3) for x in secs],
                     first_loss_per_token=round(replies[w.name][0]["loss_per_token"], 3))
        if args.peak_tflops:
            entry["mfu"] = round(sum(flops) / sum(secs) / (args.peak_tflops * 1e12), 4)
        result[w.name] = entry
    peers = [w.name for w in workers if w.name != "babelflow"]
    if "babelflow" in result and peers:
        ours = result["babelflow"]["tokens_per_s"]
        for p in peers:
            result[f"ratio_vs_{p}"] = round(ours / result[p]["tokens_per_s"], 3)
            # Per-step ratios on the same batch: robust to a load spike that hit one stretch of the run.
            per_step = [b["seconds"] / a["seconds"]
                        for a, b in zip(replies["babelflow"][args.warmup:], replies[p][args.warmup:])]
            result[f"median_step_ratio_vs_{p}"] = round(statistics.median(per_step), 3)
        fastest = max(peers, key=lambda p: result[p]["tokens_per_s"])
        result["faster_peer"] = fastest
        result["ratio_vs_faster_peer"] = result[f"ratio_vs_{fastest}"]
    result["model_tflops_per_step_mean"] = round(statistics.mean(flops) / 1e12, 4)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------- workers
def worker_main(name: str, spec: dict) -> None:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Threads, seed and autocast are set here, not by babelflow.runtime: the peers' venvs lack babelflow,
    # and every toolkit must get the same settings.
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    batches = torch.load(spec["batches"], weights_only=True)
    for b in batches:
        for k in ("src", "tgt_in", "tgt_out"):
            b[k] = b[k].to(device)
    build = {"babelflow": build_babelflow, "joeynmt": build_joeynmt, "opennmt-py": build_opennmt}[name]
    torch.manual_seed(1)
    model, loss_fn, adapt, version = build(spec)
    model.to(device).train()
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), **({"fused": True} if cuda else {}))
    inputs = [adapt(b) for b in batches]
    proto.write(json.dumps({"parameters": sum(p.numel() for p in model.parameters()),
                            "torch": torch.__version__, "version": version}) + "\n")
    proto.flush()
    for line in sys.stdin:
        i = int(line)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model, inputs[i])
        (loss / batches[i]["ntokens"]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        proto.write(json.dumps({"seconds": seconds, "loss_per_token": loss.item() / batches[i]["ntokens"]}) + "\n")
        proto.flush()


def build_babelflow(spec: dict):
    import babelflow
    from babelflow.config import ModelConfig, TransformerConfig
    from babelflow.loss import token_cross_entropy
    from babelflow.models import build_model

    cfg = TransformerConfig(d_model=spec["d_model"], ffn_dim=spec["ffn"], heads=spec["heads"],
                            encoder_layers=spec["layers"], decoder_layers=spec["layers"], dropout=spec["dropout"])
    model = build_model(ModelConfig(arch="transformer", transformer=cfg), spec["vocab"])

    def loss_fn(model, b):
        return token_cross_entropy(model(b["src"], b["tgt_in"]), b["tgt_out"], LABEL_SMOOTHING)

    return model, loss_fn, lambda b: b, getattr(babelflow, "__version__", "dev")


def build_joeynmt(spec: dict):
    from importlib.metadata import version

    from joeynmt.model import build_model
    from joeynmt.vocabulary import Vocabulary

    specials = SimpleNamespace(unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                               unk_id=0, pad_id=1, bos_id=2, eos_id=3, sep_token=None, lang_tags=[])
    voc = Vocabulary([f"w{i}" for i in range(spec["vocab"] - 4)], specials)
    layer = {"type": "transformer", "num_layers": spec["layers"], "num_heads": spec["heads"],
             "hidden_size": spec["d_model"], "ff_size": spec["ffn"], "dropout": spec["dropout"],
             "layer_norm": "pre",
             "embeddings": {"embedding_dim": spec["d_model"], "scale": True, "dropout": spec["dropout"]}}
    mcfg = {"encoder": dict(layer), "decoder": dict(layer),
            "tied_embeddings": True, "tied_softmax": True, "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform", "bias_initializer": "zeros"}
    model = build_model(mcfg, voc, voc)
    model.loss_function = ("crossentropy", LABEL_SMOOTHING)

    def remap(t):  # babelflow pad=0/unk=1 -> JoeyNMT unk=0/pad=1: same work, its own conventions
        return torch.where(t == 0, 1, torch.where(t == 1, 0, t))

    def adapt(b):
        src, trg_in, trg = remap(b["src"]), remap(b["tgt_in"]), remap(b["tgt_out"])
        return dict(src=src, trg_input=trg_in, trg=trg, src_mask=(src != 1).unsqueeze(1),
                    src_length=(src != 1).sum(1), trg_mask=(trg_in != 1).unsqueeze(1))

    def loss_fn(model, kw):
        return model(return_type="loss", **kw)[0]

    return model, loss_fn, adapt, version("joeynmt")


def build_opennmt(spec: dict):
    from importlib.metadata import version

    import pyonmttok
    from onmt import opts
    from onmt.model_builder import build_model
    from onmt.utils.loss import LossCompute
    from onmt.utils.parse import ArgumentParser

    # OpenNMT-py's Transformer is always pre-norm. Where its defaults differ from babelflow's they are
    # set to match: biases on attention and FFN projections, no dropout on attention weights;
    # sinusoidal positions; one embedding shared by encoder, decoder and the generator. Left as is:
    # its generator keeps a bias (vocab-sized), which babelflow's tied projection has not.
    d = spec["d_model"]
    flags = ["-encoder_type", "transformer", "-decoder_type", "transformer", "-layers", str(spec["layers"]),
             "-hidden_size", str(d), "-word_vec_size", str(d), "-transformer_ff", str(spec["ffn"]),
             "-heads", str(spec["heads"]), "-dropout", str(spec["dropout"]), "-attention_dropout", "0.0",
             "-position_encoding", "-share_embeddings", "-share_decoder_embeddings",
             "-add_qkvbias", "-add_ffnbias", "-param_init", "0", "-param_init_glorot",
             "-label_smoothing", str(LABEL_SMOOTHING),
             "-data", "{}", "-src_vocab", "unused"]  # required by its parser, unused: no data pipeline here
    if spec["device"] == "cuda":
        flags += ["-gpu_ranks", "0"]
    parser = ArgumentParser()
    opts.train_opts(parser)
    opt = parser.parse_args(flags)
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    # Specials first, in babelflow's order (pad, unk, bos, eos), so the saved ids need no remapping.
    specials = ["<blank>", "<unk>", "<s>", "</s>"]
    vocab = pyonmttok.build_vocab_from_tokens([f"w{i}" for i in range(spec["vocab"] - 4)], special_tokens=specials)
    assert [vocab[t] for t in specials] == [0, 1, 2, 3], [vocab[t] for t in specials]
    vocabs = {"src": vocab, "tgt": vocab, "data_task": "seq2seq", "decoder_start_token": "<s>"}
    model = build_model(opt, opt, vocabs, None, 0)
    compute = LossCompute.from_opts(opt, model, vocab, train=True)

    def adapt(b):
        # OpenNMT-py takes the target with BOS and EOS and shifts it itself: BOS column + tgt_out.
        src = b["src"].unsqueeze(-1)
        tgt = torch.cat([b["tgt_in"][:, :1], b["tgt_out"]], dim=1).unsqueeze(-1)
        return {"src": src, "tgt": tgt, "srclen": (b["src"] != 0).sum(1)}

    def loss_fn(model, batch):
        out, attns = model(batch["src"], batch["tgt"], batch["srclen"], bptt=False, with_align=False)
        loss, _stats = compute(batch, out, attns)
        return loss

    return model, loss_fn, adapt, version("OpenNMT-py")


if __name__ == "__main__":
    main()
