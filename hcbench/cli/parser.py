"""The ``hcbench`` argument parser: every sub-command and option with its default, in one place
(the handlers are in :mod:`hcbench.cli.commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hcbench import __version__
from hcbench.cli.commands import (
    cmd_clean,
    cmd_data_check,
    cmd_data_convert,
    cmd_data_synth,
    cmd_export,
    cmd_inspect,
    cmd_leaderboard,
    cmd_list,
    cmd_pretrain,
    cmd_regress,
    cmd_report,
    cmd_run,
    cmd_score,
    cmd_submit,
    cmd_table,
)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x192, got {text!r}") from e
    return h, w


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as route_weight=[0.2,0.02], got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


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
    s.add_argument("--jobs", type=int, metavar="N",
                   help="runs at once (local: processes sharing the cores; default: one per core for CPU "
                        "runs, one on a GPU or under torchrun; slurm: array parallelism, default 1)")
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
