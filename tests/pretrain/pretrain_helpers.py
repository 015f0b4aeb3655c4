"""Helpers for the pretraining tests: 2-block ViTs (registered as backbone aliases so that
runner tests can name them), tiny view sizes, and a folder of synthetic person-like images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hcbench.pretrain.runner import PretrainConfig
from hcbench.pretrain.views import ViewConfig
from hcbench.registry import BACKBONES

# a 2-block ViT-Ti student and ViT-S teacher: the real widths, few blocks, fast on CPU
TINY_ARCHS = {"pt_vit2_tiny": "vit_tiny_patch16_224", "pt_vit2_small": "vit_small_patch16_224"}
VIEWS = ViewConfig(global_size=(64, 32), local_size=(32, 32), canvas_size=(64, 64))


def _tiny_builder(timm_name: str):
    def build(img_size=(256, 192), **kw):
        from hcbench.backbones.timm_backbone import TimmBackbone

        return TimmBackbone(timm_name, img_size=img_size, depth=2, **kw)

    return build


for _alias, _timm in TINY_ARCHS.items():
    if _alias not in BACKBONES:
        BACKBONES.add(_alias, _tiny_builder(_timm), description="2-block test ViT")


def tiny_vit(name: str = "vit_tiny_patch16_224", img_size=(64, 32), depth: int = 2, **kw):
    from hcbench.backbones.timm_backbone import TimmBackbone

    return TimmBackbone(name, img_size=img_size, depth=depth, **kw)


def write_images(folder: Path, n: int, seed: int = 0, size=(96, 48)) -> Path:
    """``n`` images: a bright 'person' blob on a textured background, some nested, jpg and png."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        img = (rng.random((h, w, 3)) * 80).astype(np.uint8)
        y0, x0 = rng.integers(0, h // 4), rng.integers(0, w // 4)
        img[y0:y0 + h // 2, x0:x0 + w // 2] = rng.integers(150, 255, 3)
        sub = folder / ("nested" if i % 2 else ".")
        sub.mkdir(exist_ok=True)
        Image.fromarray(img).save(sub / f"img{i}.{'png' if i % 3 else 'jpg'}")
    return folder


def run_config(tmp_path: Path, images: Path, method: str, name: str, **kw) -> PretrainConfig:
    """A fast run: 2-block ViTs, tiny views, batch 2, workers in-process."""
    base = dict(method=method, images=images, name=name, student="pt_vit2_tiny",
                teacher="pt_vit2_small" if method in ("dpal", "feature-kd") else None, epochs=1, batch_size=2,
                lr=1e-3, work_dir=tmp_path / "runs", students_root=tmp_path / "students", size="small",
                views=VIEWS, workers=0, method_options={"inter_dim": 32} if method == "dpal" else {})
    base.update(kw)
    return PretrainConfig(**base)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
