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


class UsageError(Exception):
    """Bad input the user can fix; printed without a traceback, exit code 2."""


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

    list_what(args.what, input_size=args.input, pattern=args.pattern, fmt=args.format)
    return 0


# --------------------------------------------------------------------------- leaderboard
def cmd_leaderboard(args) -> int:
    from hcbench.results.leaderboard import leaderboard_frame, render

    board = leaderboard_frame(args.results, suite=args.suite, tier=args.tier)
    print(render(board, args.format, tty=sys.stdout.isatty()))
    return 0


# --------------------------------------------------------------------------- data
def cmd_data_check(args) -> int:
    from hcbench.data.check import check_dataset, print_report

    report = check_dataset(args.dataset, root=args.root, limit=args.limit)
    print_report(report)
    return 0 if report.ok else 1


def cmd_data_synth(args) -> int:
    from hcbench.synth import write_suite

    paths = write_suite(args.out, size=args.size, seed=args.seed, preview=args.preview)
    for name, path in paths.items():
        print(f"{name:16s} {path}")
    return 0


# --------------------------------------------------------------------------- score
def cmd_score(args) -> int:
    from hcbench import score as S

    if args.family == "pose":
        out = S.score_pose(args.gt, args.pred, sigmas=args.sigmas, backend=args.backend, crowd=args.crowd)
    elif args.family == "parsing":
        out = S.score_parsing(args.gt, args.pred, num_classes=args.num_classes, ignore_index=args.ignore_index)
    elif args.family == "reid":
        out = S.score_reid(args.pred, metric=args.metric)
    elif args.family == "attributes":
        out = S.score_attributes(args.gt, args.pred, threshold=args.threshold)
    else:
        out = S.score_detection(args.gt, args.pred)
    print(json.dumps(out, indent=2))
    return 0


# --------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from hcbench.engine.runner import run_from_args

    return run_from_args(args)


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
    from hcbench.results.regress import regress_main

    return regress_main(args)


def cmd_report(args) -> int:
    from hcbench.results.report import write_report

    path = write_report(args.results, suite=args.suite, out=args.out)
    print(f"wrote {path}")
    return 0


def cmd_pretrain(args) -> int:
    from hcbench.pretrain.runner import pretrain_from_args

    return pretrain_from_args(args)


def cmd_export(args) -> int:
    from hcbench.pretrain.export import export_finetuned

    folder = export_finetuned(args.record, args.name)
    print(f"exported the backbone of {args.record} to {folder} -> use --backbone student:{args.name}")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hcbench", description="Benchmark harness for human-centric vision backbones.")
    p.add_argument("--version", action="version", version=f"hcbench {__version__}")
    p.add_argument("--include", action="append", default=[], metavar="PATH",
                   help="import a Python file that registers backbones/adapters/datasets (repeatable)")
    p.add_argument("--quiet", action="store_true", help="plain output, no progress bars")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list backbones, cards, suites or datasets")
    s.add_argument("what", choices=["backbones", "cards", "suites", "datasets"])
    s.add_argument("--input", type=_size, default=(256, 192), metavar="HxW", help="input size for params/FLOPs")
    s.add_argument("--pattern", default="*", help="wildcard filter on names")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("leaderboard", help="one row per backbone, one column per card")
    s.add_argument("--results", type=Path, default=Path("results"))
    s.add_argument("--suite")
    s.add_argument("--tier", help="only records of this tier (default: the tier most records have)")
    s.add_argument("--format", choices=["table", "markdown", "csv", "json", "html"], default="table")
    s.set_defaults(func=cmd_leaderboard)

    data = sub.add_parser("data", help="dataset checks and the synthetic suite").add_subparsers(
        dest="data_command", required=True, metavar="ACTION")
    s = data.add_parser("check", help="verify a dataset copy against its card")
    s.add_argument("dataset")
    s.add_argument("--root", type=Path, help="dataset folder (default $HCBENCH_DATA/<dataset>)")
    s.add_argument("--limit", type=int, help="decode at most this many images per split")
    s.set_defaults(func=cmd_data_check)
    s = data.add_parser("synth", help="write the synthetic suite in the real on-disk formats")
    s.add_argument("--out", type=Path, default=Path("synth_data"))
    s.add_argument("--size", choices=["smoke", "small"], default="smoke")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--preview", type=Path, help="also draw a few annotated samples into this folder")
    s.set_defaults(func=cmd_data_synth)

    s = sub.add_parser("score", help="metrics from prediction files (JSON on stdout)")
    fam = s.add_subparsers(dest="family", required=True, metavar="FAMILY")
    f = fam.add_parser("pose")
    f.add_argument("--gt", type=Path, required=True)
    f.add_argument("--pred", type=Path, required=True)
    f.add_argument("--sigmas", default="coco", help="coco|aic|crowdpose|mpii|FILE")
    f.add_argument("--crowd", action="store_true",
                   help="CrowdPose protocol: maxDets 20, no area ranges, AP easy/medium/hard by crowdIndex")
    f.add_argument("--backend", choices=["pycocotools", "faster-coco-eval"], default="pycocotools")
    f = fam.add_parser("parsing")
    f.add_argument("--gt", type=Path, required=True)
    f.add_argument("--pred", type=Path, required=True)
    f.add_argument("--num-classes", type=int, required=True)
    f.add_argument("--ignore-index", type=int, default=255)
    f = fam.add_parser("reid")
    f.add_argument("--pred", type=Path, required=True)
    f.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine")
    f = fam.add_parser("attributes")
    f.add_argument("--gt", type=Path, required=True)
    f.add_argument("--pred", type=Path, required=True)
    f.add_argument("--threshold", type=float, default=0.5)
    f = fam.add_parser("detection")
    f.add_argument("--gt", type=Path, required=True)
    f.add_argument("--pred", type=Path, required=True)
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("run", help="fine-tune and evaluate a backbone on cards or a suite")
    s.add_argument("--backbone", required=True, help="vit_tiny | timm:<name> | file:<path> | student:<name>")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--card", action="append", help="card name (repeatable)")
    g.add_argument("--suite")
    s.add_argument("--tier", choices=["full", "quick", "smoke"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--root", type=Path, help="dataset root (default $HCBENCH_DATA/<dataset>)")
    s.add_argument("--synth", type=Path, help="generate the synthetic suite here first if missing (smoke runs)")
    s.add_argument("--out", type=Path, default=Path("results"))
    s.add_argument("--work-dir", type=Path, default=Path("runs"), help="checkpoints and logs")
    s.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    s.add_argument("--force", action="store_true", help="re-run even when a valid record exists")
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
    s.add_argument("--lr", type=float, default=1.5e-4)
    s.add_argument("--resume", action="store_true")
    s.add_argument("--work-dir", type=Path, default=Path("runs/pretrain"))
    s.add_argument("--size", choices=["full", "small"], help="view sizes: full (256x128 person view) or small")
    s.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps")
    s.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    s.add_argument("--backgrounds", type=Path, help="background images for the multi-person canvas")
    s.add_argument("--multi-person", type=Path, help="real multi-person images for the canvas")
    s.add_argument("--device")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("export", help="export the backbone of a finished run as student:<NAME> (e.g. a teacher)")
    s.add_argument("record", type=Path, help="the run's result record (results/<suite>/<backbone>/<card>.json)")
    s.add_argument("--name", required=True)
    s.set_defaults(func=cmd_export)

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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        os.environ["HCBENCH_QUIET"] = "1"
    from hcbench.registry import include

    try:
        for path in args.include:
            include(path)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors: one clear line, no traceback
        if _is_user_error(e) and not os.environ.get("HCBENCH_DEBUG"):
            print(f"hcbench: error: {e}", file=sys.stderr)
            return 2
        raise


def _is_user_error(e: Exception) -> bool:
    from hcbench.registry import RegistryError

    return isinstance(e, (UsageError, RegistryError, ValueError, FileNotFoundError, KeyError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
