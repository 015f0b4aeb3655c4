"""The engine's one training loop: resume after an interruption, identity checks, --force,
stale temp files, and mixed precision (GradScaler for fp16 only) with a stubbed device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hcbench.engine import device as devmod
from hcbench.engine.checkpoint import read_checkpoint
from hcbench.engine.device import Precision, precision_for
from hcbench.engine.loops import TrainLoop, TrainState, random_order, train_loop
from hcbench.engine.progress import Progress
from hcbench.errors import ResumeError

TOTAL = 6  # 12 samples, batch 4: 3 steps per epoch, 2 epochs


class _Data(torch.utils.data.Dataset):
    """12 samples of y = 3x - 1 with a little per-item noise drawn from the seeded global RNG."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        x = torch.full((2,), float(i) / 12)
        return {"x": x, "y": 3 * x.sum(0, keepdim=True) - 1 + 0.01 * torch.randn(1)}


def _collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class _Logs(Progress):
    def __init__(self):
        super().__init__(enabled=False)
        self.lines: list[str] = []

    def log(self, msg: str) -> None:
        self.lines.append(msg)


def _train(ckpt: Path, *, identity: dict | None = None, resume: str = "auto", stop_at: int | None = None,
           precision: Precision | None = None, progress: Progress | None = None) -> tuple[nn.Module, TrainState]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    data = _Data()
    loop = TrainLoop(name="toy", label="train toy", total=TOTAL, iters_per_epoch=3, global_batch=4, seed=7,
                     checkpoint=ckpt, identity=identity or {"seed": 7}, resume=resume, checkpoint_every=1,
                     clip_grad=1.0, workers=0)

    def step(batch: dict, step: int) -> dict:
        loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return {"loss": loss}

    def stop(state: TrainState) -> None:
        if state.step == stop_at:
            raise KeyboardInterrupt  # an interruption right after a step, before its checkpoint

    state = train_loop(loop, model, step, opt, sched, data, order=lambda e: random_order(len(data), 7, e),
                       collate=_collate, device=torch.device("cpu"), progress=progress or Progress(enabled=False),
                       precision=precision, on_step=[stop])
    return model, state


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path):
    straight, _ = _train(tmp_path / "a" / "last.pt")
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b" / "last.pt", stop_at=4)
    saved = read_checkpoint(tmp_path / "b" / "last.pt")
    assert saved["step"] == 3 and saved["epoch"] == 0  # step 4 was interrupted before its checkpoint
    assert set(saved) >= {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "identity", "losses"}
    logs = _Logs()
    resumed, state = _train(tmp_path / "b" / "last.pt", progress=logs)
    assert state.step == TOTAL and logs.lines == [f"resumed toy from {tmp_path / 'b' / 'last.pt'} at step 3/6"]
    assert _same(resumed, straight)  # same batches, dropout masks and optimizer state


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path):
    ckpt = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(ckpt, identity={"seed": 7, "checkpoint_sha256": "a" * 64}, stop_at=2)
    other = {"seed": 7, "checkpoint_sha256": "b" * 64}
    with pytest.raises(ResumeError, match=r"cannot resume, the run differs \(checkpoint_sha256"):
        _train(ckpt, identity=other, resume="strict")
    logs = _Logs()
    model, state = _train(ckpt, identity=other, progress=logs)  # auto: start afresh, say why
    assert state.step == TOTAL and "not resuming toy" in logs.lines[0] and "starting from scratch" in logs.lines[0]
    fresh, _ = _train(tmp_path / "fresh" / "last.pt", identity=other)
    assert _same(model, fresh)
    assert json.loads(read_checkpoint(ckpt)["identity"]) == other


def test_never_resume_starts_from_scratch_even_from_a_complete_checkpoint(tmp_path):
    ckpt = tmp_path / "last.pt"
    _train(ckpt)
    assert read_checkpoint(ckpt)["step"] == TOTAL
    steps: list[int] = []
    logs = _Logs()
    orig = Precision.backward_and_step

    def counting(self, *a, **k):
        steps.append(1)
        return orig(self, *a, **k)

    Precision.backward_and_step = counting
    try:
        _train(ckpt, resume="never", progress=logs)
    finally:
        Precision.backward_and_step = orig
    assert len(steps) == TOTAL and logs.lines == [f"starting toy from scratch: removed {ckpt}"]


def test_stale_temp_files_of_the_checkpoint_are_removed_on_start(tmp_path):
    ckpt = tmp_path / "last.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    stale = [tmp_path / ".last.pt.k2j3h4.tmp", tmp_path / ".last.pt.zz.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)  # what a kill between write and rename leaves
    other = tmp_path / ".record.json.abc.tmp"  # another file's temp: not ours to delete
    other.write_bytes(b"x")
    logs = _Logs()
    _train(ckpt, progress=logs)
    assert not any(p.exists() for p in stale) and other.exists()
    assert [m for m in logs.lines if m.startswith("removed")] == [
        f"removed {p}: the temp file of an interrupted checkpoint write" for p in stale]


# --------------------------------------------------------------------------- mixed precision
def test_precision_bf16_where_supported_else_fp16_with_a_grad_scaler(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    bf16 = precision_for(cuda)
    assert bf16.dtype == torch.bfloat16 and bf16.scaler is None

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    made = []
    real = torch.amp.GradScaler

    class Recording(real):
        def __init__(self, *a, **k):
            made.append((a, k))
            super().__init__(*a, **k)

    monkeypatch.setattr(devmod.torch.amp, "GradScaler", Recording)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else _nothing():
        fp16 = precision_for(cuda)
    assert fp16.dtype == torch.float16 and isinstance(fp16.scaler, real) and made == [(("cuda",), {})]
    assert precision_for(cuda, training=False).scaler is None  # evaluation: nothing to scale

    cpu = precision_for(torch.device("cpu"))
    assert cpu.dtype is None and cpu.scaler is None and not cpu.enabled
    assert len(made) == 1  # no scaler for bf16, evaluation or CPU


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _SpyScaler(torch.amp.GradScaler):
    """A CPU GradScaler that records the calls the loop makes."""

    def __init__(self):
        super().__init__("cpu", init_scale=2.0**8)
        self.calls: list[str] = []

    def scale(self, outputs):
        self.calls.append("scale")
        return super().scale(outputs)

    def unscale_(self, optimizer):
        self.calls.append("unscale_")
        return super().unscale_(optimizer)

    def step(self, optimizer, *a, **k):
        self.calls.append("step")
        return super().step(optimizer, *a, **k)

    def update(self, new_scale=None):
        self.calls.append("update")
        return super().update(new_scale)


def test_the_loop_scales_fp16_losses_and_checkpoints_the_scaler(tmp_path):
    spy = _SpyScaler()
    fp16 = Precision("cpu", torch.float16, spy)
    _, state = _train(tmp_path / "last.pt", precision=fp16)
    assert state.step == TOTAL and spy.calls == ["scale", "unscale_", "step", "update"] * TOTAL
    saved = read_checkpoint(tmp_path / "last.pt")
    assert saved["scaler"]["scale"] == spy.get_scale() and saved["scaler"]["_growth_tracker"] == TOTAL
    # without a scaler (bf16 / fp32) the loss is not scaled and the scaler state stays empty
    _, state = _train(tmp_path / "bf16" / "last.pt", precision=Precision("cpu", torch.bfloat16))
    assert state.step == TOTAL and read_checkpoint(tmp_path / "bf16" / "last.pt")["scaler"] == {}
