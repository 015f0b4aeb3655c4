"""What every pretraining method shares: the method contract, option presets, EMA updates,
schedules and optimizer parameter groups."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from hcbench.backbones.features import Backbone
from hcbench.errors import ConfigError
from hcbench.pretrain.views import MultiViewBatch

NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "mask_token", "queries", "router_token", "prefix_pos")


@dataclasses.dataclass
class MethodOptions:
    """Base of each method's options: ``full`` = the papers' head sizes, ``small`` = CPU/test sizes."""

    @classmethod
    def preset(cls, size: str = "full", **overrides: Any) -> MethodOptions:
        base = cls.small() if size == "small" else cls()
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"{cls.__qualname__}: unknown option(s) {unknown}; known: {sorted(names)}")
        return dataclasses.replace(base, **overrides)

    @classmethod
    def small(cls) -> MethodOptions:
        return cls()

    @classmethod
    def from_text(cls, size: str, given: Iterable[tuple[str, str]], where: str = "options") -> dict[str, Any]:
        """``KEY=VALUE`` pairs as they come from the command line (``--option``), checked against
        these options: the overrides for :meth:`preset`. Values are YAML (``0.2``, ``[0.1, 0.01]``,
        ``null``) converted to the type of the option's value in the ``size`` preset, so ``1e-4``
        is a float and a list becomes the tuple the option holds. An unknown key or a value of
        the wrong type is a :class:`~hcbench.errors.ConfigError` that lists the options."""
        import yaml

        base = cls.preset(size)
        known = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}
        out: dict[str, Any] = {}
        for key, text in given:
            if key not in known:
                listing = ", ".join(f"{k}={v!r}" for k, v in known.items())
                raise ConfigError(f"{where}: unknown --option {key!r}; the {size} preset's options: {listing}")
            try:
                out[key] = _as_type_of(yaml.safe_load(text), known[key])
            except (TypeError, ValueError, yaml.YAMLError) as e:
                raise ConfigError(f"{where}: --option {key}={text}: {e} (default: {known[key]!r})") from None
        cls.preset(size, **out)  # the options' own checks
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _as_type_of(value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (a ``None`` default takes what the YAML gave)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        if isinstance(default, int) and not (isinstance(value, int) or float(value).is_integer()):
            raise TypeError(f"expected an integer, got {value!r}")
        return type(default)(float(value) if isinstance(value, str) else value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise TypeError(f"expected {len(default)} values such as {list(default)}, got {value!r}")
        return tuple(_as_type_of(v, d) for v, d in zip(value, default, strict=True))
    if isinstance(default, str):
        return str(value)
    raise TypeError(f"an option of type {type(default).__name__} cannot be set from the command line")


class PretrainMethod(nn.Module):
    """A pretraining objective around a student :class:`Backbone`.

    ``forward(batch, progress)`` returns named scalar losses with the total under ``"loss"``;
    ``progress`` in [0, 1] drives the method's own schedules (routing weight, EMA momentum,
    teacher temperature). ``after_step`` runs after each optimizer step. The frozen teacher is
    held outside the module's parameters and state dict (it is rebuilt from its spec), but
    follows ``.to(device)``. Everything registered (student, heads, EMA copies, buffers) is
    checkpointed; only ``student`` is exported.
    """

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    needs_canvas_masks: ClassVar[bool] = False  # real crowd canvases (no masks) are unusable
    trains: ClassVar[bool] = True  # False: nothing to optimise (the random baseline)
    global_views: ClassVar[int] = 1  # person views per image the method reads
    Options: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(self, student: Backbone, teacher: Backbone | None = None, options: MethodOptions | None = None):
        super().__init__()
        if self.needs_teacher and teacher is None:
            raise ValueError(f"{self.name} needs a teacher: pass --teacher SPEC (a backbone spec or file:/student:)")
        self.student = student
        self.options = options if options is not None else self.Options()
        self.__dict__["_teacher"] = None
        if teacher is not None:
            self.set_teacher(teacher)

    @property
    def teacher(self) -> Backbone | None:
        return self.__dict__["_teacher"]

    def set_teacher(self, teacher: Backbone) -> None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.__dict__["_teacher"] = teacher  # not a submodule: not trained, not checkpointed

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher._apply(fn)
        return self

    def train(self, mode: bool = True) -> PretrainMethod:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(self, batch: MultiViewBatch, progress: float = 0.0) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Called after each optimizer step (EMA updates)."""

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Trainable parameters, without weight decay on biases, norms and learned tokens."""
        decay, no_decay = [], []
        for n, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or any(k in n for k in NO_DECAY_NAMES) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_ramp(start: float, end: float, progress: float) -> float:
    """``start`` at progress 0 to ``end`` at 1 along a half cosine (DINO's momentum schedule)."""
    p = min(max(progress, 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * p) + 1) / 2


def frozen_copy(module: nn.Module) -> nn.Module:
    import copy

    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def ema_update(online: Iterable[nn.Module], ema: Iterable[nn.Module], momentum: float) -> None:
    """``ema = m * ema + (1 - m) * online`` for parameters; buffers are copied."""
    for o, e in zip(online, ema, strict=True):
        po, pe = list(o.parameters()), list(e.parameters())
        if len(po) != len(pe):
            raise RuntimeError("EMA copy and online module differ in structure")
        torch._foreach_mul_(pe, momentum)
        torch._foreach_add_(pe, [p.detach() for p in po], alpha=1 - momentum)
        for bo, be in zip(o.buffers(), e.buffers(), strict=True):
            be.copy_(bo)
