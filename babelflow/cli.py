"""The `babelflow` command: translate with a release, cut a versioned release, run or schedule the
pipeline, export a model.

Every user-caused failure ends with exit code 2 and one readable line on stderr (no traceback); a full
disk (or quota) with exit code 3 and the file being written, as the pipeline stages do; Ctrl-C with exit
code 130, leaving no half-written output (every output is written to a temporary file first).
Prefect and the exporter are imported only by the subcommands that need them, so `translate` starts
fast and works where those are not installed.
"""
from __future__ import annotations

import argparse
import codecs
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence, TextIO

from babelflow import __version__
from babelflow.errors import BabelflowError, ConfigError, InputError

SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


class ReleaseError(BabelflowError):
    """The repository is not in a state a release can be cut from (dirty, tag exists, push failed)."""


# ------------------------------------------------------------------------------------------- translate
def release_languages(release: Path) -> tuple[str, list[str]]:
    """(source language, target languages) from the release's resolved params."""
    import yaml

    path = release / "params.yaml"
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
        return str(params["languages"].get("source", "en")), list(params["languages"]["targets"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(path, f"cannot read the release's languages: {exc}") from None


def release_defaults(release: Path) -> dict:
    import yaml

    try:
        params = yaml.safe_load((release / "params.yaml").read_text(encoding="utf-8"))
        return dict(params.get("evaluate") or {})
    except (OSError, yaml.YAMLError, AttributeError):
        return {}


def capped_lines(inp: BinaryIO, max_chars: int, name: str = "<stdin>") -> Iterator[str]:
    """The lines of the byte stream `inp`, decoded from UTF-8, without their line break; bytes that are
    not UTF-8 are an InputError naming the line of `name`. Decoding line by line is what lets it name
    the line: a text stream decodes blocks ahead of the line being read.

    A line over `max_chars` characters is kept to max_chars + 1 of them (enough to tell it was longer)
    and the rest is read past in pieces, so one enormous line cannot fill the memory."""
    max_bytes = 4 * (max_chars + 1)  # max_chars + 1 characters of up to 4 bytes each
    n = 0
    while raw := inp.readline(max_bytes):
        n += 1
        cut = len(raw) == max_bytes and not raw.endswith(b"\n")
        if cut:
            while (rest := inp.readline(max_bytes)) and not rest.endswith(b"\n"):
                pass
        try:
            # A cut line may end inside a character: the incremental decoder leaves that one out.
            line = codecs.getincrementaldecoder("utf-8")().decode(raw, final=not cut)
        except UnicodeDecodeError as exc:
            raise InputError(name, f"not valid UTF-8 (byte {exc.start + 1} of the line)", line=n) from None
        yield line[: max_chars + 1] if cut else line.rstrip("\r\n")


def translate_stream(decode_ids: Callable[[list[list[int]]], list[list]], tokenizer, inp: BinaryIO,
                     out: TextIO, tgt: str, block: int, progress=None, limit: int = 512,
                     name: str = "<stdin>", nbest: int = 1, scores: bool = False) -> int:
    """Translate line by line in blocks of `block` lines, writing each block as soon as it is done
    (pipes stay live). `decode_ids` maps source id rows to their `nbest` best hypotheses
    (babelflow.decode.Hypothesis, PyTorch or CTranslate2).

    Each input line gives `nbest` output lines, best first, `score<TAB>text` with `scores`; a blank
    input line gives blank ones, so the output stays aligned with the input. A line over the model's
    `limit` source tokens is cut there (babelflow.decode.encode_limited), with a warning on stderr
    naming it as line n of `name`.
    """
    from babelflow.decode import CHARS_PER_TOKEN, encode_limited, truncation_warning
    from babelflow.io import chunks
    from babelflow.metrics import single_line

    n = 0
    lines_in = (line.rstrip("\r\n") for line in capped_lines(inp, limit * CHARS_PER_TOKEN, name))
    for lines in chunks(lines_in, block):
        todo = [i for i, s in enumerate(lines) if s.strip()]
        encoded = [encode_limited(tokenizer, lines[i], tgt, limit) for i in todo]
        for i, e in zip(todo, encoded):
            if e[2]:
                warning = f"babelflow translate: WARNING: {truncation_warning(f'{name}:{n + i + 1}', limit)}"
                # Through tqdm when a progress bar is drawn, so the warning does not land inside it.
                (progress.write if progress is not None else print)(warning, file=sys.stderr)
        hyps = decode_ids([e[0] for e in encoded]) if todo else []
        result = [[""] * nbest for _ in lines]
        for i, nbest_hyps, e in zip(todo, hyps, encoded):
            for k, h in enumerate(nbest_hyps[:nbest]):
                text = single_line(tokenizer.decode(h.tokens, e[1], e[0]))
                result[i][k] = f"{h.score:.4f}\t{text}" if scores else text
        out.write("".join(r + "\n" for rows in result for r in rows))
        out.flush()
        n += len(lines)
        if progress is not None:
            progress.update(len(lines))
    return n


def ctranslate2_decoder(folder: Path, release: Path, tokenizer, device: str, threads: int,
                        compute_type: str = "default"):
    """A CT2Decoder over `folder`, refused unless `babelflow export` made it from this release's weights."""
    from babelflow.ct2_decode import PROVENANCE, CT2Decoder, weights_sha256
    from babelflow.io import read_json

    if not folder.is_dir():
        raise InputError(folder, "CTranslate2 model folder not found")
    try:
        made_from = read_json(folder / PROVENANCE)["model_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(folder / PROVENANCE, "missing or unreadable: export the model with "
                                              f"`babelflow export --format ctranslate2 --release {release}`") from None
    meta = read_json(release / "model.json")  # verify_release has checked it against SHA256SUMS
    if made_from != weights_sha256(meta, release / "model.safetensors"):
        raise InputError(folder, f"exported from another model than {release / 'model.safetensors'}")
    return CT2Decoder(folder, tokenizer.pieces, device=device, threads=threads, compute_type=compute_type,
                      max_positions=meta["config"]["max_positions"])


def check_translate_output(output: Path, inp: str | None, reads: Sequence[Path]) -> None:
    """--output is replaced whole when the run ends (atomic_open): refuse a folder, a path under a file,
    the input file, and any file of the release or export folders this run reads."""
    existing = next(p for p in (output.absolute(), *output.absolute().parents) if p.exists())
    if existing != output.absolute() and not existing.is_dir():
        raise InputError(existing, "is a file, so --output cannot be written under it")
    if output.is_dir():
        raise InputError(output, "is a folder; --output takes a file name")
    if inp and inp != "-" and output.exists() and Path(inp).exists() and output.samefile(inp):
        raise InputError(output, "is also the --input file; write the translation to another file")
    for folder in reads:
        if folder.resolve() in output.resolve().parents:
            raise InputError(output, f"lies inside {folder}, which this command reads; write elsewhere")


def release_source_limit(release: Path) -> int:
    """The source tokens the release's model takes (babelflow.decode.source_limit), from its model.json."""
    from babelflow.decode import source_limit
    from babelflow.io import read_json

    path = release / "model.json"  # verify_release has checked it against SHA256SUMS
    try:
        return source_limit(read_json(path)["config"].get("max_positions"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"cannot read the model's config: {exc}") from None


def check_decoding_options(args: argparse.Namespace, beam: int) -> None:
    if beam < 1:
        raise BabelflowError("--beam must be at least 1")
    if not 1 <= args.n_best <= beam:
        raise BabelflowError(f"--n-best {args.n_best}: must be from 1 to the beam size ({beam}); "
                             "a beam search keeps only that many hypotheses")
    if args.max_length is not None and args.max_length < 1:
        raise BabelflowError("--max-length must be at least 1")
    if args.no_repeat_ngram_size < 0:
        raise BabelflowError("--no-repeat-ngram-size must be 0 (off) or more")
    if args.max_run is not None and args.max_run < 0:
        raise BabelflowError("--max-run must be 0 (off) or more")
    if args.threads < 0:
        raise BabelflowError("--threads must be 0 (all cores) or more")
    if args.quantization and not args.ctranslate2:
        raise BabelflowError("--quantization applies to a CTranslate2 export: give --ctranslate2 DIR too")


def cmd_translate(args: argparse.Namespace) -> int:
    from babelflow.release import verify_release

    release = Path(args.release)
    if not release.is_dir():
        raise InputError(release, "release folder not found")
    verify_release(release)  # before any byte of the model is trusted
    source, langs = release_languages(release)
    if args.to not in langs:
        raise BabelflowError(f"this release does not translate into {args.to!r}; "
                             f"it knows: {', '.join(langs)}")
    if args.output and args.output != "-":
        check_translate_output(Path(args.output), args.input,
                               [release] + ([Path(args.ctranslate2)] if args.ctranslate2 else []))
    defaults = release_defaults(release)
    beam = args.beam if args.beam is not None else int(defaults.get("beam_size", 4))
    check_decoding_options(args, beam)
    from babelflow.runtime import configure, pick_device

    device = pick_device(args.device, where="--device")
    configure(device, args.threads)

    from babelflow.decode import Hypothesis, decoding_workers, translate_ids, translate_nbest
    from babelflow.progress import meter
    from babelflow.tokenizer import Tokenizer

    tokenizer = Tokenizer(release / "spm.model")
    tokenizer.tag_id(args.to)
    length_penalty = float(defaults.get("length_penalty", 1.0))
    max_length_ratio = float(defaults.get("max_length_ratio", 2.0))
    # The release's evaluate.max_run, as its test scores were decoded (older releases: off).
    max_run = args.max_run if args.max_run is not None else int(defaults.get("max_run", 0))
    limits = dict(max_length=args.max_length, no_repeat_ngram_size=args.no_repeat_ngram_size, max_run=max_run)
    nbest = args.n_best

    inp: BinaryIO
    progress = None
    interactive = False
    if args.input and args.input != "-":
        path = Path(args.input)
        if not path.is_file():
            raise InputError(path, "input file not found")
        inp = open(path, "rb")  # decoded line by line (capped_lines), so a bad byte is named by its line
        with open(path, "rb") as fh:
            total = sum(1 for _ in fh)
        progress = meter(total, "sent", desc=f"{source}->{args.to}")
    else:
        inp = sys.stdin.buffer
        interactive = sys.stdin.isatty()  # someone typing expects each line back at once, not after 64
    chunk = 1 if interactive else args.chunk
    try:
        # On CPU, one batch per core at once (same output, faster): babelflow.decode.translate_ids.
        with decoding_workers(device) as workers:
            workers = 1 if interactive else workers
            if args.ctranslate2:
                decoder = ctranslate2_decoder(Path(args.ctranslate2), release, tokenizer, str(device), workers,
                                              args.quantization or "default")
                if limits.pop("max_run"):
                    print(f"babelflow translate: WARNING: CTranslate2 has no max_run: decoding without it (the "
                          f"release's scores were decoded with max_run {max_run}; --max-run 0 silences this)",
                          file=sys.stderr)

                def decode_ids(rows):
                    return decoder.translate_nbest(rows, beam, length_penalty, max_length_ratio, chunk, nbest, **limits)
            else:
                from babelflow.models import load_model

                model = load_model(release, device=device)

                def decode_ids(rows):
                    if nbest == 1 and not args.scores:  # greedy at beam 1, faster than a beam of one
                        return [[Hypothesis(h, 0.0, 0.0)] for h in translate_ids(
                            model, rows, beam, length_penalty, max_length_ratio, chunk, workers, **limits)]
                    return translate_nbest(model, rows, beam, length_penalty, max_length_ratio, chunk, workers,
                                           nbest, **limits)

            todo = dict(decode_ids=decode_ids, tokenizer=tokenizer, inp=inp, tgt=args.to, block=chunk * workers,
                        progress=progress, limit=release_source_limit(release), nbest=nbest, scores=args.scores,
                        name=args.input if args.input and args.input != "-" else "<stdin>")
            if args.output and args.output != "-":
                from babelflow.io import atomic_open

                # A failed or interrupted run leaves no half-written output file behind.
                with atomic_open(args.output) as out:
                    translate_stream(out=out, **todo)
            else:
                translate_stream(out=sys.stdout, **todo)
    finally:
        if progress is not None:
            progress.close()
        if inp is not sys.stdin.buffer:
            inp.close()
    return 0


# --------------------------------------------------------------------------------------------- release
def _dvc() -> list[str]:
    exe = Path(sys.executable).with_name("dvc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dvc"]


def _run(cmd: Sequence[str], cwd: Path, what: str) -> str:
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ReleaseError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
        raise ReleaseError(f"{what} failed (exit {proc.returncode}): " + " | ".join(detail))
    return proc.stdout


def cut_release(root: Path, version: str, remote: str | None, push: bool, log=print) -> str:
    """Check the DVC and git state, commit dvc.lock, push the DVC cache, tag. Returns the tag.

    The push happens before the tag so that a tag always names a state whose data is on the remote;
    a failed push leaves no tag and the command can simply be run again.
    """
    if not SEMVER.match(version):
        raise ReleaseError(f"--version {version!r} is not a semantic version (X.Y.Z)")
    tag = f"v{version}"
    from babelflow.config import load_params

    # The model card, a DVC output, states release.version: a tag naming another version would point
    # at a release whose card disagrees with it.
    stated = load_params(root / "params.yaml").release.version
    if version != stated:
        raise ReleaseError(f"{root / 'params.yaml'}: release.version is {stated}, not {version}; set it to "
                           f"{version}, run `dvc repro` and commit, then release")
    _run(["git", "rev-parse", "--git-dir"], root, f"{root} is not a git repository; git")
    if _run(["git", "tag", "--list", tag], root, "git tag --list").strip():
        raise ReleaseError(f"tag {tag} already exists; choose a new version")
    if not (root / "dvc.lock").is_file():
        raise ReleaseError(f"{root / 'dvc.lock'} not found: run `dvc repro` first")
    status = _run(_dvc() + ["status", "--json"], root, "dvc status")
    try:
        changes = json.loads(status or "{}")
    except json.JSONDecodeError:
        changes = {"<unparsed>": status.strip()}
    # The `inputs` stage is always changed by design (it re-fingerprints the inputs on every run).
    changes = {stage: why for stage, why in changes.items() if why != ["always changed"]}
    if changes:
        names = ", ".join(sorted(changes))
        raise ReleaseError(f"dvc status is not clean (changed: {names}); run `dvc repro` "
                           "(and commit the code) before releasing")
    dirty = [line[3:] for line in _run(["git", "status", "--porcelain", "--untracked-files=no"],
                                       root, "git status").splitlines() if line[3:] != "dvc.lock"]
    if dirty:
        raise ReleaseError("uncommitted changes to tracked files (the tag would not describe them): "
                           + ", ".join(dirty[:10]))
    if _run(["git", "status", "--porcelain", "--", "dvc.lock"], root, "git status").strip():
        _run(["git", "add", "dvc.lock"], root, "git add dvc.lock")
        _run(["git", "commit", "-m", f"release {tag}: dvc.lock", "--", "dvc.lock"], root, "git commit")
        log(f"committed dvc.lock for {tag}")
    if push:
        cmd = _dvc() + ["push"] + (["-r", remote] if remote else [])
        _run(cmd, root, "dvc push")
        log(f"pushed the DVC cache to {remote or 'the default remote'}")
    _run(["git", "tag", "-a", tag, "-m", f"babelflow release {version}"], root, "git tag")
    log(f"tagged {tag}; restore it with: git checkout {tag} && dvc pull")
    return tag


def cmd_release(args: argparse.Namespace) -> int:
    cut_release(Path(args.root), args.version, args.remote, push=not args.no_push,
                log=lambda m: print(m, file=sys.stderr))
    return 0


# ------------------------------------------------------------------------------- pipeline and schedule
def _schedule_params(root: Path) -> dict:
    from babelflow.config import load_params

    path = root / "params.yaml"
    if not path.is_file():
        return {}
    return load_params(path).schedule.model_dump()


def cmd_schedule(args: argparse.Namespace) -> int:
    root = Path(args.root)
    defaults = _schedule_params(root)
    cron = args.cron or defaults.get("cron")
    from flows.schedule import serve

    serve(cron, root=str(root), name=args.name or defaults.get("deployment", "babelflow-nightly"),
          timezone=args.timezone or defaults.get("timezone", "UTC"), stages=args.stages or None)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from babelflow.config import load_params
    from flows.pipeline import check_stages, run_pipeline

    root = Path(args.root).resolve()
    # Plain mistakes are answered here, before a flow run starts: in it they would be a failed run.
    check_stages(args.stages)
    load_params(root / "params.yaml")
    return run_pipeline(root, stages=args.stages or None)  # the run summary, or exit 1 or 2


def cmd_recipe(args: argparse.Namespace) -> int:
    from babelflow.recipes import available, in_use, use_recipe

    if args.name is None:
        current = in_use(args.root)
        for name in available(args.root):
            print(name + (" (params.yaml)" if name == current else ""))
        return 0
    target = use_recipe(args.root, args.name)
    print(f"{target}: recipe {args.name}; run it with `dvc repro` (or `make run`)")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from babelflow.summary import babelflow_command, load, render_markdown, render_text
    from tasks._common import Paths

    root = Path(args.root)
    if not root.is_dir():
        raise InputError(root, "project folder not found")
    render = render_markdown if args.format == "markdown" else render_text
    sys.stdout.write(render(load(Paths(root)), babelflow_command()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import importlib

    # import_module consults sys.modules; `from babelflow import export` would return the package
    # attribute left by an earlier import and ignore a replaced or blocked module.
    try:
        exporter = importlib.import_module("babelflow.export")
    except ImportError as exc:
        raise BabelflowError(f"export is not available in this installation ({exc})") from None
    fn = getattr(exporter, "main", None)
    if fn is None:
        raise BabelflowError("babelflow.export has no main(argv) entry point")
    argv = (["--format", args.format] if args.format else []) + args.rest
    return int(fn(argv) or 0)


# ------------------------------------------------------------------------------------------------ main
class Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines (the prose is wrapped by `paragraph`); commands and options in one
    column wide enough for `translate`."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=28)


class Parser(argparse.ArgumentParser):
    """argparse with a mistake answered in one line, pointing at --help (not the usage block), and
    help texts whose examples keep their lines."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def paragraph(text: str) -> str:
    # The formatter keeps the examples' lines, so the prose is wrapped here, as wide as argparse's.
    return textwrap.fill(text, max(40, shutil.get_terminal_size().columns - 2))


def examples(*lines: str) -> str:
    return "examples:\n" + "".join(f"  {line}\n" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="babelflow",
        description="Translate with a release, cut versioned releases, run or schedule the pipeline, "
                    "export models.",
        epilog=examples("babelflow translate --release data/release --to de < input.en > output.de",
                        "babelflow run --stages evaluate release",
                        "babelflow COMMAND --help"))
    parser.add_argument("--version", action="version", version=f"babelflow {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", title="commands")

    t = sub.add_parser(
        "translate", help="translate text with a release folder",
        description=paragraph(
            "Translate one sentence per line with a release folder (made by `dvc repro`), from stdin "
                    "or --input to stdout or --output. Each input line gives --n-best output lines, best "
                    "first; a blank input line gives blank ones, so the output stays aligned with the input. "
                    "With --scores each line is SCORE<TAB>TRANSLATION, as fairseq's H- lines: the "
                    "hypothesis's log-probability (natural log, the end token included) divided by the "
                    "length penalty ((5 + length) / 6) ** alpha that ranked it; higher is better (with "
                    "--ctranslate2, CTranslate2's own score). Decoding settings not given here (length "
                    "penalty, length ratio) are the release's evaluate settings."),
        epilog=examples(
            "babelflow translate --release data/release --to de < input.en > output.de",
            "babelflow translate --release data/release --to fr --input in.en --output out.fr --beam 5",
            "babelflow translate --release data/release --to de --n-best 3 --scores --beam 4 < in.en",
            "babelflow translate --release data/release --to de --ctranslate2 ct2 --quantization int8 < in.en"))
    t.add_argument("--release", required=True, help="release folder (data/release)")
    t.add_argument("--to", required=True, help="target language code, e.g. de")
    t.add_argument("--input", help="input file, UTF-8, one sentence per line (default: stdin)")
    t.add_argument("--output", help="output file, written when the run ends (default: stdout, line by line)")
    t.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy; default: the release's)")
    t.add_argument("--n-best", type=int, default=1, metavar="N",
                   help="output the N best hypotheses of each input line, best first (N <= beam size; default 1)")
    t.add_argument("--scores", action="store_true",
                   help="print each hypothesis as SCORE<TAB>TRANSLATION (see above)")
    t.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="at most N tokens per translation, the end token not counted, in addition to the "
                        "release's length ratio limit (default: that limit only)")
    t.add_argument("--no-repeat-ngram-size", type=int, default=0, metavar="N",
                   help="never repeat an N-gram of tokens within a translation, as fairseq's option of this "
                        "name (default 0: off)")
    t.add_argument("--max-run", type=int, default=None, metavar="N",
                   help="a word or phrase at most N times in a row (default: the release's evaluate.max_run; "
                        "0: off)")
    t.add_argument("--chunk", type=int, default=64, help="sentences per batch (default 64)")
    t.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    t.add_argument("--threads", type=int, default=0, help="CPU cores to decode on, one batch each "
                   "(0 = all cores)")
    t.add_argument("--ctranslate2", metavar="DIR", default=None,
                   help="decode with this CTranslate2 export of the release's model (babelflow export) "
                        "instead of PyTorch; needs the ctranslate2 package")
    t.add_argument("--quantization", default=None, metavar="TYPE",
                   help="with --ctranslate2: the compute type to decode in, e.g. int8, int8_float32, float32, "
                        "float16 on a GPU (default: the type the export was saved in)")
    t.set_defaults(func=cmd_translate)

    r = sub.add_parser("release", help="tag the current DVC state as a versioned release",
                       description=paragraph("Check that `dvc status` is clean and the tracked files are committed, "
                                   "commit dvc.lock, push the DVC cache, then tag vX.Y.Z (a failed push "
                                   "leaves no tag, so the command can be run again)."),
                       epilog=examples("babelflow release --version 1.0.0",
                                       "babelflow release --version 1.0.1 --remote backup",
                                       "git checkout v1.0.0 && dvc pull   # restore a release"))
    r.add_argument("--version", required=True, help="X.Y.Z; the git tag is vX.Y.Z")
    r.add_argument("--remote", default=None, help="DVC remote (default: the configured default)")
    r.add_argument("--no-push", action="store_true", help="do not run dvc push")
    r.add_argument("--root", default=".", help="project root (git + DVC repository; default: .)")
    r.set_defaults(func=cmd_release)

    s = sub.add_parser("schedule", help="serve the pipeline as a scheduled Prefect deployment",
                       description=paragraph("Register the pipeline as a Prefect deployment with the API in "
                                   "PREFECT_API_URL and run its scheduled flow runs in this process "
                                   "(blocks; Ctrl-C stops serving)."),
                       epilog=examples('babelflow schedule --cron "0 3 * * *" --timezone Europe/Paris',
                                       "babelflow schedule --stages collect clean   # schedule.cron of params.yaml"))
    s.add_argument("--cron", default=None, help='e.g. "0 3 * * *" (default: schedule.cron in params.yaml)')
    s.add_argument("--root", default=".", help="project root (default: .)")
    s.add_argument("--name", default=None, help="deployment name (default: schedule.deployment in params.yaml)")
    s.add_argument("--timezone", default=None,
                   help="IANA time zone of --cron, e.g. Europe/Paris (default: schedule.timezone in params.yaml)")
    s.add_argument("--stages", nargs="*", default=None, metavar="STAGE",
                   help="subset of stages each run runs, in order (default: all)")
    s.set_defaults(func=cmd_schedule)

    p = sub.add_parser("run", help="run the pipeline once as a Prefect flow",
                       description=paragraph("Run the pipeline once as a Prefect flow, one task run per DVC stage "
                                   "(`dvc repro --single-item STAGE`; DVC skips the stages that are up to "
                                   "date). The `inputs` stage always runs first."),
                       epilog=examples("babelflow run", "babelflow run --stages evaluate release"))
    p.add_argument("--root", default=".", help="project root (default: .)")
    p.add_argument("--stages", nargs="*", default=None, metavar="STAGE",
                   help="subset of stages, in order (default: all)")
    p.set_defaults(func=cmd_run)

    c = sub.add_parser("recipe", help="make a recipe (recipes/NAME.yaml) the project's params.yaml",
                       description=paragraph("Copy recipes/NAME.yaml to params.yaml after checking it, so `dvc repro` "
                                             "runs it (`make run RECIPE=NAME` does both). params.yaml is replaced "
                                             "only while it is a copy of a recipe: settings of your own are never "
                                             "overwritten. Without NAME: list the recipes, marking the one in use."),
                       epilog=examples("make run RECIPE=multi30k-ende", "babelflow recipe multi30k-ende && dvc repro",
                                       "babelflow recipe"))
    c.add_argument("name", nargs="?", default=None, metavar="NAME", help="recipe name (its file without .yaml)")
    c.add_argument("--root", default=".", help="project root (default: .)")
    c.set_defaults(func=cmd_recipe)

    m = sub.add_parser("summary", help="the last run's scores, adaptation table and release, in one screen",
                       description=paragraph("Per-pair BLEU / chrF++ / TER with n, the adaptation table and how "
                                             "to translate with the release, read from a project's outputs."),
                       epilog=examples("babelflow summary", "babelflow summary --root ../project --format markdown"))
    m.add_argument("--root", default=".", help="project root (default: the current folder)")
    m.add_argument("--format", choices=["text", "markdown"], default="text",
                   help="text for a terminal (default) or markdown")
    m.set_defaults(func=cmd_summary)

    # Every option (--release, --output, --force, --quantization) and --help belong to the exporter
    # (babelflow.export.build_parser), so they are stated once.
    e = sub.add_parser("export", help="export a model for fast inference", add_help=False)
    e.add_argument("--format", choices=["ctranslate2"])
    e.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        # As pip and prefect do: asking with no command is asking what the tool does, not a mistake.
        parser.print_help()
        return 0
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.error("a command is required")
    if rest and args.command != "export":
        parser.error("unrecognized arguments: " + " ".join(rest))
    args.rest = rest
    if getattr(args, "chunk", 1) < 1:
        print("babelflow translate: error: --chunk must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (BabelflowError, ConfigError) as exc:
        print(f"babelflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0  # `babelflow translate ... | head` closed the pipe: not an error
    except KeyboardInterrupt:
        # Ctrl-C: every output is written to a temporary file renamed into place at the end, so the
        # interrupted one is gone with nothing half-written. 130 = 128 + SIGINT, as a shell reports it.
        print(f"babelflow {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        from babelflow.io import disk_full_message

        message = disk_full_message(exc)
        if message is None:
            raise
        print(f"babelflow {args.command}: error: {message}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
