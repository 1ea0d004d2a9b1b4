"""Training throughput (target tokens/s) of babelflow vs JoeyNMT on the same Transformer and batches.

Both toolkits run the same training step (forward, label-smoothed cross-entropy summed over
tokens, backward, clip, AdamW) on identical padded batches from Multi30k en->de, one after the
other in one process, with the same thread count. Only the model+optimizer step is timed: data
loading is excluded on both sides, so the figure compares the model implementations.

JoeyNMT lives in its own venv (see ../shared/PEERS.md); run this file with that venv's python and
the project on PYTHONPATH, e.g.

    PYTHONPATH=. /tmp/joeyvenv/bin/python bench/train_speed.py --threads 2 --steps 20

Without JoeyNMT importable only the babelflow figure is printed.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from babelflow.config import ModelConfig, TokenizerConfig, TransformerConfig
from babelflow.data import TokenBatcher, collate, load_examples
from babelflow.loss import token_cross_entropy
from babelflow.tokenizer import Tokenizer, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def make_batches(corpus: Path, n_sent: int, vocab: int, max_tokens: int, steps: int, work: Path):
    src = (corpus / "train.en").read_text(encoding="utf-8").splitlines()[:n_sent]
    tgt = (corpus / "train.de").read_text(encoding="utf-8").splitlines()[:n_sent]
    train_tokenizer({"en": src, "de": tgt}, work, TokenizerConfig(vocab_size=vocab, sample_sentences=2 * n_sent),
                    ["de"], 1)
    tok = Tokenizer(work / "spm.model")
    clean = work / "clean" / "en-de"
    clean.mkdir(parents=True)
    (clean / "train.src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (clean / "train.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    examples = load_examples(work / "clean", "en-de", "train", tok, 128)
    batcher = TokenBatcher(examples, max_tokens, shuffle=True, seed=1, infinite=True)
    it = iter(batcher)
    return tok.vocab_size, [next(it) for _ in range(steps)]


def bench_babelflow(cfg: TransformerConfig, vocab: int, batches, warmup: int, clip: float):
    from babelflow.models import build_model

    torch.manual_seed(1)
    model = build_model(ModelConfig(arch="transformer", transformer=cfg), vocab)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98))

    def step(b):
        loss = token_cross_entropy(model(b.src, b.tgt_in), b.tgt_out, 0.1)
        (loss / b.ntokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, batches, sum(p.numel() for p in model.parameters())


def bench_joeynmt(cfg: TransformerConfig, vocab: int, batches, warmup: int, clip: float):
    from joeynmt.model import build_model
    from joeynmt.vocabulary import Vocabulary

    specials = SimpleNamespace(unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                               unk_id=0, pad_id=1, bos_id=2, eos_id=3, sep_token=None, lang_tags=[])
    voc = Vocabulary([f"w{i}" for i in range(vocab - 4)], specials)
    layer = {"type": "transformer", "num_layers": cfg.encoder_layers, "num_heads": cfg.heads,
             "hidden_size": cfg.d_model, "ff_size": cfg.ffn_dim, "dropout": cfg.dropout, "layer_norm": "pre",
             "embeddings": {"embedding_dim": cfg.d_model, "scale": True, "dropout": cfg.dropout}}
    mcfg = {"encoder": dict(layer), "decoder": dict(layer, num_layers=cfg.decoder_layers),
            "tied_embeddings": True, "tied_softmax": True, "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform", "bias_initializer": "zeros"}
    torch.manual_seed(1)
    model = build_model(mcfg, voc, voc)
    model.loss_function = ("crossentropy", 0.1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98))

    def remap(t):  # babelflow pad=0/unk=1 -> JoeyNMT unk=0/pad=1: same work, its own conventions
        return torch.where(t == 0, 1, torch.where(t == 1, 0, t))

    joey_batches = []
    for b in batches:
        src, trg_in, trg = remap(b.src), remap(b.tgt_in), remap(b.tgt_out)
        joey_batches.append(SimpleNamespace(
            ntokens=b.ntokens,
            kw=dict(src=src, trg_input=trg_in, trg=trg, src_mask=(src != 1).unsqueeze(1),
                    src_length=(src != 1).sum(1), trg_mask=(trg_in != 1).unsqueeze(1))))

    def step(b):
        loss = model(return_type="loss", **b.kw)[0]
        (loss / b.ntokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, joey_batches, sum(p.numel() for p in model.parameters())


def run_interleaved(runners: dict, warmup: int) -> dict:
    """Time the toolkits batch by batch in alternation, so load changes on a shared machine hit
    both alike instead of whichever happened to run second."""
    for step, batches, _ in runners.values():
        for b in batches[:warmup]:
            step(b)
    seconds = dict.fromkeys(runners, 0.0)
    n = len(next(iter(runners.values()))[1])
    for i in range(warmup, n):
        for name, (step, batches, _) in runners.items():
            t0 = time.perf_counter()
            step(batches[i])
            seconds[name] += time.perf_counter() - t0
    out = {}
    for name, (_, batches, params) in runners.items():
        tokens = sum(b.ntokens for b in batches[warmup:])
        out[name] = {"tokens": tokens, "seconds": round(seconds[name], 3),
                     "tokens_per_s": round(tokens / seconds[name], 1), "parameters": params}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpora" / "multi30k"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--sentences", type=int, default=10000)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TransformerConfig(d_model=args.d_model, ffn_dim=4 * args.d_model, heads=args.d_model // 64,
                            encoder_layers=args.layers, decoder_layers=args.layers, dropout=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        vocab, batches = make_batches(Path(args.corpus), args.sentences, args.vocab, args.max_tokens,
                                      args.warmup + args.steps, Path(tmp))
    result = {"device": "cpu", "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
              "vocab": vocab, "max_tokens": args.max_tokens, "layers": args.layers, "d_model": args.d_model,
              "timed_steps": args.steps}
    runners = {"babelflow": bench_babelflow(cfg, vocab, batches, args.warmup, 1.0)}
    try:
        runners["joeynmt"] = bench_joeynmt(cfg, vocab, batches, args.warmup, 1.0)
    except ImportError as exc:
        result["joeynmt_missing"] = f"not importable: {exc}"
    result.update(run_interleaved(runners, args.warmup))
    if "joeynmt" in result:
        result["ratio_vs_joeynmt"] = round(result["babelflow"]["tokens_per_s"] / result["joeynmt"]["tokens_per_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
