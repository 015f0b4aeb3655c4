"""``hcbench run``: one run = (backbone, card, tier, seed) -> one result record.

The effective configuration of a run (resolved card, backbone, seed, data root, device) is
written next to its record as ``<card>.config.json``; the record itself is written last and
atomically, so a record on disk always describes a finished run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hcbench import __version__
from hcbench.adapters.base import get_adapter
from hcbench.backbones import build_backbone
from hcbench.backbones.stats import count_params, gflops
from hcbench.cards import TaskCard, get_card, get_suite, resolve
from hcbench.data.cards import get_dataset_card
from hcbench.data.types import DatasetSplit
from hcbench.engine import distributed as D
from hcbench.engine.loops import fit, predict_split, seed_everything
from hcbench.engine.progress import Progress
from hcbench.results.schema import ResultRecord
from hcbench.results.store import (
    RecordError,
    atomic_write_json,
    backbone_dirname,
    read_record,
    record_path,
    sha256_file,
    write_record,
)

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pycocotools", "faster_coco_eval", "scipy", "pillow")


@dataclass
class RunSpec:
    backbone: str
    card: str
    tier: str = "full"
    seed: int = 0
    suite: str = "adhoc"
    root: Path | None = None
    out: Path = Path("results")
    work_dir: Path = Path("runs")
    synth_dir: Path = Path("synth_data")
    device: str | None = None
    force: bool = False
    train: bool = True  # False: evaluate the untrained model (a chance baseline for tests)
    checkpoint_every: int | None = None


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_root(dataset: str, root: Path | None, synth_dir: Path) -> Path:
    """``--root`` (or its ``<dataset>`` sub-folder), else ``$HCBENCH_DATA/<dataset>``; synthetic
    datasets default to ``<synth_dir>/<dataset>`` and are generated there when missing."""
    card = get_dataset_card(dataset)
    if root is not None:
        return root / dataset if (root / dataset).is_dir() else root
    env = os.environ.get("HCBENCH_DATA")
    if env and (Path(env) / dataset).is_dir():
        return Path(env) / dataset
    if card.synthetic:
        target = synth_dir / dataset
        if not target.is_dir() and D.is_main():
            from hcbench.synth import write_suite

            print(f"generating the synthetic suite in {synth_dir} (seed 0, smoke size)", file=sys.stderr)
            write_suite(synth_dir, size="smoke", seed=0)
        D.barrier()
        return target
    if env:
        return Path(env) / dataset
    raise FileNotFoundError(f"no data for {dataset!r}: pass --root DIR or set $HCBENCH_DATA (see datasets/{dataset}.yaml)")


def dataset_fingerprint(split: DatasetSplit, root: Path) -> str:
    """sha256 over the split's annotation files and the list of samples it yielded."""
    h = hashlib.sha256()
    for f in sorted(Path(p) for p in split.files):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode() if f.is_file() else b"-")
    for s in split.samples:
        img = Path(getattr(s, "image", ""))
        h.update(str(img.relative_to(root) if img.is_relative_to(root) else img.name).encode())
    return "sha256:" + h.hexdigest()


def git_sha() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in PACKAGES:
        try:
            out[p] = version(p.replace("_", "-"))
        except PackageNotFoundError:
            continue
    return out


def _defined(x) -> float | None:
    """COCO-style evaluators return -1 (or NaN) for a metric undefined on the split: store null."""
    x = None if x is None else float(x)
    return None if x is None or x != x or x < 0 else x


def existing_record(path: Path, identity: tuple) -> ResultRecord | None:
    """A valid, successful record of the same identity, or None (stale/failed/malformed)."""
    if not path.exists():
        return None
    try:
        rec = read_record(path)
    except RecordError:
        return None
    return rec if rec.status == "ok" and rec.identity == identity else None


def _fault_injection():
    """``HCBENCH_FAULT_KILL_AT_STEP=N`` SIGKILLs this process right after optimizer step N: the
    crash-recovery tests use it to kill a run at a known point mid-training."""
    at = os.environ.get("HCBENCH_FAULT_KILL_AT_STEP")
    if not at:
        return None
    import signal

    def on_step(step: int) -> None:
        if step == int(at):
            os.kill(os.getpid(), signal.SIGKILL)

    return on_step


def run_one(spec: RunSpec, progress: Progress) -> tuple[ResultRecord, bool]:
    """Run one (backbone, card, tier, seed); returns the record and whether training happened."""
    card: TaskCard = resolve(get_card(spec.card), spec.tier)
    device = pick_device(spec.device)
    seed_everything(spec.seed)
    backbone = build_backbone(spec.backbone, (card.input.height, card.input.width))
    identity = (backbone.checkpoint_sha256, card.sha256, card.tier, spec.seed)
    rec_path = record_path(spec.out, spec.suite, spec.backbone, card.name)
    if not spec.force and (old := existing_record(rec_path, identity)) is not None:
        progress.log(f"skip {card.name}: a valid record of this run exists ({rec_path})")
        return old, False

    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.perf_counter()
    adapter = get_adapter(card.family)
    root = data_root(card.dataset.name, spec.root, spec.synth_dir)
    params, flops = count_params(backbone), gflops(backbone, card.input.height, card.input.width)
    model = adapter.build_model(backbone, card)
    eval_ds, split = adapter.build_data(card, root, "eval", limit=card.schedule.eval_limit)
    work = spec.work_dir / spec.suite / backbone_dirname(spec.backbone) / f"{card.name}-{card.tier}-s{spec.seed}-{card.sha256[:12]}"
    config = {"backbone": spec.backbone, "card": card.model_dump(mode="json"), "card_sha256": card.sha256,
              "seed": spec.seed, "data_root": str(root), "device": str(device), "world_size": D.world_size(),
              "work_dir": str(work), "train": spec.train}
    if D.is_main():
        atomic_write_json(rec_path.with_name(f"{card.name}.config.json"), config)
    if spec.train:
        train_ds, _ = adapter.build_data(card, root, "train", limit=card.schedule.train_limit)
        fit(adapter, model, card, train_ds, device=device, seed=spec.seed, work_dir=work, progress=progress,
            checkpoint_every=spec.checkpoint_every, on_step=_fault_injection())
    preds = predict_split(adapter, model, card, eval_ds, device=device, progress=progress)
    if not D.is_main():
        return None, spec.train  # type: ignore[return-value]
    pred_path = rec_path.with_name(f"{card.name}.predictions{adapter.predictions_suffix}")
    tmp = pred_path.with_name(f".{pred_path.name}.tmp{adapter.predictions_suffix}")
    adapter.write_predictions(preds, split, card, tmp)
    os.replace(tmp, pred_path)
    metrics = adapter.score(pred_path, split, card)
    missing = [m for m in card.eval.metrics if m not in metrics]
    if missing:
        raise RuntimeError(f"adapter {card.family} did not report {missing} for card {card.name}")
    dev_name = f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
    record = ResultRecord.model_validate({
        "schema": "hcbench.result/1",
        "backbone": {"spec": spec.backbone, "checkpoint_sha256": backbone.checkpoint_sha256, "params": params,
                     "gflops": round(flops, 4)},
        "card": {"name": card.name, "version": card.version, "sha256": card.sha256, "tier": card.tier,
                 "family": card.family},
        "dataset": {"name": card.dataset.name, "split": card.dataset.split,
                    "fingerprint": dataset_fingerprint(split, root)},
        "metrics": {m: _defined(metrics[m]) for m in card.eval.metrics},
        "primary": card.eval.primary,
        "run": {"seed": spec.seed, "started": started, "wall_s": round(time.perf_counter() - t0, 2),
                "device": dev_name, "world_size": D.world_size(), "hcbench": __version__, "git_sha": git_sha(),
                "packages": package_versions(), "trained": spec.train},
        "predictions": {"file": pred_path.name, "sha256": sha256_file(pred_path)},
    })
    write_record(rec_path, record)
    return record, spec.train


def run_or_record_failure(spec: RunSpec, progress: Progress) -> bool:
    """Run; on error write a failure record carrying the error, so a suite goes on."""
    try:
        run_one(spec, progress)
        return True
    except KeyboardInterrupt:
        raise
    except Exception as e:
        import traceback

        if not D.is_main():
            raise
        card = resolve(get_card(spec.card), spec.tier)
        path = record_path(spec.out, spec.suite, spec.backbone, card.name)
        old = read_record(path) if path.exists() else None
        if old is not None and old.status == "ok":
            progress.log(f"FAILED {card.name}: {type(e).__name__}: {e} (the earlier good record is kept)")
            return False
        write_record(path, failure_record(spec, card, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"))
        progress.log(f"FAILED {card.name}: {type(e).__name__}: {e} (failure record {path})")
        return False


def failure_record(spec: RunSpec, card: TaskCard, error: str) -> ResultRecord:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ResultRecord.model_validate({
        "schema": "hcbench.result/1", "status": "failed", "error": error,
        "backbone": {"spec": spec.backbone, "checkpoint_sha256": None, "params": 0, "gflops": None},
        "card": {"name": card.name, "version": card.version, "sha256": card.sha256, "tier": card.tier,
                 "family": card.family},
        "dataset": {"name": card.dataset.name, "split": card.dataset.split, "fingerprint": "unknown"},
        "metrics": {}, "primary": card.eval.primary,
        "run": {"seed": spec.seed, "started": now, "wall_s": 0.0, "device": str(pick_device(spec.device)),
                "world_size": D.world_size(), "hcbench": __version__, "git_sha": git_sha(),
                "packages": package_versions()},
    })


def run_from_args(args) -> int:
    suite = get_suite(args.suite) if args.suite else None
    cards = suite.cards if suite else args.card
    tier = args.tier or (suite.tier if suite else "full")
    for name in cards:  # fail before any training on a typo
        get_card(name)
    device = pick_device(args.device)
    D.init(device.type)
    progress = Progress(plain=True if args.quiet else None)
    specs = [RunSpec(backbone=args.backbone, card=c, tier=tier, seed=args.seed, suite=args.suite or "adhoc",
                     root=args.root, out=args.out, work_dir=args.work_dir, synth_dir=args.synth or Path("synth_data"),
                     device=args.device, force=args.force, checkpoint_every=args.checkpoint_every) for c in cards]
    if args.executor != "local" or args.jobs > 1:
        from hcbench.engine.executors import run_specs

        failures = run_specs(specs, args)
    else:
        failures = sum(not run_or_record_failure(spec, progress) for spec in specs)
    progress.close()
    if D.is_main() and not args.no_leaderboard:
        from hcbench.results.leaderboard import leaderboard_frame, render

        board = leaderboard_frame(args.out, suite=args.suite or "adhoc", tier=tier)
        print(render(board, "table", tty=sys.stdout.isatty()))
    return 1 if failures else 0
