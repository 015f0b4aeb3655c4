"""Parameter/FLOP counts: the meta-device count equals a real CPU forward's, the multiply-add
convention on a hand-counted model, and the fingerprinted cache behind ``hcbench list backbones``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hcbench.backbones import build_backbone
from hcbench.backbones.stats import cached_stats, count_params, fingerprint, gflops, load_cache, measure


class Patchify(nn.Module):
    embed_dim, stride = 8, 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, stride=4)

    def forward(self, x):
        return self.conv(x)


def test_multiply_adds_by_hand():
    # 8 x 8 outputs x 8 channels, each 3 x 4 x 4 multiply-adds; the bias adds are not counted
    m = Patchify()
    assert gflops(m, 32, 32) == pytest.approx(8 * 8 * 8 * 3 * 4 * 4 / 1e9)
    with torch.device("meta"):
        meta = Patchify()
    assert gflops(meta, 32, 32) == gflops(m, 32, 32)
    assert count_params(meta) == count_params(m) == 3 * 8 * 16 + 8


@pytest.mark.parametrize("name", ["vit_tiny", "dpal_vit_tiny", "solider_swin_tiny"])
def test_meta_counts_equal_a_cpu_forward(name):
    def build():
        return build_backbone(name, (256, 192))

    cpu = build()
    expected = {"params": count_params(cpu), "gflops": round(gflops(cpu, 256, 192), 3),
                "embed_dim": cpu.embed_dim, "stride": cpu.stride}
    assert measure(build, 256, 192) == expected


def test_cache_hits_and_invalidation(tmp_path, monkeypatch):
    monkeypatch.setenv("HCBENCH_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return Patchify()

    cache = load_cache()
    assert cache == {}
    stats, updated = cached_stats(cache, "toy", Patchify, {"description": "x"}, build, 32, 32)
    assert updated and stats["gflops"] == round(8 * 8 * 8 * 48 / 1e9, 3) and stats["params"] == 392
    again, updated = cached_stats(cache, "toy", Patchify, {"description": "x"}, build, 32, 32)
    assert again == stats and not updated and len(calls) == 1  # served from the cache
    # other metadata or input size: measured again, under its own key or fingerprint
    cached_stats(cache, "toy", Patchify, {"description": "y"}, build, 32, 32)
    cached_stats(cache, "toy", Patchify, {"description": "y"}, build, 64, 64)
    assert len(calls) == 3 and set(cache) == {"toy@32x32", "toy@64x64"}
    assert fingerprint(Patchify, {"a": 1}) != fingerprint(Patchify, {"a": 2})
    # a stale fingerprint in the file is recomputed, not trusted
    cache["toy@64x64"]["fingerprint"] = "stale"
    cache["toy@64x64"]["params"] = -1
    fresh, updated = cached_stats(cache, "toy", Patchify, {"description": "y"}, build, 64, 64)
    assert updated and fresh["params"] == 392


def test_listing_uses_and_writes_the_cache(tmp_path, monkeypatch):
    from hcbench.listing import _backbone_rows

    monkeypatch.setenv("HCBENCH_CACHE", str(tmp_path))
    rows = _backbone_rows((256, 192), "vit_tiny")
    assert rows[0]["params"] > 5e6 and rows[0]["gflops"] > 1
    stored = json.loads((tmp_path / "backbone_stats.json").read_text())
    assert stored["vit_tiny@256x192"]["params"] == rows[0]["params"]
    assert _backbone_rows((256, 192), "vit_tiny") == rows
