"""Detection adapter: contract, resize/normalise once, ignore regions, predictions file, short training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.adapters import get_adapter
from hcbench.adapters.detection import DetectionDataset, training_boxes
from hcbench.backbones import build_backbone
from hcbench.cards import get_card, resolve
from hcbench.data.types import DatasetSplit, DetectionMeta, DetectionSample
from hcbench.registry import ADAPTERS

torch.set_num_threads(1)
SHORT, LONG = 128, 160  # smaller than the card's 192/224 so the file stays fast


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    from hcbench.synth import write_suite

    # 100 train / 25 val scenes
    return write_suite(tmp_path_factory.mktemp("synth"), "smoke", seed=0, datasets=["synth_det"],
                       fraction=0.5)["synth_det"]


@pytest.fixture(scope="module")
def card():
    c = resolve(get_card("synth_det"), "smoke")
    return c.model_copy(update={"input": c.input.model_copy(update={"height": SHORT, "width": LONG})})


def _model(card, seed: int = 0):
    torch.manual_seed(seed)
    return get_adapter("detection").build_model(build_backbone("vit_tiny", (SHORT, LONG)), card)


def test_registered_instance():
    from hcbench.adapters.base import TaskAdapter

    ad = ADAPTERS.get("detection")
    assert isinstance(ad, TaskAdapter)
    assert ad is get_adapter("detection") and ad.family == "detection" and ad.predictions_suffix == ".json"


@pytest.mark.parametrize("name", ["crowdhuman_det", "citypersons_det", "synth_det"])
def test_cards_resolve(name):
    for tier in ("full", "quick", "smoke"):
        resolve(get_card(name), tier)
    c = get_card(name)
    if name == "citypersons_det":
        assert c.eval.primary == "MR-2" and c.eval.higher_is_better is False
        assert c.eval.options["protocol"] == "citypersons" and c.adapter["train_labels"] == [1]
    else:
        assert c.eval.metrics == ["AP", "MR-2", "JI"] and c.eval.primary == "AP"
    if name == "synth_det":
        assert max(c.input.height, c.input.width) <= 256
        assert resolve(c, "smoke").schedule == resolve(c, "full").schedule


def test_contract_losses_one_step_and_layer_groups(root, card):
    from hcbench.engine.optim import param_groups

    ad = get_adapter("detection")
    ds, split = ad.build_data(card, root, "train")
    assert len(ds) == 100 and ad.train_sampler(ds, card, 0) is None
    np.random.seed(0)
    batch = ad.collate([ds[i] for i in range(4)])
    for im, t in zip(batch["images"], batch["targets"], strict=True):
        assert min(im.shape[-2:]) == SHORT or max(im.shape[-2:]) == LONG  # resized by the dataset
        assert 0.0 <= float(im.min()) and float(im.max()) <= 1.0  # not yet normalised
        b = t["boxes"]
        assert b.dtype == torch.float32 and (b[:, 2:] > b[:, :2]).all()
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= im.shape[-1]).all()  # clipped to the image
    model = _model(card)
    losses = ad.loss(model, batch)
    assert set(losses) == {"loss", "classification", "bbox_regression", "bbox_ctrness"}
    assert all(torch.isfinite(v) for v in losses.values())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.zero_grad()
    losses["loss"].backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("backbone.model.blocks.") for n in changed)
    assert any(n.startswith("detector.backbone.pyramid.") for n in changed)
    assert any(n.startswith("detector.head.") for n in changed)
    # the backbone is registered once, under "backbone.", so layer-wise lr decay sees its 14 layer ids
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("detector.backbone._backbone") for n in names)
    layers = {g["layer"] for g in param_groups(model, card)}
    assert layers == set(range(model.backbone.num_layers + 3))


def test_resize_once_normalise_once(root, card):
    ad = get_adapter("detection")
    model = _model(card).eval()
    t = model.detector.transform
    # torchvision's transform is the identity (the backbone normalises, once); padding is the
    # backbone's mean colour, i.e. zero after the backbone's normalisation
    assert t.image_mean == [0.0, 0.0, 0.0] and t.image_std == [1.0, 1.0, 1.0]
    img = torch.rand(3, 101, 133)
    images, _ = t([img])
    assert images.image_sizes == [(101, 133)]  # no second resize
    assert images.tensors.shape[-2] % 32 == 0 and images.tensors.shape[-1] % 32 == 0
    assert torch.allclose(images.tensors[0, :, :101, :133], img, atol=1e-6)
    mean = torch.tensor(model.backbone.mean).view(3, 1, 1)
    std = torch.tensor(model.backbone.std).view(3, 1, 1)
    assert torch.allclose(images.tensors[0, :, 101:, :], mean.expand(3, images.tensors.shape[-2] - 101, images.tensors.shape[-1]), atol=1e-6)
    x = images.tensors[:1]
    assert torch.allclose(model.backbone.normalize(x)[0, :, :101, :133], (img - mean) / std, atol=1e-5)
    assert model.backbone.mean == (0.485, 0.456, 0.406)  # vit_tiny: ImageNet statistics, not timm's 0.5

    # predictions come back in original pixels
    eval_ds, split = ad.build_data(card, root, "eval")
    batch = ad.collate([eval_ds[i] for i in range(3)])
    model.detector.score_thresh = 0.0  # an untrained model: keep whatever it finds
    preds = ad.predict(model, batch, card)
    from PIL import Image

    for p in preds:
        s = split.samples[p["index"]]
        w, h = Image.open(s.image).size
        b = p["boxes"]
        assert len(b) > 0 and b.shape[1] == 4 and len(p["scores"]) == len(b)
        assert float(b[:, 0].min()) >= 0 and float((b[:, 0] + b[:, 2]).max()) <= w + 0.01
        assert float((b[:, 1] + b[:, 3]).max()) <= h + 0.01 and max(w, h) > LONG


def test_training_boxes_clip_and_drop_inside_ignore():
    boxes = np.array([[10, 10, 20, 40], [-5, 0, 20, 30], [100, 100, 10, 20], [0, 0, 0.5, 10]], np.float32)
    ignore = np.array([[95, 95, 30, 40]], np.float32)
    b, ig = training_boxes(boxes, ignore, 120, 110)
    assert b.tolist() == [[10, 10, 30, 50], [0, 0, 15, 30]]  # clipped; inside-ignore and < 1 px dropped
    assert ig.tolist() == [[95, 95, 125, 135]]


def test_train_filters_turn_boxes_into_ignore_regions(tmp_path, card):
    from PIL import Image

    Image.new("RGB", (200, 100)).save(tmp_path / "a.png")
    boxes = np.array([[10, 10, 20, 60], [50, 10, 20, 60], [90, 10, 10, 30], [120, 10, 20, 60]], np.float32)
    visible = boxes.copy()
    visible[3, 3] = 10  # 1/6 visible
    sample = DetectionSample(tmp_path / "a.png", "a", boxes, visible, np.zeros((0, 4), np.float32),
                             labels=np.array([1, 2, 1, 1]), width=200, height=100)
    split = DatasetSplit("x", "train", "detection", [sample], DetectionMeta("x"))
    c = card.model_copy(update={"adapter": {**card.adapter, "train_labels": [1], "train_min_height": 50,
                                            "train_min_visibility": 0.65},
                                "input": card.input.model_copy(update={"height": 100, "width": 200}),
                                "augment": {"flip": 0.0}})
    item = DetectionDataset(split, c, train=True)[0]
    assert item["boxes"].tolist() == [[10, 10, 30, 70]]  # the rider, the short and the occluded are ignored
    assert len(item["ignore"]) == 3


def test_ignore_regions_are_not_penalised(card):
    model = _model(card).train()
    img = [torch.rand(3, SHORT, LONG)]
    empty = torch.zeros((0, 4))
    plain = model(img, [{"boxes": empty, "labels": torch.zeros(0, dtype=torch.long), "ignore": empty}])
    whole = torch.tensor([[0.0, 0.0, LONG, SHORT]])
    ignored = model(img, [{"boxes": empty, "labels": torch.zeros(0, dtype=torch.long), "ignore": whole}])
    assert plain["classification"].item() > 1e-6
    assert ignored["classification"].item() < 1e-12


def _perfect(split):
    return [{"index": i, "boxes": torch.from_numpy(s.boxes), "scores": torch.ones(len(s.boxes))}
            for i, s in enumerate(split.samples)]


def test_perfect_predictions_and_the_cli_agree(root, card, tmp_path):
    from hcbench.score import score_detection

    ad = get_adapter("detection")
    _, split = ad.build_data(card, root, "eval")
    path = ad.write_predictions(_perfect(split), split, card, tmp_path / "p.json")
    rows = json.loads(path.read_text())
    n = sum(len(s.boxes) for s in split.samples)
    assert len(rows) == n and set(rows[0]) == {"image_id", "bbox", "score"}
    m = ad.score(path, split, card)
    # the CrowdHuman toolkit integrates precision from the first detection: N perfect boxes -> (N-1)/N
    assert m["AP"] == pytest.approx((n - 1) / n) and m["MR-2"] == pytest.approx(0.0)
    assert m["JI"] == pytest.approx(1.0, abs=1e-5)
    assert score_detection(root / "annotation_val.odgt", path) == pytest.approx(m)

    # shifted boxes miss: AP collapses, MR-2 goes to 1
    shifted = [{**p, "boxes": p["boxes"] + torch.tensor([400.0, 0, 0, 0])} for p in _perfect(split)]
    bad = ad.score(ad.write_predictions(shifted, split, card, tmp_path / "s.json"), split, card)
    assert bad["AP"] == 0.0 and bad["MR-2"] == pytest.approx(1.0)

    path.write_text(json.dumps([{"image_id": "nope", "bbox": [0, 0, 1, 1], "score": 1.0}]))
    with pytest.raises(ValueError, match="unknown image id 'nope'"):
        ad.score(path, split, card)


def test_citypersons_protocol_scores_mr(tmp_path):
    from PIL import Image

    c = resolve(get_card("citypersons_det"), "smoke")
    samples = []
    for k in range(3):
        Image.new("RGB", (400, 200)).save(tmp_path / f"{k}.png")
        boxes = np.array([[20 + 100 * j, 20, 30, 80] for j in range(3)], np.float32)
        samples.append(DetectionSample(tmp_path / f"{k}.png", f"img{k}", boxes, boxes.copy(), np.zeros((0, 4), np.float32),
                                       labels=np.array([1, 1, 2]), width=400, height=200))
    split = DatasetSplit("citypersons", "val", "detection", samples, DetectionMeta("citypersons"))
    ad = get_adapter("detection")
    m = ad.score(ad.write_predictions(_perfect(split), split, c, tmp_path / "p.json"), split, c)
    assert set(m) == set(c.eval.metrics)
    assert m["MR-2"] == pytest.approx(0.0) and m["MR-2_heavy"] == -1.0  # no heavily occluded pedestrian
    none = [{"index": i, "boxes": torch.zeros((0, 4)), "scores": torch.zeros(0)} for i in range(3)]
    assert ad.score(ad.write_predictions(none, split, c, tmp_path / "n.json"), split, c)["MR-2"] == 1.0


def _evaluate(ad, model, card, eval_ds, split, path):
    model.eval()
    with torch.no_grad():
        preds = ad.predict(model, ad.collate([eval_ds[i] for i in range(len(eval_ds))]), card)
    model.train()
    return ad.score(ad.write_predictions(preds, split, card, path), split, card)


def test_short_training_run_learns(root, card, tmp_path):
    """50 AdamW steps of batch 4 at 128/160 px: the FCOS loss falls and AP beats the untrained model."""
    ad = get_adapter("detection")
    train_ds, _ = ad.build_data(card, root, "train")
    eval_ds, split = ad.build_data(card, root, "eval")
    model = _model(card)
    before = _evaluate(ad, model, card, eval_ds, split, tmp_path / "a.json")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    losses = []
    for _ in range(2):
        order = torch.randperm(len(train_ds), generator=g).tolist()
        for b in range(0, len(order), 4):
            loss = ad.loss(model, ad.collate([train_ds[i] for i in order[b:b + 4]]))["loss"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
    after = _evaluate(ad, model, card, eval_ds, split, tmp_path / "b.json")
    print(f"loss {np.mean(losses[:5]):.3f} -> {np.mean(losses[-5:]):.3f}; {before} -> {after}")
    assert len(losses) == 50
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.5
    assert before["AP"] < 0.01 and after["AP"] > before["AP"] + 0.03
    assert after["MR-2"] < before["MR-2"]
