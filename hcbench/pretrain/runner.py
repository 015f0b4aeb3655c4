"""``hcbench pretrain METHOD``: train a student on unlabeled images, export it as ``student:<name>``.

One run lives in ``<work_dir>/<name>/``: ``last.pt`` (method state = student + heads + EMA +
buffers, optimizer, scheduler, epoch, step; written atomically at every epoch end and every
``checkpoint_every`` steps), ``config.json`` (the effective configuration) and ``log.jsonl``
(one line per step with its losses, plus start/resume events). ``--resume`` continues from
``last.pt``, also mid-epoch after a kill: views are seeded by (seed, epoch, index), the epoch
order by (seed, epoch) and the model's own randomness by (seed, rank, step), so a resumed run
repeats the batches the uninterrupted run would have seen. Launch with ``torchrun`` for data
parallelism (the same launcher as fine-tuning); ``--batch-size`` is the global batch.

The training loop, checkpoint format, resume path and mixed precision are the engine's
(:func:`hcbench.engine.loops.train_loop`); a method contributes its step function (its
``forward``) and its ``after_step`` (EMA updates).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hcbench.engine import distributed as D
from hcbench.engine.device import pick_device
from hcbench.engine.loops import TrainLoop, TrainState, random_order, seed_everything, train_loop
from hcbench.engine.progress import Progress
from hcbench.errors import ConfigError, ResumeError
from hcbench.io import atomic_write_json
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


def build_method(cfg: PretrainConfig, views: ViewConfig) -> PretrainMethod:
    """Student, teacher and method, initialised from ``cfg.seed`` (a resumed run rebuilds the
    same random teacher when the teacher spec carries no weights)."""
    from hcbench.backbones import build_backbone

    cls = get_method(cfg.method)
    if cls.needs_teacher and not cfg.teacher:
        raise ConfigError(f"pretrain {cfg.method}: --teacher SPEC is required (e.g. file:path/to/path_b.pth)")
    seed_everything(cfg.seed)
    teacher = build_backbone(cfg.teacher, views.global_size) if cfg.teacher and cls.needs_teacher else None
    student = build_backbone(cfg.student, views.global_size)
    options = cls.Options.preset(cfg.size, **cfg.method_options)
    return cls(student, teacher, options)


class _Log:
    """Append-only JSON lines on rank 0 (one per step), flushed so a kill loses at most a line."""

    def __init__(self, path: Path):
        self.path, self.f = path, None

    def open(self, fresh: bool) -> None:
        """Start the file (``fresh``: a run from step 0 drops an earlier attempt's lines) or append."""
        if D.is_main():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(self.path, "w" if fresh else "a", encoding="utf-8")

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
    progress = progress or Progress(enabled=False)
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
    world = D.world_size()
    if cfg.batch_size % world:
        raise ConfigError(f"--batch-size {cfg.batch_size} is not divisible by the world size {world}")
    images = list_images(cfg.images)
    dataset = MultiViewDataset(images, views, backgrounds=list_images(cfg.backgrounds) if cfg.backgrounds else None,
                               multi_person=list_images(cfg.multi_person) if cfg.multi_person else None)
    iters_per_epoch = len(dataset) // cfg.batch_size
    if iters_per_epoch == 0:
        raise ConfigError(f"--images {cfg.images}: {len(dataset)} images, fewer than one batch of {cfg.batch_size}")
    total = cfg.epochs * iters_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * iters_per_epoch)
    if total <= 0:
        raise ConfigError(f"nothing to train: {cfg.epochs} epochs x {iters_per_epoch} steps")

    optimizer = torch.optim.AdamW(method.param_groups(cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
    min_ratio = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, cfg.warmup, min_ratio))
    run_dir = cfg.work_dir / cfg.name
    ckpt = run_dir / "last.pt"
    identity = cfg.identity(views)
    log_path = run_dir / "log.jsonl"
    if ckpt.exists() and not cfg.resume:
        raise ResumeError(f"{ckpt} exists: pass --resume to continue that run, or choose another --name/--work-dir")
    if cfg.resume and not ckpt.exists():
        progress.log(f"no checkpoint at {ckpt}; starting {cfg.name} from scratch")
    loop = TrainLoop(name=f"{cfg.method} {cfg.name}", label=f"pretrain {cfg.method} {cfg.name}", total=total,
                     iters_per_epoch=iters_per_epoch, global_batch=cfg.batch_size, seed=cfg.seed, checkpoint=ckpt,
                     identity=identity, resume="strict", checkpoint_every=cfg.checkpoint_every,
                     clip_grad=cfg.clip_grad, workers=cfg.workers, lr_group=0)
    log = _Log(log_path)

    def start(state: TrainState) -> None:
        if D.is_main():
            atomic_write_json(run_dir / "config.json", {**info, "identity": identity, "epochs": cfg.epochs,
                                                        "batch_size": cfg.batch_size, "lr": cfg.lr,
                                                        "weight_decay": cfg.weight_decay, "betas": list(cfg.betas),
                                                        "warmup": cfg.warmup, "total_steps": total,
                                                        "images_count": len(dataset)})
        log.open(fresh=not state.step)
        log.write(event="resume" if state.step else "start", step=state.step, total=total, world_size=world)

    def after_step(state: TrainState) -> None:
        method.after_step(state.step / total)
        log.write(step=state.step, epoch=state.epoch, lr=state.lr, **(state.last_losses or {}))

    model = D.wrap(method, device)
    method.train()
    try:
        state = train_loop(loop, method, lambda batch, step: model(batch, step / total), optimizer, scheduler,
                           dataset, order=lambda epoch: random_order(len(dataset), cfg.seed, epoch),
                           collate=collate_views, device=device, progress=progress, on_start=start,
                           on_step=[after_step])
    finally:
        log.close()
    info.update(epochs=cfg.epochs, steps=total, batch_size=cfg.batch_size, lr=cfg.lr, images_count=len(dataset),
                final_losses=state.last_losses or {}, checkpoint=str(ckpt))
    return _export(cfg, method, info, progress)


def _export(cfg: PretrainConfig, method: PretrainMethod, info: dict, progress: Progress) -> Path:
    from hcbench.backbones import students_dir

    root = cfg.students_root or students_dir()
    if D.is_main():
        export_student(method.student, cfg.name, architecture=architecture_of(cfg.student), info=info, root=root)
        progress.log(f"exported student:{cfg.name} -> {root / cfg.name}")
    D.barrier()
    return root / cfg.name
