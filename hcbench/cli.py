"""The ``hcbench`` command. Thin: parses arguments and calls library functions.

Heavy modules are imported inside the handlers so ``hcbench --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hcbench import __version__
from hcbench.errors import UserError, worker_message


class UsageError(UserError):
    """Bad command-line input; printed without a traceback, exit code 2."""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x192, got {text!r}") from e
    return h, w


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- list
def cmd_list(args) -> int:
    from hcbench.listing import list_what

    out = list_what(args.what, input_size=args.input, pattern=args.pattern, fmt=args.format)
    if isinstance(out, str):
        print(out)
    else:
        from rich.console import Console

        Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(out)
    return 0


# --------------------------------------------------------------------------- inspect
def cmd_inspect(args) -> int:
    import yaml

    from hcbench.backbones.inspect import inspect_checkpoint

    out = inspect_checkpoint(args.checkpoint, architecture=args.architecture, img_size=args.input)
    if args.format == "json":
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(f"checkpoint: {out['path']} ({out['tensors']} tensors)")
    print(f"layout:     {out['layout']}" + (f" (converted: {out['remapped']})" if out["remapped"] else ""))
    print("card:       " + ("none (no sidecar, no safetensors metadata)" if out["card"] is None else
                            json.dumps(out["card"])))
    print("suggested sidecar (" + Path(out["path"]).name + ".yaml):")
    print("  " + yaml.safe_dump(out["suggested_card"], sort_keys=False).strip().replace("\n", "\n  "))
    if out["alternatives"]:
        print(f"  # same keys also fit: {', '.join(out['alternatives'])}")
    r = out.get("report")
    if r is None:
        print(out.get("note", ""))
        return 0
    c = r["counts"]
    print(f"load report ({out['architecture']} at {out['input_size'][0]}x{out['input_size'][1]}): "
          f"{c['loaded']} loaded, {c['dropped']} dropped, {c['missing']} missing, {c['unexpected']} unexpected, "
          f"{c['resampled']} resampled" + (f", {c['mismatched']} of another shape" if c["mismatched"] else ""))
    for what in ("dropped", "missing", "unexpected", "mismatched"):
        if r[what]:
            print(f"  {what}: " + ", ".join(r[what][:12]) + (" ..." if len(r[what]) > 12 else ""))
    for k, (a, b) in r["interpolated"].items():
        print(f"  resampled: {k} {a} -> {b}")
    return 0


# --------------------------------------------------------------------------- leaderboard
def cmd_leaderboard(args) -> int:
    from hcbench.results.board_render import render
    from hcbench.results.leaderboard import leaderboard_frame

    board = leaderboard_frame(args.results, suite=args.suite, tier=args.tier, strict=args.strict)
    print(render(board, args.format, tty=sys.stdout.isatty()))
    return 0


# --------------------------------------------------------------------------- data
def cmd_data_check(args) -> int:
    from hcbench.data.check import check_dataset, print_report

    report = check_dataset(args.dataset, root=args.root, limit=args.limit, quiet=args.quiet, full=args.full)
    print_report(report, _console())
    return 0 if report.ok else 1


def cmd_data_synth(args) -> int:
    from hcbench.synth import write_suite

    datasets = args.datasets.split(",") if args.datasets else None
    paths = write_suite(args.out, size=args.size, seed=args.seed, preview=args.preview, datasets=datasets)
    for name, path in paths.items():
        print(f"{name:16s} {path}")
    return 0


def cmd_data_convert(args) -> int:
    from hcbench.data.readers.par_pickle import convert_to_json

    path = convert_to_json(args.src, args.out or args.src.with_suffix(".json"))
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------- score
def cmd_score(args) -> int:
    from hcbench.families.base import get_family
    from hcbench.score import score_family

    options = {a.dest: getattr(args, a.dest) for a in get_family(args.family).score_args}
    out = score_family(args.family, args.pred, args.gt, card=args.card, tier=args.tier, **options)
    print(json.dumps(out, indent=2))
    return 0


def _add_score_parsers(s: argparse.ArgumentParser) -> None:
    """``hcbench score <family>`` for every registered family, options declared by the family."""
    from hcbench.families.base import families

    fam = s.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for family in families():
        f = fam.add_parser(family.name, help=family.score_help or family.description)
        f.add_argument("--pred", type=Path, required=True, help="the predictions file (or folder)")
        f.add_argument("--gt", type=Path, help="ground truth: a file, or with --card the dataset root")
        f.add_argument("--card", help="protocol card (name or .yaml path): every protocol option comes from it")
        f.add_argument("--tier", choices=["full", "quick", "smoke"], default="full",
                       help="with --card: the tier whose eval split the predictions cover (smoke: eval_limit)")
        for a in family.score_args:
            if a.flag_only:
                f.add_argument(a.flag, dest=a.dest, action="store_true", help=a.help)
            else:
                f.add_argument(a.flag, dest=a.dest, type=a.type, default=a.default, choices=a.choices,
                               required=a.required, help=a.help)
    s.set_defaults(func=cmd_score)


# --------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    import time

    from hcbench.backbones.validate import check_backbone_spec
    from hcbench.cards import get_card, get_suite, suite_cards
    from hcbench.engine import distributed as D
    from hcbench.engine.executors import ExecutorConfig, run_specs
    from hcbench.engine.progress import Progress
    from hcbench.engine.spec import RunSpec
    from hcbench.engine.threads import cpu_seconds

    suite = get_suite(args.suite) if args.suite else None
    # an incomplete suite (cards other work has not added yet) stops here, before any training
    cards = suite_cards(suite, allow_missing=args.allow_missing) if suite else args.card
    tier = args.tier or (suite.tier if suite else "full")
    for name in cards:  # fail before any training on a typo
        get_card(name)
    check_backbone_spec(args.backbone)  # a misspelt backbone is one error, not a failure record per card
    specs = [RunSpec(backbone=args.backbone, card=c, tier=tier, seed=args.seed, suite=args.suite or "adhoc",
                     root=args.root, out=args.out, work_dir=args.work_dir, synth_dir=args.synth or Path("synth_data"),
                     device=args.device, force=args.force, checkpoint_every=args.checkpoint_every,
                     workers=args.workers) for c in cards]
    executor = ExecutorConfig(kind=args.executor, jobs=args.jobs, work_dir=args.work_dir,
                              slurm_partition=args.slurm_partition, slurm_time=args.slurm_time,
                              slurm_gpus=args.slurm_gpus)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    progress = Progress(plain=True if args.quiet else None)
    try:
        failures = run_specs(specs, executor, progress)
    finally:
        progress.close()
    if D.is_main():
        if not args.no_leaderboard:
            from hcbench.results.board_render import render
            from hcbench.results.leaderboard import leaderboard_frame

            board = leaderboard_frame(args.out, suite=args.suite or "adhoc", tier=tier)
            print(render(board, "table", tty=sys.stdout.isatty()))
        # CPU: this process and the pool/loader processes it waited for (not Slurm jobs)
        print(f"{len(specs)} run(s), {failures} failed: wall {time.perf_counter() - t0:.1f} s, "
              f"CPU {cpu_seconds() - cpu0:.1f} s", file=sys.stderr)
        print(f"records in {Path(args.out) / (args.suite or 'adhoc')}/, checkpoints in {args.work_dir}/ "
              "(`hcbench leaderboard`, `hcbench clean`)", file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------- products
def cmd_table(args) -> int:
    from hcbench.results.table import render_table

    backbones = args.backbones.split(",") if args.backbones else None
    print(render_table(args.results, suite=args.suite, fmt=args.format, backbones=backbones, metrics=args.metrics))
    return 0


def cmd_submit(args) -> int:
    from hcbench.results import submit

    if args.action == "pack":
        path = submit.pack(args.results, args.out, suite=args.suite)
        print(f"wrote {path}")
        return 0
    problems = submit.validate(args.bundle, rescore=args.rescore, root=args.root)
    for p in problems:
        print(f"FAIL {p}")
    print("bundle is valid" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def cmd_regress(args) -> int:
    from hcbench.results.regress import format_table, regress

    cmp = regress(args.baseline, args.current, args.tolerance, args.metrics, junit=args.junit,
                  markdown=args.markdown)
    print(format_table(cmp))
    if cmp.exit_code == 2:
        print("hcbench regress: unusable input: " + "; ".join(cmp.not_comparable), file=sys.stderr)
    return cmp.exit_code


def cmd_report(args) -> int:
    from hcbench.results.report import write_report

    path = write_report(args.results, suite=args.suite, out=args.out)
    print(f"wrote {path}")
    return 0


def cmd_pretrain(args) -> int:
    import time

    from hcbench.backbones.validate import check_backbone_spec
    from hcbench.engine import distributed as D
    from hcbench.engine.progress import Progress
    from hcbench.pretrain.runner import PretrainConfig, pretrain

    for spec in (args.student, args.teacher):  # a typo fails here, not after the image scan
        if spec:
            check_backbone_spec(spec)
    cfg = PretrainConfig(
        method=args.method, images=args.images, name=args.name, student=args.student, teacher=args.teacher,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        betas=tuple(args.betas), warmup=args.warmup, min_lr=args.min_lr, clip_grad=args.clip_grad,
        method_options=_method_options(args.method, args.size, args.option), resume=args.resume,
        work_dir=args.work_dir, device=args.device, seed=args.seed, size=args.size,
        checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, backgrounds=args.backgrounds,
        multi_person=args.multi_person, workers=args.workers)
    t0 = time.perf_counter()
    progress = Progress(plain=True if args.quiet else None)
    try:
        folder = pretrain(cfg, progress)
    finally:
        progress.close()
    if D.is_main():
        print(json.dumps({"student": f"student:{cfg.name}", "folder": str(folder),
                          "wall_s": round(time.perf_counter() - t0, 1)}))
    return 0


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as route_weight=[0.2,0.02], got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


def _method_options(method: str, size: str, given: list[tuple[str, str]]) -> dict:
    """``--option KEY=VALUE`` pairs checked against the method's options (before any image is read):
    an unknown key or a value of the wrong type is a usage error that lists what the method takes.
    Values are YAML (``0.2``, ``[0.1, 0.01]``, ``null``) converted to the type of the option's
    default, so ``1e-4`` is a float and a list becomes the tuple the option holds."""
    import dataclasses

    import yaml

    from hcbench.pretrain import get_method

    if not given:
        return {}
    options_cls = get_method(method).Options
    base = options_cls.preset(size)
    known = {f.name: getattr(base, f.name) for f in dataclasses.fields(options_cls)}
    out = {}
    for key, text in given:
        if key not in known:
            listing = ", ".join(f"{k}={v!r}" for k, v in known.items())
            raise UsageError(f"pretrain {method}: unknown --option {key!r}; the {size} preset's options: {listing}")
        try:
            out[key] = _like(yaml.safe_load(text), known[key])
        except (TypeError, ValueError, yaml.YAMLError) as e:
            raise UsageError(f"pretrain {method}: --option {key}={text}: {e} (default: {known[key]!r})") from None
    options_cls.preset(size, **out)  # the options' own checks
    return out


def _like(value, default):
    """``value`` as the type of ``default`` (None: anything the YAML gave)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        if isinstance(default, int) and not (isinstance(value, int) or float(value).is_integer()):
            raise TypeError(f"expected an integer, got {value!r}")
        return type(default)(value if not isinstance(value, str) else float(value))
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise TypeError(f"expected {len(default)} values such as {list(default)}, got {value!r}")
        return tuple(_like(v, d) for v, d in zip(value, default, strict=True))
    if isinstance(default, str):
        return str(value)
    raise TypeError(f"cannot set an option of type {type(default).__name__} from the command line")


def cmd_export(args) -> int:
    from hcbench.pretrain.export import export_finetuned

    folder = export_finetuned(args.record, args.name)
    print(f"exported the backbone of {args.record} to {folder} -> use --backbone student:{args.name}")
    return 0


def cmd_clean(args) -> int:
    from hcbench.engine.clean import human_size, remove_run_folders, run_folders

    found = run_folders(args.work_dir, older_than_days=args.older_than)
    total = sum(f.bytes for f in found)
    for f in found:
        print(f"{human_size(f.bytes):>10}  {f.age_days:5.1f} d  {f.path}")
    if not found:
        print(f"no checkpoint folders under {args.work_dir}" +
              (f" older than {args.older_than:g} days" if args.older_than else ""))
        return 0
    if not args.yes:
        print(f"{len(found)} folder(s), {human_size(total)} would be removed; pass --yes to remove them "
              "(result records are never touched)")
        return 0
    freed = remove_run_folders(found)
    print(f"removed {len(found)} folder(s), freed {human_size(freed)}")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hcbench", description="Benchmark harness for human-centric vision backbones.")
    p.add_argument("--version", action="version", version=f"hcbench {__version__}")
    p.add_argument("--include", action="append", default=[], metavar="PATH",
                   help="import a Python file that registers backbones/adapters/datasets (repeatable)")
    p.add_argument("--quiet", action="store_true", help="plain output, no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list backbones, cards, suites, datasets or task families")
    s.add_argument("what", choices=["backbones", "cards", "suites", "datasets", "families"])
    s.add_argument("--input", type=_size, default=(256, 192), metavar="HxW", help="input size for params/FLOPs")
    s.add_argument("--pattern", default="*", help="wildcard filter on names")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("inspect", help="a checkpoint's key layout, suggested sidecar card and load report")
    s.add_argument("checkpoint", type=Path, help=".safetensors / .pth file")
    s.add_argument("--architecture", help="load into this architecture instead of the card's or the suggested one")
    s.add_argument("--input", type=_size, default=None, metavar="HxW", help="input size (default: the release's)")
    s.add_argument("--format", choices=["text", "json"], default="text")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("leaderboard", help="one row per backbone, one column per card")
    s.add_argument("--results", type=Path, default=Path("results"))
    s.add_argument("--suite")
    s.add_argument("--tier", help="only records of this tier (default: the tier most records have)")
    s.add_argument("--format", choices=["table", "markdown", "csv", "json", "html"], default="table")
    s.add_argument("--strict", action="store_true",
                   help="refuse records whose backbone checkpoint loaded with tensors missing (sidecar strict: false)")
    s.set_defaults(func=cmd_leaderboard)

    data = sub.add_parser("data", help="dataset checks and the synthetic suite").add_subparsers(
        dest="data_command", required=True, metavar="ACTION")
    s = data.add_parser("check", help="verify a dataset copy against its card")
    s.add_argument("dataset")
    s.add_argument("--root", type=Path, help="dataset folder (default $HCBENCH_DATA/<dataset>)")
    s.add_argument("--limit", type=int, help="decode at most this many images per split")
    s.add_argument("--full", action="store_true",
                   help="decode every image and compare its size with the declared one (default: a sample of 200 per split)")
    s.set_defaults(func=cmd_data_check)
    s = data.add_parser("synth", help="write the synthetic suite in the real on-disk formats")
    s.add_argument("--out", type=Path, default=Path("synth_data"))
    s.add_argument("--size", choices=["smoke", "small"], default="smoke")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--preview", type=Path, help="also draw a few annotated samples into this folder")
    s.add_argument("--datasets", help="comma-separated synthetic datasets to write (default: every family's)")
    s.set_defaults(func=cmd_data_synth)
    s = data.add_parser("convert", help="rewrite a dataset file in a safe format (e.g. a split pickle as JSON)")
    s.add_argument("format", choices=["par-pickle"],
                   help="par-pickle: a Rethinking-of-PAR dataset pickle (PETA-zs, RAP-zs), read without running code")
    s.add_argument("src", type=Path)
    s.add_argument("--out", type=Path, help="output JSON (default: SRC with .json)")
    s.set_defaults(func=cmd_data_convert)

    s = sub.add_parser("score", help="metrics from prediction files (JSON on stdout)")
    _add_score_parsers(s)

    s = sub.add_parser("run", help="fine-tune and evaluate a backbone on cards or a suite")
    s.add_argument("--backbone", required=True, help="vit_tiny | timm:<name> | file:<path> | student:<name>")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--card", action="append", help="card name (repeatable)")
    g.add_argument("--suite")
    s.add_argument("--allow-missing", action="store_true",
                   help="run an incomplete suite's existing cards (default: refuse and list the missing ones)")
    s.add_argument("--tier", choices=["full", "quick", "smoke"],
                   help="budget tier (default: the suite's own tier with --suite -- smoke for the smoke suite; "
                        "full with --card: the card's whole published schedule, hours on a GPU for a real "
                        "dataset; pass --tier smoke for a minutes-long first try)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--root", type=Path, help="dataset root (default $HCBENCH_DATA/<dataset>)")
    s.add_argument("--synth", type=Path, help="generate the synthetic suite here first if missing (smoke runs)")
    s.add_argument("--out", type=Path, default=Path("results"),
                   help="result records go to OUT/<suite>/<backbone>/<card>[.<tier>][.s<seed>].json")
    s.add_argument("--work-dir", type=Path, default=Path("runs"),
                   help="checkpoints and logs (`hcbench clean` removes old ones)")
    s.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    s.add_argument("--force", action="store_true",
                   help="re-run from scratch even when a valid record or a complete checkpoint exists")
    s.add_argument("--workers", type=int, metavar="N", help="DataLoader workers (default: sized from the cores)")
    s.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="also checkpoint every N optimizer steps (default: every epoch)")
    s.add_argument("--no-leaderboard", action="store_true")
    s.add_argument("--executor", choices=["local", "slurm"], default="local")
    s.add_argument("--jobs", type=int, default=1, help="local executor: parallel runs")
    s.add_argument("--slurm-partition")
    s.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes")
    s.add_argument("--slurm-gpus", type=int, default=1)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("pretrain", help="pretrain a student with DPAL, SAIP or a baseline")
    s.add_argument("method", help="dpal | saip | feature-kd | random")
    s.add_argument("--student", default="vit_tiny")
    s.add_argument("--teacher")
    s.add_argument("--images", type=Path, required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--epochs", type=int, default=100)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=1.5e-4, help="peak learning rate, not scaled by the batch size")
    s.add_argument("--weight-decay", type=float, default=0.05)
    s.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95), metavar=("B1", "B2"), help="AdamW betas")
    s.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps spent warming up")
    s.add_argument("--min-lr", type=float, default=0.0, help="learning rate at the end of the cosine")
    s.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the gradient norm (default: no clipping)")
    s.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, e.g. route_weight=[0.2,0.02] for dpal (repeatable; an unknown key "
                        "lists the method's options and their defaults)")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--work-dir", type=Path, default=Path("runs/pretrain"))
    s.add_argument("--size", choices=["full", "small"], default="full",
                   help="view and head sizes: full (the papers', 256x128 person view) or small (CPU runs)")
    s.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps")
    s.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    s.add_argument("--backgrounds", type=Path, help="background images for the multi-person canvas")
    s.add_argument("--multi-person", type=Path, help="real multi-person images for the canvas")
    s.add_argument("--workers", type=int, metavar="N", help="DataLoader workers (default: sized from the cores)")
    s.add_argument("--device")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("export", help="export the backbone of a finished run as student:<NAME> (e.g. a teacher)")
    s.add_argument("record", type=Path, help="the run's result record (results/<suite>/<backbone>/<card>[.<tier>][.s<seed>].json)")
    s.add_argument("--name", required=True)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("clean", help="list (and with --yes remove) old training checkpoints under runs/")
    s.add_argument("--work-dir", type=Path, default=Path("runs"), help="the runs' work folder (hcbench run --work-dir)")
    s.add_argument("--older-than", type=float, default=0.0, metavar="DAYS",
                   help="only folders whose newest file is at least DAYS old")
    s.add_argument("--yes", action="store_true", help="remove them (without it: only list what would go)")
    s.set_defaults(func=cmd_clean)

    s = sub.add_parser("table", help="paper table (LaTeX/Markdown): best bold, second underlined")
    s.add_argument("--results", type=Path, default=Path("results"))
    s.add_argument("--suite", required=True)
    s.add_argument("--format", choices=["latex", "markdown"], default="latex")
    s.add_argument("--backbones", help="comma-separated backbone specs, in row order")
    s.add_argument("--metrics", choices=["primary", "all"], default="primary")
    s.set_defaults(func=cmd_table)

    s = sub.add_parser("submit", help="pack or validate a leaderboard submission bundle")
    act = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = act.add_parser("pack")
    a.add_argument("--results", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--suite")
    a = act.add_parser("validate")
    a.add_argument("bundle", type=Path)
    a.add_argument("--rescore", action="store_true", help="recompute metrics from shipped predictions")
    a.add_argument("--root", type=Path, help="ground-truth data root for --rescore")
    s.set_defaults(func=cmd_submit)

    s = sub.add_parser("regress", help="compare two result trees; exit 1 on a regression")
    s.add_argument("--baseline", type=Path, required=True)
    s.add_argument("--current", type=Path, required=True)
    s.add_argument("--tolerance", type=float, default=0.5, help="allowed worsening, in points (percent)")
    s.add_argument("--metrics", choices=["primary", "all"], default="primary")
    s.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    s.add_argument("--markdown", type=Path, help="write a Markdown summary here")
    s.set_defaults(func=cmd_regress)

    s = sub.add_parser("report", help="self-contained HTML report with charts")
    s.add_argument("--results", type=Path, default=Path("results"))
    s.add_argument("--suite", required=True)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_report)
    _document_defaults(p)
    return p


def _shown_default(action: argparse.Action) -> str | None:
    d = action.default
    if d is None or d is False or d == [] or d == argparse.SUPPRESS or action.required:
        return None
    if action.type is _size and isinstance(d, tuple):
        return f"{d[0]}x{d[1]}"
    return str(d)


def _document_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's default in its ``--help`` line (``(default: X)``), unless the help text
    already says it in words; sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _document_defaults(sub)
            continue
        shown = _shown_default(action)
        if shown is None or "default" in (action.help or "").lower():
            continue
        note = f"(default: {shown})".replace("%", "%%")
        action.help = f"{action.help} {note}" if action.help else note


def _includes(argv: list[str]) -> list[str]:
    """The ``--include`` files, read before the full parser is built: a plugin's family adds its
    own ``hcbench score <family>`` sub-command."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--include", action="append", default=[])
    return pre.parse_known_args(argv)[0].include


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from hcbench.registry import include

    try:
        for path in _includes(argv):
            include(path)
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user errors: one clear line, no traceback; anything else is a bug and keeps it
        if _is_user_error(e) and not os.environ.get("HCBENCH_DEBUG"):
            print(f"hcbench: error: {_message(e)}", file=sys.stderr)
            return 2
        raise


def _is_user_error(e: BaseException) -> bool:
    """A :class:`~hcbench.errors.UserError`, or a file the user named that cannot be opened
    (the OS error carries the path). Builtin ``ValueError``/``KeyError``/``RuntimeError`` from
    hcbench's own code are bugs: they keep their traceback."""
    return isinstance(e, (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError))


def _message(e: BaseException) -> str:
    # KeyError subclasses (RegistryError) would print their message quoted; an error re-raised
    # from a DataLoader worker carries the worker's traceback as its text: its last line is the message
    return worker_message(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))


if __name__ == "__main__":
    sys.exit(main())
