"""Attributes adapter: contract, weighted BCE, predictions file, a short training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.adapters import get_adapter
from hcbench.adapters.attributes import exp_ratio_weights, positive_ratio, weighted_bce
from hcbench.backbones import build_backbone
from hcbench.cards import get_card, resolve
from hcbench.data.types import AttributeSample, DatasetSplit
from hcbench.metrics.attributes import attribute_metrics
from hcbench.registry import ADAPTERS

torch.set_num_threads(1)
SIZE = (64, 32)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from hcbench.synth import write_suite

    # 300 train / 50 val / 100 test crops
    return write_suite(tmp_path_factory.mktemp("synth"), "smoke", seed=0, datasets=["synth_attr"],
                       fraction=0.5)["synth_attr"]


@pytest.fixture(scope="module")
def card():
    c = resolve(get_card("synth_attr"), "smoke")
    assert (c.input.height, c.input.width) == SIZE
    return c


def _model(card, seed: int = 0):
    torch.manual_seed(seed)
    return get_adapter("attributes").build_model(build_backbone("vit_tiny", SIZE), card)


def test_registered_instance():
    from hcbench.adapters.base import TaskAdapter

    ad = ADAPTERS.get("attributes")
    assert isinstance(ad, TaskAdapter)
    assert ad is get_adapter("attributes") and ad.family == "attributes" and ad.predictions_suffix == ".npz"


@pytest.mark.parametrize("name", ["pa100k_attr", "peta_attr", "rapv2_attr", "synth_attr"])
def test_cards_resolve(name):
    for tier in ("full", "quick", "smoke"):
        c = resolve(get_card(name), tier)
        assert c.family == "attributes" and c.eval.primary == "mA"
    full = get_card(name)
    if name != "synth_attr":  # 256x128, AdamW 1e-4, 30 epochs, batch 64, exp weighting
        assert (full.input.height, full.input.width) == (256, 128) and full.optim.type == "adamw"
        assert full.optim.lr == 1e-4 and full.schedule.epochs == 30 and full.schedule.batch_size == 64
        assert full.adapter["loss_weighting"] == "exp_ratio"
    else:
        assert resolve(full, "smoke").schedule == resolve(full, "full").schedule


def test_exp_ratio_weights_and_weighted_bce_against_numpy():
    p = torch.tensor([0.1, 0.5, 0.8])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    w = exp_ratio_weights(y, p)
    assert torch.allclose(w, torch.tensor([[np.exp(0.9), np.exp(0.5), np.exp(0.2)],
                                           [np.exp(0.1), np.exp(0.5), np.exp(0.8)]], dtype=torch.float32))
    logits = torch.tensor([[0.3, -1.2, 2.0], [-0.5, 0.7, 1.5]])
    x, t, wn = logits.numpy().astype(np.float64), y.numpy(), w.numpy()
    bce = -(t * np.log(1 / (1 + np.exp(-x))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-x))))
    assert weighted_bce(logits, y, p).item() == pytest.approx((bce * wn).sum(1).mean(), rel=1e-5)
    assert weighted_bce(logits, y, None).item() == pytest.approx(bce.sum(1).mean(), rel=1e-5)
    assert positive_ratio(np.array([[1, 0], [1, 1], [0, 0], [1, 0]], np.uint8)).tolist() == [0.75, 0.25]


def test_contract_shapes_losses_and_one_step(root, card):
    ad = get_adapter("attributes")
    ds, split = ad.build_data(card, root, "train")
    assert len(ds) == 300
    labels = np.stack([s.labels for s in split.samples])
    assert ad.train_sampler(ds, card, 0) is None
    batch = ad.collate([ds[i] for i in range(8)])
    assert batch["images"].shape == (8, 3, *SIZE) and batch["labels"].shape == (8, 16)
    assert torch.allclose(batch["pos_ratio"], torch.from_numpy(labels.mean(0).astype(np.float32)))
    model = _model(card)
    assert model(batch["images"]).shape == (8, 16)
    losses = ad.loss(model, batch)
    assert torch.isfinite(losses["loss"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.zero_grad()
    losses["loss"].backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {"fc.weight", "fc.bias"} <= changed and any(n.startswith("backbone.") for n in changed)

    eval_ds, _ = ad.build_data(card, root, "eval")
    assert "pos_ratio" not in ad.collate([eval_ds[0]])
    model.eval()
    preds = ad.predict(model, ad.collate([eval_ds[i] for i in range(4)]), card)
    probs = torch.stack([p["probs"] for p in preds])
    assert [p["index"] for p in preds] == [0, 1, 2, 3] and probs.shape == (4, 16)
    assert bool(((probs > 0) & (probs < 1)).all())


def test_logit_bn_variant_builds():
    c = resolve(get_card("pa100k_attr"), "smoke")
    m = get_adapter("attributes").build_model(build_backbone("vit_tiny", (64, 32)), c)
    assert isinstance(m.logit_bn, torch.nn.BatchNorm1d) and m.fc.out_features == 26


def test_labels_as_probabilities_score_perfectly(root, card, tmp_path):
    ad = get_adapter("attributes")
    _, split = ad.build_data(card, root, "eval")
    gt = np.stack([s.labels for s in split.samples]).astype(np.float32)
    preds = [{"index": i, "probs": torch.from_numpy(gt[i])} for i in range(len(gt))]
    path = ad.write_predictions(preds, split, card, tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as z:
        assert z["probs"].shape == (100, 16) and z["names"][0].startswith("data/") and len(z["attributes"]) == 16
    m = ad.score(path, split, card)
    assert m == pytest.approx({"mA": 1.0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "F1": 1.0})

    # arbitrary scores: the adapter's numbers are attribute_metrics' on the same arrays
    rng = np.random.default_rng(0)
    scores = rng.random(gt.shape).astype(np.float32)
    path = ad.write_predictions([{"index": i, "probs": torch.from_numpy(scores[i])} for i in range(len(gt))],
                                split, card, tmp_path / "r.npz")
    ref = attribute_metrics(gt.astype(np.uint8), scores)
    got = ad.score(path, split, card)
    assert got == pytest.approx({k: ref[k] for k in got}) and 0.4 < got["mA"] < 0.6

    with pytest.raises(ValueError, match="no prediction"):
        ad.write_predictions(preds[:-1], split, card, tmp_path / "x.npz")
    other = DatasetSplit(split.name, split.split, "attributes",
                         [AttributeSample(Path("elsewhere.jpg"), s.labels) for s in split.samples], split.meta,
                         split.files)
    with pytest.raises(ValueError, match="row 0"):
        ad.score(tmp_path / "p.npz", other, card)


def _evaluate(ad, model, card, eval_ds, split, path):
    model.eval()
    with torch.no_grad():
        preds = ad.predict(model, ad.collate([eval_ds[i] for i in range(len(eval_ds))]), card)
    model.train()
    return ad.score(ad.write_predictions(preds, split, card, path), split, card)


def _heldout_loss(ad, model, eval_ds) -> float:
    model.eval()
    with torch.no_grad():
        loss = ad.loss(model, ad.collate([eval_ds[i] for i in range(len(eval_ds))]))["loss"].item()
    model.train()
    return loss


def test_short_training_run_learns(root, card, tmp_path):
    """72 AdamW steps of batch 32 at 64x32: the weighted BCE falls, on the training batches and on the
    held-out split."""
    ad = get_adapter("attributes")
    train_ds, _ = ad.build_data(card, root, "train")
    eval_ds, split = ad.build_data(card, root, "eval")
    model = _model(card)
    before = _evaluate(ad, model, card, eval_ds, split, tmp_path / "a.npz")
    loss_before = _heldout_loss(ad, model, eval_ds)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    losses = []
    for _ in range(8):
        order = torch.randperm(len(train_ds), generator=g).tolist()
        for b in range(0, len(order) - 31, 32):
            loss = ad.loss(model, ad.collate([train_ds[i] for i in order[b:b + 32]]))["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    after = _evaluate(ad, model, card, eval_ds, split, tmp_path / "b.npz")
    loss_after = _heldout_loss(ad, model, eval_ds)
    print(f"loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}; held-out {loss_before:.3f} -> "
          f"{loss_after:.3f}; mA {before['mA']:.3f} -> {after['mA']:.3f}")
    assert len(losses) == 72
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 1.0
    # learning shows on images it never saw: the weighted BCE of the held-out split falls (seed 0:
    # 12.51 -> 11.95; seeds 1 and 2 of the same run: -0.28, -0.16). mA after 72 steps of a random-init
    # ViT-Ti is noise-dominated (seed 0: +0.016 on one 2-core machine, +0.0096 on another with other
    # SIMD kernels; seeds 1 and 2: +0.053, -0.006), so it is only checked not to collapse; the
    # main-job test holds the real per-family mA margins
    assert loss_after < loss_before - 0.2
    assert after["mA"] > before["mA"] - 0.01
