"""A pretraining run killed with SIGKILL after its first checkpoint resumes with --resume from
that checkpoint, continues the step counter, and ends where the uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from pretrain_helpers import read_log, run_config, write_images
from safetensors.torch import load_file

from hcbench.pretrain.runner import pretrain

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
from pretrain_helpers import VIEWS  # registers the 2-block test ViTs
from hcbench.pretrain.dpal import DPAL
from hcbench.engine.progress import Progress
from hcbench.pretrain.runner import PretrainConfig, pretrain
from pathlib import Path
args = json.loads(sys.argv[1])
if args.pop("slow"):
    _orig = DPAL.after_step
    def _slow(self, progress):
        time.sleep(0.3)  # leave the parent time to kill us between checkpoints
        _orig(self, progress)
    DPAL.after_step = _slow
cfg = PretrainConfig(method="dpal", images=Path(args["images"]), name=args["name"], student="pt_vit2_tiny",
                     teacher="pt_vit2_small", epochs=2, batch_size=2, lr=1e-3, work_dir=Path(args["work"]),
                     students_root=Path(args["students"]), size="small", views=VIEWS, workers=0,
                     method_options={{"inter_dim": 32}}, checkpoint_every=1, resume=args["resume"])
pretrain(cfg, Progress(plain=True))
"""


def _run_script(tmp_path: Path, **args) -> subprocess.Popen:
    script = tmp_path / "run_dpal.py"
    script.write_text(SCRIPT.format(here=str(HERE)))
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, str(script), json.dumps(args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_from_its_last_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    images = write_images(tmp_path / "images", 6)
    common = dict(images=str(images), work=str(tmp_path / "runs"), students=str(tmp_path / "students"))
    ckpt = tmp_path / "runs" / "killed" / "last.pt"
    proc = _run_script(tmp_path, name="killed", resume=False, slow=True, **common)
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), proc.communicate()[0] if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 1 <= killed_at < 6 and not (tmp_path / "students" / "killed").exists()

    proc = _run_script(tmp_path, name="killed", resume=True, slow=False, **common)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert f"resumed dpal killed from {ckpt} at step {killed_at}/6" in out
    log = read_log(tmp_path / "runs" / "killed")
    resume_at = max(i for i, r in enumerate(log) if r.get("event") == "resume")
    assert log[resume_at]["step"] == killed_at
    assert [r["step"] for r in log[resume_at + 1:]] == list(range(killed_at + 1, 7))  # continued, not restarted
    assert torch.load(ckpt, weights_only=True)["step"] == 6

    # the same run without the kill, in this process (same seeds, one thread as in the script)
    straight = run_config(tmp_path, images, "dpal", "straight", epochs=2, checkpoint_every=1)
    pretrain(straight)
    a = load_file(tmp_path / "students" / "killed" / "backbone.safetensors")
    b = load_file(tmp_path / "students" / "straight" / "backbone.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # same batches, same updates


