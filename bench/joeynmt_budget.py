"""babelflow vs JoeyNMT 2.3.0 at equal budget (issue 20): the same cleaned data, SentencePiece model,
model shape, batch size in tokens, number of updates, thread count and beam, on the same machine.

    python bench/joeynmt_budget.py --project /path/to/project --updates 2000 \\
        --grid 0.005:500 --grid 0.002:500 [--recipe recipes/multi30k-ende.yaml] [--work /tmp/bf_joey]

--project: a folder where the recipe's data stages ran (`make run RECIPE=multi30k-ende`, or
`dvc repro encode` with its params): both toolkits read its data/clean/<pair>/{train,dev,test}.{src,tgt}
and data/tokenizer/spm.model; babelflow also its data/encoded (linked read-only, as bench/ablate.py does).

Each toolkit trains once per --grid LR:WARMUP (peak learning rate, linear warm-up then inverse square
root: babelflow's `inverse_sqrt`, JoeyNMT's `warmupinversesquareroot`), for exactly --updates updates,
and the weights after the last update are decoded (beam 5, length penalty 1.0, no repetition ban: the
two decoders alike) on val and scored by babelflow.metrics (sacreBLEU 13a, cased). Per toolkit the
grid point with the best val BLEU is chosen, and only that one is decoded on test. Test never chooses.

A round trains one babelflow and one JoeyNMT grid point at the same time, each pinned to its own core
with one thread: what load the machine has hits both alike, so the wall times compare as a ratio.
Model: the recipe's Transformer (pre-norm, 4+4 layers, d 128, ffn 256, 4 heads, dropout 0.3, tied
embeddings, label smoothing 0.1, Adam betas (0.9, 0.98), clip 1.0). JoeyNMT is given its `layer_norm:
pre` (the same stack) and its own initialisation (xavier). Batches: at most --max-tokens padded tokens
of the longer side for babelflow (length-sorted windows); JoeyNMT counts the same (max(src, trg) + 1
times sentences) but closes a batch at or above it, over random order: the tokens each really trained
on are reported.

The JoeyNMT python is its own venv (../shared/PEERS.md): --joeynmt-python, default /tmp/joeyvenv.
Figures go to <work>/results.json and are printed as a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SEED = 1234
DEV_BLEU_SENTENCES = 200  # validation during training, both toolkits: greedy BLEU on this many dev lines


# ---------------------------------------------------------------------------------------- babelflow
def babelflow_params(args, lr: float, warmup: int, threads: int):
    from babelflow.config import load_params

    n = args.updates
    return load_params(args.recipe, [
        f"train.max_steps={n}", f"train.lr={lr}", f"train.warmup_steps={warmup}", "train.schedule=inverse_sqrt",
        f"train.max_tokens={args.max_tokens}", "train.accumulate=1", f"train.threads={threads}",
        "train.average_last=[1]",  # the weights after the last update, as JoeyNMT's are used
        f"train.validate_every={n}", f"train.checkpoint_every={n}", "train.device=cpu",
        f"train.dev_bleu_sentences={DEV_BLEU_SENTENCES}",
        f"evaluate.beam_size={args.beam}", "evaluate.length_penalty=1.0", "evaluate.max_run=0"])


def babelflow_train(args, work: Path, lr: float, warmup: int) -> dict:
    from babelflow.io import read_json
    from bench.ablate import link_data
    from bench.pipeline import run_stages

    params = babelflow_params(args, lr, warmup, threads=1)
    link_data(Path(args.project), work, "train")
    t = time.monotonic()
    paths, _ = run_stages(params, work, ["train"])
    wall = time.monotonic() - t
    state = read_json(paths.train / "train_state.json")
    return {"wall_s": round(wall, 1), "steps": state["steps"], "target_tokens": state["tokens_seen"]}


def babelflow_decode(args, work: Path, lr: float, warmup: int, split: str) -> float:
    from bench.ablate import score_dev
    from tasks._common import Paths

    [s] = score_dev(babelflow_params(args, lr, warmup, threads=1), Paths(work), split=split)
    return s.bleu


# ------------------------------------------------------------------------------------------ JoeyNMT
def joeynmt_config(args, work: Path, lr: float, warmup: int, purpose: str) -> Path:
    """A JoeyNMT config over the project's clean files (linked as <prefix>.en/.de) and SentencePiece model,
    for `purpose` train (its validation greedy-decodes 200 dev sentences, as babelflow's does), dev (the
    whole val split) or test (the test split alone)."""
    import sentencepiece as spm
    import yaml

    clean = Path(args.project).resolve() / "data" / "clean" / args.pair
    spm_model = Path(args.project).resolve() / "data" / "tokenizer" / "spm.model"
    src, trg = args.pair.split("-")
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        for side, lang in (("src", src), ("tgt", trg)):
            link = data / f"{split}.{lang}"
            if not link.exists():
                link.symlink_to(clean / f"{split}.{side}")
    with open(clean / "dev.src", "rb") as f:
        dev_lines = sum(1 for _ in f)
    vocab = work / "vocab.txt"  # the SentencePiece pieces; JoeyNMT puts its four specials first
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    vocab.write_text("".join(sp.id_to_piece(i) + "\n" for i in range(sp.get_piece_size())
                             if not (sp.is_control(i) or sp.is_unknown(i))), encoding="utf-8")
    side = {"level": "bpe", "lowercase": False, "max_length": 100, "min_length": 1, "voc_file": str(vocab),
            "tokenizer_type": "sentencepiece", "tokenizer_cfg": {"model_file": str(spm_model)}}
    layer = {"type": "transformer", "num_layers": 4, "num_heads": 4, "hidden_size": 128, "ff_size": 256,
             "dropout": 0.3, "layer_norm": "pre",
             "embeddings": {"embedding_dim": 128, "scale": True, "dropout": 0.3}}
    n = args.updates
    cfg = {
        "name": work.name, "joeynmt_version": "2.3.0", "model_dir": str(work / "model"), "use_cuda": False,
        "fp16": False, "random_seed": SEED,
        # JoeyNMT's test mode decodes every split named here, so the test decode names test alone (the
        # dev phase decoded dev already; naming it again cost one more full beam-5 decode of val).
        "data": {"train": str(data / "train"),
                 **({"test": str(data / "test")} if purpose == "test" else {"dev": str(data / "dev")}),
                 **({"sample_dev_subset": DEV_BLEU_SENTENCES} if purpose == "train" and dev_lines > DEV_BLEU_SENTENCES
                    else {}),
                 "dataset_type": "plain", "src": {"lang": src, **side}, "trg": {"lang": trg, **side},
                 "special_symbols": {"unk_token": "<unk>", "unk_id": 0, "pad_token": "<pad>", "pad_id": 1,
                                     "bos_token": "<s>", "bos_id": 2, "eos_token": "</s>", "eos_id": 3}},
        "testing": {"load_model": str(work / "model" / "latest.ckpt"), "beam_size": args.beam, "beam_alpha": 1, "batch_size": 64, "batch_type": "sentence",
                    "max_output_length": 100, "eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a"}},
        "training": {"optimizer": "adam", "adam_betas": [0.9, 0.98], "learning_rate": lr,
                     "learning_rate_min": 1e-8, "scheduling": "warmupinversesquareroot",
                     "learning_rate_warmup": warmup, "weight_decay": 0.0, "label_smoothing": 0.1,
                     "loss": "crossentropy", "normalization": "tokens", "clip_grad_norm": 1.0,
                     "batch_size": args.max_tokens, "batch_type": "token", "batch_multiplier": 1,
                     "epochs": 10_000, "updates": n, "validation_freq": n, "logging_freq": min(100, max(1, n // 2)),
                     "early_stopping_metric": "bleu", "keep_best_ckpts": 1, "shuffle": True,
                     "overwrite": True, "print_valid_sents": [], "num_workers": 0},
        "model": {"initializer": "xavier_uniform", "embed_initializer": "xavier_uniform",
                  "bias_initializer": "zeros", "init_gain": 1.0, "tied_embeddings": True, "tied_softmax": True,
                  "encoder": dict(layer), "decoder": dict(layer)},
    }
    path = work / f"{purpose}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def joeynmt_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def joeynmt_train(args, work: Path, lr: float, warmup: int) -> dict:
    import torch

    cfg = joeynmt_config(args, work, lr, warmup, "train")
    t = time.monotonic()
    with open(work / "train.out", "w") as log:
        subprocess.run([args.joeynmt_python, "-m", "joeynmt", "train", str(cfg), "--skip-test"], check=True, env=joeynmt_env(),
                       stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t
    ckpt = torch.load(work / "model" / "latest.ckpt", map_location="cpu", weights_only=False)
    return {"wall_s": round(wall, 1), "steps": int(ckpt["stats_state"]["steps"]),
            "target_tokens": int(ckpt["stats_state"]["total_tokens"])}


def joeynmt_decode(args, work: Path, lr: float, warmup: int, split: str) -> float:
    from babelflow.data import read_parallel
    from babelflow.metrics import score

    cfg = joeynmt_config(args, work, lr, warmup, split)
    out = work / "hyp"
    subprocess.run([args.joeynmt_python, "-m", "joeynmt", "test", str(cfg), "--output-path", str(out)], check=True,
                   env=joeynmt_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clean = Path(args.project) / "data" / "clean" / args.pair
    refs = [b for _, b in read_parallel(clean / f"{split}.src", clean / f"{split}.tgt")]
    hyps = (work / f"hyp.{split}").read_text(encoding="utf-8").splitlines()
    return round(score(hyps, refs, args.pair.split("-")[1])["bleu"], 2)


TOOLKITS = {"babelflow": (babelflow_train, babelflow_decode), "joeynmt": (joeynmt_train, joeynmt_decode)}


# ------------------------------------------------------------------------------------------- driver
def job_dir(args, toolkit: str, lr: float, warmup: int) -> Path:
    return Path(args.work) / f"{toolkit}-u{args.updates}-lr{lr:g}-w{warmup}"


def run_job(args) -> None:
    """One toolkit, one grid point, one phase, in this process (pinned by the driver): JSON on stdout."""
    toolkit, lr, warmup, phase = args.job
    lr, warmup = float(lr), int(warmup)
    train, decode = TOOLKITS[toolkit]
    work = job_dir(args, toolkit, lr, warmup)
    work.mkdir(parents=True, exist_ok=True)
    done = work / f"{phase}.json"  # a finished phase is not redone: a rerun after a failure goes on
    if not done.exists():
        result = train(args, work, lr, warmup) if phase == "train" else {phase: decode(args, work, lr, warmup, phase)}
        done.write_text(json.dumps(result))
    print("RESULT " + done.read_text(), flush=True)


def spawn(args, toolkit: str, lr: float, warmup: int, phase: str, core: int) -> subprocess.Popen:
    argv = [sys.executable, __file__, "--job", toolkit, str(lr), str(warmup), phase]
    for key in ("project", "recipe", "work", "pair", "updates", "max_tokens", "beam", "joeynmt_python"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**joeynmt_env(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(["taskset", "-c", str(core), *argv], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def collect(proc: subprocess.Popen, what: str) -> dict:
    out, _ = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{what} failed (exit {proc.returncode}); its log is in its work folder")
    return json.loads(lines[-1][len("RESULT "):])


def paired(args, jobs: list[tuple[str, float, int]], phase: str) -> dict:
    """Run `jobs` two at a time, one per core."""
    results = {}
    for i in range(0, len(jobs), 2):
        batch = jobs[i:i + 2]
        procs = [(job, spawn(args, *job, phase, core)) for core, job in enumerate(batch)]
        for job, proc in procs:
            results[job] = collect(proc, f"{job[0]} lr {job[1]:g} warm-up {job[2]} ({phase})")
            print(f"{job[0]:9} lr {job[1]:g} warm-up {job[2]:5} {phase}: {results[job]}", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", required=True, help="project folder whose data stages ran with the recipe")
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "multi30k-ende.yaml"))
    ap.add_argument("--pair", default="en-de")
    ap.add_argument("--updates", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=4096)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--grid", action="append", default=[], metavar="LR:WARMUP",
                    help="a peak learning rate and warm-up both toolkits train with (repeatable)")
    ap.add_argument("--toolkits", nargs="+", default=list(TOOLKITS), choices=list(TOOLKITS))
    ap.add_argument("--joeynmt-python", default="/tmp/joeyvenv/bin/python")
    ap.add_argument("--work", default="/tmp/babelflow_joeynmt")
    ap.add_argument("--job", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        return run_job(args)
    if not Path(args.joeynmt_python).exists() and "joeynmt" in args.toolkits:
        raise SystemExit(f"{args.joeynmt_python}: no JoeyNMT python (install it as ../shared/PEERS.md says)")
    grid = [(float(lr), int(w)) for lr, w in (g.split(":") for g in args.grid or ["0.005:500"])]
    # Round r trains grid point r of every toolkit side by side.
    jobs = [(t, lr, w) for lr, w in grid for t in args.toolkits]
    trained = paired(args, jobs, "train")
    val = paired(args, jobs, "dev")
    chosen = {t: max((j for j in jobs if j[0] == t), key=lambda j: val[j]["dev"]) for t in args.toolkits}
    test = paired(args, list(chosen.values()), "test")
    rows = [{"toolkit": t, "lr": lr, "warmup": w, **trained[(t, lr, w)], "val_bleu": val[(t, lr, w)]["dev"],
             "chosen": chosen[t] == (t, lr, w), "test_bleu": test.get((t, lr, w), {}).get("test")}
            for t, lr, w in jobs]
    Path(args.work, "results.json").write_text(json.dumps({"updates": args.updates, "rows": rows}, indent=1))
    print("| toolkit | lr | warm-up | updates | target tokens | train wall (1 core) | val BLEU | test BLEU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['toolkit']} | {r['lr']:g} | {r['warmup']} | {r['steps']} | {r['target_tokens']:,} | "
              f"{r['wall_s'] / 60:.1f} min | {r['val_bleu']:.2f}{' (chosen)' if r['chosen'] else ''} | "
              f"{'' if r['test_bleu'] is None else format(r['test_bleu'], '.2f')} |")


if __name__ == "__main__":
    main()
