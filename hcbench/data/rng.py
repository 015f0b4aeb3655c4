"""Per-sample random generators for data augmentation.

A training item's augmentation is drawn from its own numpy ``Generator`` seeded by
(seed, epoch, index), never from a process-global seed: re-seeding torch's global RNG per item
(``torch.manual_seed``) also seeds the lazy CUDA/XPU generators and cost 0.3-1.1 ms per item
(issue 18), while a fresh ``Generator`` costs ~10 us. The same (seed, epoch, index) always gives
the same augmentation, in any worker process and after a resume.

Datasets opt in by defining ``seeded_item(index, rng)``; the engine's ``SeededDataset`` calls it
with :func:`sample_rng`. Their plain ``__getitem__`` draws a generator from torch's global RNG
(:func:`rng_from_torch`), so code that seeds torch itself keeps working.
"""

from __future__ import annotations

import numpy as np


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of sample ``index`` in ``epoch`` of a run seeded ``seed``."""
    return np.random.default_rng((int(seed) % 2**63, int(epoch), int(index)))


def rng_from_torch() -> np.random.Generator:
    """A generator seeded from torch's global CPU RNG (one draw), for callers that seed torch."""
    import torch

    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
