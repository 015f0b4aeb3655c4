"""``hcbench run``: one run = (backbone, card, tier, seed) -> one result record.

The effective configuration of a run (resolved card, backbone, seed, data root, device) is
written next to its record as ``<card>[.<tier>][.s<seed>].config.json`` (layout:
:mod:`hcbench.results.store`); the record itself is written last and atomically, so a record
on disk always describes a finished run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import time
import warnings
from pathlib import Path

from hcbench import __version__
from hcbench.adapters.base import get_adapter
from hcbench.backbones import build_backbone
from hcbench.backbones.errors import PartialLoadWarning
from hcbench.backbones.stats import count_params, gflops
from hcbench.cards import TaskCard, get_card, resolve
from hcbench.codeprint import code_modules, fingerprint_of
from hcbench.data.cards import dataset_root, get_dataset_card
from hcbench.data.fingerprint import dataset_fingerprint
from hcbench.engine import distributed as D
from hcbench.engine.device import device_label, pick_device
from hcbench.engine.loops import fit, predict_split, seed_everything
from hcbench.engine.progress import Progress
from hcbench.engine.spec import RunSpec
from hcbench.engine.threads import cpu_seconds
from hcbench.errors import worker_message
from hcbench.io import atomic_output, atomic_write_json, sha256_file
from hcbench.results.schema import ResultRecord
from hcbench.results.store import (
    RecordError,
    backbone_dirname,
    read_record,
    record_path,
    record_stem,
    write_record,
)

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pycocotools", "faster_coco_eval", "scipy", "pillow")

__all__ = ["RunSpec", "data_root", "failure_record", "run_one", "run_or_record_failure"]


def data_root(dataset: str, root: Path | None, synth_dir: Path, progress: Progress | None = None) -> Path:
    """The dataset's folder by the one rule (:func:`hcbench.data.cards.dataset_root`); a synthetic
    dataset that resolves into ``synth_dir`` and is missing there is generated first."""
    path = dataset_root(dataset, root, synth_dir=synth_dir)
    if get_dataset_card(dataset).synthetic and path == Path(synth_dir) / dataset and not path.is_dir():
        if D.is_main():
            generate_synthetic(dataset, Path(synth_dir), progress)
        D.barrier()
    return path


def generate_synthetic(dataset: str, synth_dir: Path, progress: Progress | None = None) -> Path:
    """Write one synthetic dataset (seed 0, smoke size) into ``synth_dir`` unless it is there.

    Runs of a ``--jobs N`` pool (or several commands sharing ``--synth``) may all find it missing
    at once: an exclusive lock on ``<synth_dir>/.generate.lock`` lets one process write it while
    the others wait, and whoever gets the lock looks again before writing.
    """
    import fcntl

    from hcbench.synth import write_suite

    synth_dir.mkdir(parents=True, exist_ok=True)
    target = synth_dir / dataset
    with open(synth_dir / ".generate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.is_dir():
                if progress is not None:
                    progress.log(f"generating synthetic {dataset} in {synth_dir} (seed 0, smoke size)")
                write_suite(synth_dir, size="smoke", seed=0, datasets=[dataset])
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


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


def existing_record(path: Path, identity: tuple, code: str | None = None) -> ResultRecord | None:
    """A valid, successful record of the same identity made by the same code (``run.code``, when
    ``code`` is given), or None (stale/failed/malformed)."""
    if not path.exists():
        return None
    try:
        rec = read_record(path)
    except RecordError:
        return None
    if rec.status != "ok" or rec.identity != identity:
        return None
    return rec if code is None or rec.run.code == code else None


def run_code(card: TaskCard) -> dict[str, str]:
    """Per-module source hashes of the code that computes this card's numbers (see
    :mod:`hcbench.codeprint`)."""
    return code_modules(card.family, get_dataset_card(card.dataset.name).format)


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


def run_identity(spec: RunSpec, card: TaskCard, checkpoint_sha256: str | None, code: str | None = None) -> dict:
    """What a training checkpoint must agree on to be resumed by this run (a checkpoint written by
    other code is not resumed: its record would mix two versions)."""
    return {"backbone": spec.backbone, "checkpoint_sha256": checkpoint_sha256, "card": card.name,
            "card_sha256": card.sha256, "tier": card.tier, "seed": spec.seed, "code": code}


def work_folder(spec: RunSpec, card: TaskCard, identity: dict) -> Path:
    """``<work_dir>/<suite>/<backbone>/<card>-<tier>-s<seed>-<12 hex of the identity's sha256>``.

    Keyed on the whole identity (backbone spec, checkpoint sha256, card and its sha256, tier,
    seed): a run never finds another run's ``last.pt`` in its folder, and the checkpoint's own
    identity check stays as a second guard."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return (spec.work_dir / spec.suite / backbone_dirname(spec.backbone, identity.get("checkpoint_sha256"))
            / f"{card.name}-{card.tier}-s{spec.seed}-{key}")


def _file_sha256(spec: str) -> str | None:
    """The sha256 of a ``file:`` spec's checkpoint when it can be read (for a failure record's path)."""
    kind, _, rest = spec.partition(":")
    path = Path(rest).expanduser()
    if kind != "file" or not path.is_file():
        return None
    try:
        return sha256_file(path)
    except OSError:
        return None


def spec_record_path(spec: RunSpec, card: TaskCard, checkpoint_sha256: str | None) -> Path:
    return record_path(spec.out, spec.suite, spec.backbone, card.name, tier=card.tier, seed=spec.seed,
                       checkpoint_sha256=checkpoint_sha256)


def run_one(spec: RunSpec, progress: Progress) -> tuple[ResultRecord, bool]:
    """Run one (backbone, card, tier, seed); returns the record and whether training happened."""
    card: TaskCard = resolve(get_card(spec.card), spec.tier)
    device = pick_device(spec.device)
    seed_everything(spec.seed)
    with warnings.catch_warnings():  # said below through the progress log, and stored in the record
        warnings.simplefilter("ignore", PartialLoadWarning)
        backbone = build_backbone(spec.backbone, (card.input.height, card.input.width))
    load_report = getattr(backbone, "load_report", None)
    if load_report is not None:
        progress.log(f"{'PARTIAL ' if not load_report.complete else ''}backbone load: {load_report.summary()}")
    identity = (backbone.checkpoint_sha256, card.sha256, card.tier, spec.seed)
    rec_path = spec_record_path(spec, card, backbone.checkpoint_sha256)
    stem = record_stem(card.name, card.tier, spec.seed)
    modules = run_code(card)
    code = fingerprint_of(modules)
    if not spec.force and (old := existing_record(rec_path, identity, code)) is not None:
        progress.log(f"skip {card.name}: a valid record of this run exists ({rec_path})")
        return old, False
    if not spec.force and existing_record(rec_path, identity) is not None:
        progress.log(f"re-running {card.name}: its record was made by other code than this checkout's ({rec_path})")

    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    adapter = get_adapter(card.family)
    root = data_root(card.dataset.name, spec.root, spec.synth_dir, progress)
    params, flops = count_params(backbone), gflops(backbone, card.input.height, card.input.width)
    model = adapter.build_model(backbone, card)
    eval_ds, split = adapter.build_data(card, root, "eval", limit=card.schedule.eval_limit)
    ident = run_identity(spec, card, backbone.checkpoint_sha256, code)
    work = work_folder(spec, card, ident)
    config = {"backbone": spec.backbone, "card": card.model_dump(mode="json"), "card_sha256": card.sha256,
              "seed": spec.seed, "data_root": str(root), "device": str(device), "world_size": D.world_size(),
              "work_dir": str(work), "train": spec.train, "code": {"fingerprint": code, "modules": modules}}
    if D.is_main():
        atomic_write_json(rec_path.with_name(f"{stem}.config.json"), config)
    if spec.train:
        train_ds, _ = adapter.build_data(card, root, "train", limit=card.schedule.train_limit)
        fit(adapter, model, card, train_ds, device=device, seed=spec.seed, work_dir=work, progress=progress,
            checkpoint_every=spec.checkpoint_every, on_step=_fault_injection(),
            identity=ident,
            resume="never" if spec.force else "auto", workers=spec.workers)
    preds = predict_split(adapter, model, card, eval_ds, device=device, progress=progress, workers=spec.workers)
    if not D.is_main():
        return None, spec.train  # type: ignore[return-value]
    pred_path = rec_path.with_name(f"{stem}.predictions{adapter.predictions_suffix}")
    # the temp name keeps the suffix: some codecs (np.savez) append theirs otherwise
    with atomic_output(pred_path, suffix=f".tmp{adapter.predictions_suffix}") as tmp:
        adapter.write_predictions(preds, split, card, tmp)
    metrics = adapter.score(pred_path, split, card)
    missing = [m for m in card.eval.metrics if m not in metrics]
    if missing:
        raise RuntimeError(f"adapter {card.family} did not report {missing} for card {card.name}")
    record = ResultRecord.model_validate({
        "schema": "hcbench.result/1",
        "backbone": {"spec": spec.backbone, "checkpoint_sha256": backbone.checkpoint_sha256, "params": params,
                     "gflops": round(flops, 4),
                     **({"load": load_report.to_dict()} if load_report is not None else {})},
        "card": {"name": card.name, "version": card.version, "sha256": card.sha256, "tier": card.tier,
                 "family": card.family},
        "dataset": {"name": card.dataset.name, "split": card.dataset.split,
                    "fingerprint": dataset_fingerprint(split, root)},
        "metrics": {m: _defined(metrics[m]) for m in card.eval.metrics},
        "primary": card.eval.primary,
        "run": {"seed": spec.seed, "started": started, "wall_s": round(time.perf_counter() - t0, 2),
                "cpu_s": round(cpu_seconds() - cpu0, 2), "device": device_label(device),
                "world_size": D.world_size(), "hcbench": __version__, "git_sha": git_sha(), "code": code,
                "packages": package_versions(), "trained": spec.train},
        "predictions": {"file": pred_path.name, "sha256": sha256_file(pred_path)},
    })
    write_record(rec_path, record)
    progress.log(f"done {card.name} [{card.tier}]: {result_line(record)} in {record.run.wall_s:.0f} s -> {rec_path}")
    return record, spec.train


def result_line(record: ResultRecord) -> str:
    """``PCK 52.7 (primary), AP 5.14, ...``: a finished card's numbers for the run log (x100, as tables show them)."""
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.3g}" if abs(v) <= 1 else f"{v:.4g}"

    first = f"{record.primary} {fmt(record.metrics.get(record.primary))}"
    rest = [f"{k} {fmt(v)}" for k, v in record.metrics.items() if k != record.primary][:5]
    return ", ".join([first, *rest])


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
        msg = worker_message(str(e))  # a DataLoader worker's error carries its traceback as text
        card = resolve(get_card(spec.card), spec.tier)
        path = spec_record_path(spec, card, _file_sha256(spec.backbone))
        try:
            old = read_record(path) if path.exists() else None
        except RecordError:
            old = None
        if old is not None and old.status == "ok":
            progress.log(f"FAILED {card.name}: {type(e).__name__}: {msg} (the earlier good record is kept)")
            return False
        write_record(path, failure_record(spec, card, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"))
        progress.log(f"FAILED {card.name}: {type(e).__name__}: {msg} (failure record {path})")
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
