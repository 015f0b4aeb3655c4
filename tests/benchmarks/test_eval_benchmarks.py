"""The evaluation benchmarks run end to end in their ``--tiny`` mode (no timing is asserted; each
script checks its numbers against its peer and exits non-zero when they differ)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script,args,expect", [
    ("pose_eval.py", ["--tiny"], "ratio pycocotools/hcbench"),
    ("pose_eval.py", ["--tiny", "--crowd"], "APhard"),
    ("reid_eval.py", ["--tiny"], "ratio peer/hcbench"),
    ("det_eval.py", ["--tiny"], "numbers identical"),
])
def test_benchmark_tiny(script, args, expect):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expect in proc.stdout
    assert "MISMATCH" not in proc.stdout and "DIFFER" not in proc.stdout
