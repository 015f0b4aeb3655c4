"""``hcbench pretrain METHOD``: train a student on unlabeled images, export it as ``student:<name>``.

One run lives in ``<work_dir>/<name>/``: ``last.pt`` (method state = student + heads + EMA +
buffers, optimizer, scheduler, epoch, step; written atomically at every epoch end and every
``checkpoint_every`` steps), ``config.json`` (the effective configuration) and ``log.jsonl``
(one line per step with its losses, plus start/resume events). ``--resume`` continues from
``last.pt``, also mid-epoch after a kill: views are seeded by (seed, epoch, index), the epoch
order by (seed, epoch) and the model's own randomness by (seed, rank, step), so a resumed run
repeats the batches the uninterrupted run would have seen. Launch with ``torchrun`` for data
parallelism (the same launcher as fine-tuning); ``--batch-size`` is the global batch.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from hcbench.engine import distributed as D
from hcbench.engine.loops import SeededDataset, _derive, num_workers, seed_everything
from hcbench.engine.progress import Progress
from hcbench.pretrain import get_method
from hcbench.pretrain.base import PretrainMethod
from hcbench.pretrain.export import architecture_of, export_student
from hcbench.pretrain.views import MultiViewDataset, ViewConfig, collate_views, list_images

# a checkpoint may only be resumed by a run that agrees on these
IDENTITY = ("method", "student", "teacher", "batch_size", "seed", "size", "views", "method_options")


@dataclass
class PretrainConfig:
    method: str
    images: Path
    name: str
    student: str = "vit_tiny"
    teacher: str | None = None
    epochs: int = 100
    batch_size: int = 64  # global, over all ranks
    lr: float = 1.5e-4  # absolute peak learning rate (no batch-size scaling)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup: float = 0.05  # fraction of the steps spent warming up (DPAL: 10 of 200 epochs)
    min_lr: float = 0.0
    clip_grad: float | None = None
    resume: bool = False
    work_dir: Path = Path("runs/pretrain")
    device: str | None = None
    seed: int = 0
    size: str = "full"  # "full" (papers' view and head sizes) or "small" (CPU runs, tests)
    views: ViewConfig | None = None  # overrides the preset's views
    method_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int | None = None  # also checkpoint every N optimizer steps
    max_steps: int | None = None  # cap on optimizer steps (smoke runs)
    students_root: Path | None = None  # default: $HCBENCH_STUDENTS or ./students
    backgrounds: Path | None = None  # canvas backgrounds (default: the other --images)
    multi_person: Path | None = None  # real multi-person images for the canvas
    workers: int | None = None

    def resolved_views(self, method_cls: type[PretrainMethod]) -> ViewConfig:
        views = dataclasses.replace(self.views or ViewConfig.preset(self.size), n_global=method_cls.global_views)
        if method_cls.needs_canvas_masks:  # real crowd images carry no pasted masks
            views = dataclasses.replace(views, real_canvas_prob=0.0)
        return views

    def identity(self, views: ViewConfig) -> dict[str, Any]:
        return json.loads(json.dumps({"method": self.method, "student": self.student, "teacher": self.teacher,
                                      "batch_size": self.batch_size, "seed": self.seed, "size": self.size,
                                      "views": views.to_dict(), "method_options": self.method_options}))


def lr_factor(step: int, total: int, warmup: float, min_ratio: float) -> float:
    """Linear warm-up over ``warmup * total`` steps, then half-cosine down to ``min_ratio``."""
    warm = min(int(round(warmup * total)), max(total - 1, 0))
    if step < warm:
        return (step + 1) / warm
    span = max(total - warm, 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(step - warm, span) / span))


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def build_method(cfg: PretrainConfig, views: ViewConfig) -> PretrainMethod:
    """Student, teacher and method, initialised from ``cfg.seed`` (a resumed run rebuilds the
    same random teacher when the teacher spec carries no weights)."""
    from hcbench.backbones import build_backbone

    cls = get_method(cfg.method)
    if cls.needs_teacher and not cfg.teacher:
        raise ValueError(f"pretrain {cfg.method}: --teacher SPEC is required (e.g. file:path/to/path_b.pth)")
    seed_everything(cfg.seed)
    teacher = build_backbone(cfg.teacher, views.global_size) if cfg.teacher and cls.needs_teacher else None
    student = build_backbone(cfg.student, views.global_size)
    options = cls.Options.preset(cfg.size, **cfg.method_options)
    return cls(student, teacher, options)


def _save(path: Path, method: PretrainMethod, optimizer, scheduler, *, epoch: int, step: int,
          identity: dict, losses: dict | None) -> None:
    from hcbench.results.store import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"method": method.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                "identity": json.dumps(identity), "losses": losses or {}}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _resume(path: Path, method: PretrainMethod, optimizer, scheduler, identity: dict) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = json.loads(state.get("identity", "{}"))
    diff = [k for k in IDENTITY if saved.get(k) != identity.get(k)]
    if diff:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {identity.get(k)!r}" for k in diff)
        raise ValueError(f"{path}: cannot resume, the run differs ({detail}); use another --name or --work-dir")
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


class _Log:
    """Append-only JSON lines on rank 0 (one per step), flushed so a kill loses at most a line."""

    def __init__(self, path: Path):
        self.f = open(path, "a", encoding="utf-8") if D.is_main() else None

    def write(self, **row: Any) -> None:
        if self.f is not None:
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def pretrain(cfg: PretrainConfig, progress: Progress | None = None) -> Path:
    """Run ``cfg`` (resuming when asked) and export the student; returns the student folder."""
    cls = get_method(cfg.method)
    views = cfg.resolved_views(cls)
    device = pick_device(cfg.device)
    D.init(device.type)
    own_progress = progress is None
    progress = progress or Progress()
    try:
        method = build_method(cfg, views).to(device)
        if cfg.teacher and not cls.needs_teacher:
            progress.log(f"note: {cfg.method} uses no external teacher; --teacher {cfg.teacher} is ignored")
        elif cfg.teacher and not cfg.teacher.startswith(("file:", "student:")):
            progress.log(f"warning: teacher {cfg.teacher!r} has random weights (no checkpoint); "
                         "use file:<path> or student:<name> for a trained teacher")
        info = {"method": cfg.method, "student": cfg.student, "teacher": cfg.teacher, "images": str(cfg.images),
                "seed": cfg.seed, "size": cfg.size, "views": views.to_dict(),
                "options": method.options.to_dict(), "world_size": D.world_size()}
        if method.teacher is not None and method.teacher.checkpoint_sha256:
            info["teacher_sha256"] = method.teacher.checkpoint_sha256
        if not cls.trains:
            info.update(epochs=0, steps=0)
            return _export(cfg, method, info, progress)
        return _train(cfg, method, views, device, info, progress)
    finally:
        if own_progress:
            progress.close()


def _train(cfg: PretrainConfig, method: PretrainMethod, views: ViewConfig, device: torch.device, info: dict,
           progress: Progress) -> Path:
    from hcbench.results.store import atomic_write_json

    world, rank = D.world_size(), D.rank()
    if cfg.batch_size % world:
        raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by the world size {world}")
    local_bs = cfg.batch_size // world
    images = list_images(cfg.images)
    dataset = MultiViewDataset(images, views, backgrounds=list_images(cfg.backgrounds) if cfg.backgrounds else None,
                               multi_person=list_images(cfg.multi_person) if cfg.multi_person else None)
    iters_per_epoch = len(dataset) // cfg.batch_size
    if iters_per_epoch == 0:
        raise ValueError(f"--images {cfg.images}: {len(dataset)} images, fewer than one batch of {cfg.batch_size}")
    total = cfg.epochs * iters_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * iters_per_epoch)
    if total <= 0:
        raise ValueError(f"nothing to train: {cfg.epochs} epochs x {iters_per_epoch} steps")

    optimizer = torch.optim.AdamW(method.param_groups(cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
    min_ratio = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, cfg.warmup, min_ratio))
    run_dir = cfg.work_dir / cfg.name
    ckpt = run_dir / "last.pt"
    identity = cfg.identity(views)
    step = 0
    log_path = run_dir / "log.jsonl"
    if ckpt.exists() and not cfg.resume:
        raise ValueError(f"{ckpt} exists: pass --resume to continue that run, or choose another --name/--work-dir")
    if ckpt.exists():
        state = _resume(ckpt, method, optimizer, scheduler, identity)
        step = int(state["step"])
        progress.log(f"resumed {cfg.method} {cfg.name} from {ckpt} at step {step}/{total}")
    elif cfg.resume:
        progress.log(f"no checkpoint at {ckpt}; starting {cfg.name} from scratch")
    if D.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {**info, "identity": identity, "epochs": cfg.epochs,
                                                    "batch_size": cfg.batch_size, "lr": cfg.lr,
                                                    "weight_decay": cfg.weight_decay, "betas": list(cfg.betas),
                                                    "warmup": cfg.warmup, "total_steps": total,
                                                    "images_count": len(dataset)})
        if not step:
            log_path.unlink(missing_ok=True)
    log = _Log(log_path)
    log.write(event="resume" if step else "start", step=step, total=total, world_size=world)

    data = SeededDataset(dataset, cfg.seed)
    model = D.wrap(method, device)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(enabled=use_amp and amp_dtype == torch.float16)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    task = progress.task(f"pretrain {cfg.method} {cfg.name}", total=total, completed=step, unit="img",
                         per_step=cfg.batch_size)
    workers = num_workers() if cfg.workers is None else cfg.workers
    method.train()
    last: dict[str, float] = {}
    try:
        while step < total:
            epoch = step // iters_per_epoch
            data.epoch = epoch
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(_derive(cfg.seed, epoch)))
            order = order.tolist()
            start = step - epoch * iters_per_epoch  # resuming mid-epoch: skip the batches already seen
            n_batches = min(iters_per_epoch, total - epoch * iters_per_epoch)
            batches = [order[b * cfg.batch_size:(b + 1) * cfg.batch_size][rank * local_bs:(rank + 1) * local_bs]
                       for b in range(start, n_batches)]
            loader = DataLoader(data, batch_sampler=batches, collate_fn=collate_views, num_workers=workers,
                                pin_memory=device.type == "cuda")
            for batch in loader:
                batch = batch.to(device)
                torch.manual_seed(_derive(cfg.seed, rank, 10**9 + step))  # masks, scales: fixed per step
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    losses = model(batch, step / total)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"pretrain {cfg.method}: non-finite loss {loss.item()} at step {step}: "
                                             + ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items()))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                method.after_step(step / total)
                last = {k: float(v.detach()) for k, v in losses.items()}
                lr = optimizer.param_groups[0]["lr"]
                log.write(step=step, epoch=epoch, lr=lr, **last)
                progress.advance(task, losses=last, lr=lr)
                end_of_epoch = step % iters_per_epoch == 0 or step == total
                if D.is_main() and (end_of_epoch or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                    _save(ckpt, method, optimizer, scheduler, epoch=epoch, step=step, identity=identity, losses=last)
            D.barrier()
        progress.finish(task)
    finally:
        log.close()
    info.update(epochs=cfg.epochs, steps=total, batch_size=cfg.batch_size, lr=cfg.lr, images_count=len(dataset),
                final_losses=last, checkpoint=str(ckpt))
    return _export(cfg, method, info, progress)


def _export(cfg: PretrainConfig, method: PretrainMethod, info: dict, progress: Progress) -> Path:
    from hcbench.backbones import students_dir

    root = cfg.students_root or students_dir()
    if D.is_main():
        export_student(method.student, cfg.name, architecture=architecture_of(cfg.student), info=info, root=root)
        progress.log(f"exported student:{cfg.name} -> {root / cfg.name}")
    D.barrier()
    return root / cfg.name


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v else None


def config_from_args(args) -> PretrainConfig:
    """CLI namespace -> config. Options the CLI does not (yet) define are read from the namespace
    when present, else from ``HCBENCH_PRETRAIN_SIZE`` (full|small), ``HCBENCH_CHECKPOINT_EVERY``
    and ``HCBENCH_PRETRAIN_MAX_STEPS``."""
    def opt(name: str, default=None):
        value = getattr(args, name, None)
        return default if value is None else value

    return PretrainConfig(
        method=args.method, images=Path(args.images), name=args.name, student=args.student, teacher=args.teacher,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, resume=bool(args.resume),
        work_dir=Path(args.work_dir), device=args.device, seed=args.seed,
        size=opt("size", os.environ.get("HCBENCH_PRETRAIN_SIZE", "full")),
        checkpoint_every=opt("checkpoint_every", _env_int("HCBENCH_CHECKPOINT_EVERY")),
        max_steps=opt("max_steps", _env_int("HCBENCH_PRETRAIN_MAX_STEPS")),
        backgrounds=opt("backgrounds"), multi_person=opt("multi_person"),
    )


def pretrain_from_args(args) -> int:
    cfg = config_from_args(args)
    t0 = time.perf_counter()
    progress = Progress(plain=True if getattr(args, "quiet", False) else None)
    try:
        folder = pretrain(cfg, progress)
    finally:
        progress.close()
    if D.is_main():
        print(json.dumps({"student": f"student:{cfg.name}", "folder": str(folder),
                          "wall_s": round(time.perf_counter() - t0, 1)}))
    return 0
