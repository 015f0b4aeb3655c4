"""Fixtures of the pretraining tests (helpers live in pretrain_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pretrain_helpers import VIEWS, write_images


@pytest.fixture(autouse=True)
def _few_threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic reductions and fair to the other test runs
    yield
    torch.set_num_threads(prev)


@pytest.fixture
def images(tmp_path) -> Path:
    return write_images(tmp_path / "images", 6)


@pytest.fixture
def batch(images):
    from hcbench.engine.loops import seed_everything
    from hcbench.pretrain.views import MultiViewDataset, collate_views, list_images

    seed_everything(0)
    ds = MultiViewDataset(list_images(images), VIEWS)
    return collate_views([ds[i] for i in range(3)])
