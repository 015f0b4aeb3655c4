"""What one run is: (backbone, card, tier, seed) plus where its data, outputs and work go.

Its own module so that the runner and the executors both import it and neither imports the
other's caller: the command line builds :class:`RunSpec` objects and hands them to an executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    force: bool = False  # retrain from scratch even when a record or a complete checkpoint exists
    train: bool = True  # False: evaluate the untrained model (a chance baseline for tests)
    checkpoint_every: int | None = None
    workers: int | None = None  # DataLoader workers (None: sized from the cores, see engine.threads)
