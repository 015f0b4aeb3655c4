"""A pretraining method from outside hcbench (``docs/examples/toy_pretrainer.py``) runs through
``hcbench pretrain`` with ``--include`` and exports a ``student:<name>`` backbone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"


def test_toy_pretrainer_trains_one_step_and_exports_a_student(tmp_path: Path):
    images = tmp_path / "crops"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (96, 48, 3), dtype=np.uint8)).save(images / f"{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HCBENCH_STUDENTS": str(tmp_path / "students")}
    r = subprocess.run([sys.executable, "-m", "hcbench.cli", "--include", str(EXAMPLES / "toy_family.py"),
                        "--include", str(EXAMPLES / "toy_pretrainer.py"), "--quiet", "pretrain", "toy-local-global",
                        "--student", "toy_vit", "--images", str(images), "--name", "toy_lg", "--epochs", "1",
                        "--batch-size", "2", "--size", "small", "--max-steps", "1", "--workers", "0",
                        "--work-dir", str(tmp_path / "runs")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["student"] == "student:toy_lg"
    assert (tmp_path / "students" / "toy_lg" / "backbone.safetensors").is_file()
    assert "pretrain toy-local-global toy_lg: 1/1" in r.stderr and "loss=" in r.stderr
