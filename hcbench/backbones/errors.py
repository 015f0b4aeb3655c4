"""Errors and warnings of reading backbone checkpoints (re-exported by
:mod:`hcbench.backbones.checkpoint`)."""

from __future__ import annotations

from hcbench.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read safely or does not fit its card's architecture."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    pass


class PartialLoadWarning(UserWarning):
    """A non-strict load left tensors missing or unexpected (see ``backbone.load_report``)."""
