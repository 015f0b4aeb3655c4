"""The handlers of the ``hcbench`` sub-commands: each takes the parsed arguments, calls library
functions and prints what they return. Heavy modules are imported inside the handlers so that
``hcbench --help`` stays instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    from hcbench.pretrain import get_method
    from hcbench.pretrain.runner import PretrainConfig, pretrain

    for spec in (args.student, args.teacher):  # a typo fails here, not after the image scan
        if spec:
            check_backbone_spec(spec)
    cfg = PretrainConfig(
        method=args.method, images=args.images, name=args.name, student=args.student, teacher=args.teacher,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        betas=tuple(args.betas), warmup=args.warmup, min_lr=args.min_lr, clip_grad=args.clip_grad,
        method_options=get_method(args.method).Options.from_text(args.size, args.option, f"pretrain {args.method}"), resume=args.resume,
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
