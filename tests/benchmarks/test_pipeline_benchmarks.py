"""The loop-overhead and data-pipeline benchmarks run end to end in their ``--tiny`` mode, and the
GPU check's logic runs on the CPU (``--cpu-dry-run``); no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}  # spinning threads on a busy box


def _run(cmd: list[str], timeout: int = 600) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_loop_overhead_tiny():
    out = _run([sys.executable, str(REPO / "benchmarks" / "loop_overhead.py"), "--tiny"])
    for line in ("pose train", "pose eval", "parsing train", "parsing eval", "eval items"):
        assert line in out, out
    assert "(same flip test)" in out


def test_pipeline_tiny():
    out = _run([sys.executable, str(REPO / "benchmarks" / "pipeline.py"), "--tiny"])
    for fam in ("pose", "parsing", "reid"):
        assert any(line.startswith(fam) for line in out.splitlines()), out
    assert "goal >= 0.80x the decode+warp floor" in out
    assert "cores to feed a GPU training ViT-B pose at 1500 samples/s" in out


@pytest.mark.skipif(sys.platform != "linux", reason="bash script, torchrun on localhost")
def test_gpu_check_cpu_dry_run(tmp_path):
    out_file = tmp_path / "gpu_check.json"
    out = _run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", "--out", str(out_file)])
    figures = json.loads(out_file.read_text())
    assert figures["dry_run"] is True and figures["model"] == "vit_tiny"
    for key in ("date", "device", "raw_samples_per_s", "raw_channels_last_samples_per_s", "fit_samples_per_s",
                "fit_over_raw", "channels_last_helps"):
        assert key in figures, key
    assert figures["ddp"]["backend"] == "gloo" and figures["ddp"]["world_size"] == 1
    assert figures["raw_samples_per_s"] > 0 and figures["ddp"]["samples_per_s"] > 0
    assert "dry run: timings mean nothing" in out and str(out_file) in out
    assert not out_file.with_suffix(".json.part").exists()
