"""Fashion adapter + evaluator: training step, predictions file, scoring (also from `hcbench score fashion`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.adapters.base import get_adapter
from hcbench.backbones import build_backbone
from hcbench.cards import get_card, resolve
from hcbench.cli import main
from hcbench.families.fashion_eval import EVALUATOR


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory) -> Path:
    from hcbench.synth.fashion import write_fashion

    root = tmp_path_factory.mktemp("fash") / "synth_fashion"
    write_fashion(root, {"train": 6, "val": 4}, seed=3)
    return root


def _perfect(split) -> list[dict]:
    """Predictions equal to the ground truth, as the adapter hands them to the evaluator."""
    preds = []
    n_att = split.meta.num_attributes
    index = split.meta.attribute_index()
    for i, s in enumerate(split.samples):
        probs = np.zeros((len(s.annotations), n_att), np.float32)
        for k, a in enumerate(s.annotations):
            probs[k, [index[t] for t in a.attribute_ids]] = 0.9
        preds.append({"index": i, "boxes": torch.tensor([a.bbox for a in s.annotations]).reshape(-1, 4),
                      "scores": torch.linspace(0.9, 0.5, len(s.annotations)),
                      "labels": torch.tensor([a.category_id for a in s.annotations]),
                      "masks": [a.segmentation for a in s.annotations], "attributes": torch.from_numpy(probs)})
    return preds


def test_evaluator_scores_perfect_predictions_as_one(fashion_root, tmp_path):
    card = resolve(get_card("synth_fashion"), "smoke")
    split = EVALUATOR.eval_split(card, fashion_root)
    path = EVALUATOR.write(_perfect(split), split, card, tmp_path / "p.json")
    rows = json.loads(path.read_text())
    assert {"image_id", "category_id", "bbox", "score", "segmentation", "attribute_ids"} <= set(rows[0])
    m = EVALUATOR.score(path, split, card)
    for k in ("mask_AP", "mask_AP50", "mask_AP_f1", "box_AP", "box_AP_f1"):
        assert m[k] == pytest.approx(1.0), k
    # wrong attributes on every garment: IoU-only AP stays 1, IoU + F1 AP drops
    for r in rows:
        r["attribute_ids"] = [a for a in range(split.meta.num_attributes) if a not in r["attribute_ids"]][:4]
    path.write_text(json.dumps(rows))
    m2 = EVALUATOR.score(path, split, card)
    assert m2["mask_AP"] == pytest.approx(1.0) and m2["mask_AP_f1"] < 0.5


def test_train_step_predict_and_score(fashion_root, tmp_path):
    torch.manual_seed(0)
    card = resolve(get_card("synth_fashion"), "smoke")
    adapter = get_adapter("fashion")
    backbone = build_backbone("vit_tiny", (card.input.height, card.input.width))
    model = adapter.build_model(backbone, card)
    assert model.backbone is backbone
    train_ds, _ = adapter.build_data(card, fashion_root, "train")
    item = train_ds[0]
    assert item["image"].shape[0] == 3 and item["masks"].shape[1:] == item["image"].shape[1:]
    assert item["attributes"].shape == (len(item["boxes"]), 18)
    aug = card.augment
    assert max(item["image"].shape[1:]) <= aug["scale"] * aug["ratio_range"][1] + 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    batch = adapter.collate([train_ds[i] for i in range(2)])
    losses = adapter.loss(model, batch)
    assert {"loss", "loss_classifier", "loss_mask", "loss_attribute", "loss_objectness"} <= set(losses)
    assert torch.isfinite(losses["loss"])
    opt.zero_grad()
    losses["loss"].backward()
    assert model.detector.roi_heads.attribute_predictor.weight.grad.abs().sum() > 0
    opt.step()

    model.eval()
    eval_ds, split = adapter.build_data(card, fashion_root, "eval")
    preds = adapter.predict(model, adapter.collate([eval_ds[i] for i in range(len(eval_ds))]), card)
    assert [p["index"] for p in preds] == list(range(len(split.samples)))
    for p, s in zip(preds, split.samples, strict=True):
        assert all(r["size"] == [s.height, s.width] for r in p["masks"])  # original pixels
        assert set(p["labels"].tolist()) <= set(split.meta.category_ids)
        assert p["attributes"].shape == (len(p["masks"]), 18)
    path = adapter.write_predictions(preds, split, card, tmp_path / "pred.json")
    metrics = adapter.score(path, split, card)
    assert set(card.eval.metrics) <= set(metrics)
    assert all(-1.0 <= v <= 1.0 for v in metrics.values())


def _score(capsys, *argv):
    rc = main(["score", "fashion", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def test_score_cli(fashion_root, tmp_path, capsys):
    card = resolve(get_card("synth_fashion"), "smoke")
    split = EVALUATOR.eval_split(card, fashion_root)
    pred = EVALUATOR.write(_perfect(split), split, card, tmp_path / "p.json")
    gt = fashion_root / "instances_attributes_val2020.json"
    rc, out, err = _score(capsys, "--gt", gt, "--pred", pred)
    assert rc == 0, err
    # without a card the F1 constraint applies to Fashionpedia's categories: of ours, top/pants/shorts/skirt
    assert out["mask_AP"] == pytest.approx(1.0) and out["mask_AP_f1"] == pytest.approx(1.0)
    rc, out2, err = _score(capsys, "--card", "synth_fashion", "--gt", fashion_root, "--pred", pred)
    assert rc == 0, err
    assert out2["mask_AP_f1"] == pytest.approx(1.0)
    rc, out3, err = _score(capsys, "--gt", gt, "--pred", pred, "--attribute-categories", "1,6")
    assert rc == 0, err
    assert out3["box_AP"] == pytest.approx(1.0)

    rows = json.loads(pred.read_text())
    bad = tmp_path / "bad.json"
    for key, value, match in [
        ("image_id", 5, "unknown image id 5"),
        ("category_id", 2, "unknown category id 2"),
        ("attribute_ids", [77], "attribute ids [77] are not in the ground truth's attributes"),
        ("segmentation", [[1, 2, 3, 4, 5, 6]], "segmentation must be an RLE object"),
        ("score", "high", "is not a finite number"),
    ]:
        r = [dict(x) for x in rows]
        r[1] = {**r[1], key: value}
        bad.write_text(json.dumps(r))
        rc, _, err = _score(capsys, "--gt", gt, "--pred", bad)
        assert rc == 2 and f"{bad} [record 1]" in err and match in err, (key, err)
    rc, _, err = _score(capsys, "--gt", gt, "--pred", tmp_path / "nope.json")
    assert rc == 2 and "nope.json" in err


def test_class_agnostic_box_and_mask_heads_share_one_prediction(fashion_root):
    """adapter.box_class_agnostic / mask_class_agnostic: every category reads the same deltas and mask
    logits, so torchvision's loss (the label's slice) trains one regressor and one mask for all."""
    torch.manual_seed(0)
    card = resolve(get_card("synth_fashion"), "smoke")
    data = card.model_dump()
    data["adapter"] = {**data["adapter"], "box_class_agnostic": True, "mask_class_agnostic": True}
    card = type(card).model_validate(data)
    adapter = get_adapter("fashion")
    model = adapter.build_model(build_backbone("vit_tiny", (card.input.height, card.input.width)), card)
    heads = model.detector.roi_heads
    n = 1 + 7
    scores, deltas = heads.box_predictor(torch.randn(5, heads.box_predictor.cls_score.in_features))
    assert scores.shape == (5, n) and deltas.shape == (5, 4 * n)
    assert torch.equal(deltas.view(5, n, 4), deltas[:, :4].unsqueeze(1).expand(5, n, 4))
    masks = heads.mask_predictor(torch.randn(3, card.adapter["mask_head_channels"], 14, 14))
    assert masks.shape == (3, n, 28, 28) and torch.equal(masks, masks[:, :1].expand_as(masks))
    train_ds, _ = adapter.build_data(card, fashion_root, "train")
    model.train()
    losses = adapter.loss(model, adapter.collate([train_ds[i] for i in range(2)]))
    losses["loss"].backward()
    assert heads.box_predictor.bbox_pred.weight.shape[0] == 4 and heads.box_predictor.bbox_pred.weight.grad.abs().sum() > 0
    assert heads.mask_predictor.predictor.mask_fcn_logits.out_channels == 1
    assert heads.mask_predictor.predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
