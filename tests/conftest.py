import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# the params/FLOPs cache goes to a throw-away folder, never the user's home (subprocesses inherit it)
os.environ.setdefault("HCBENCH_CACHE", tempfile.mkdtemp(prefix="hcbench-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLES = REPO / "tests" / "real-samples"


@pytest.fixture(scope="session")
def real_samples() -> Path:
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"real sample files not found at {REAL_SAMPLES}")
    return REAL_SAMPLES


@pytest.fixture(scope="session")
def synth_suite(tmp_path_factory) -> Path:
    """The synthetic suite at smoke size, generated once per test session."""
    from hcbench.synth import write_suite

    out = tmp_path_factory.mktemp("synth")
    write_suite(out, size="smoke", seed=0)
    return out
