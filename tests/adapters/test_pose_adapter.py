"""Pose adapter: UDP codec, heatmap head contract, flip test, predictions -> metrics, a short fit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.adapters.pose import PoseAdapter, TopDownDataset, adapter_options, num_deconv_for
from hcbench.adapters.pose_codec import decode_heatmaps, encode_udp, heatmap_scale
from hcbench.backbones import build_backbone
from hcbench.cards import TaskCard, get_card, resolve
from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.coco import read_coco_keypoints
from hcbench.data.readers.mpii import read_mpii_json
from hcbench.data.transforms.pose import flip_heatmaps, flip_keypoints
from hcbench.families.pose_eval import prediction_records
from hcbench.registry import ADAPTERS

REAL = Path(__file__).resolve().parents[2] / "tests" / "real-samples"
COCO_META = get_dataset_card("coco").meta()


@pytest.fixture(autouse=True)
def _one_thread():
    # other jobs share the 2 cores: OpenMP with 2 threads then spins and runs ~10x slower
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _real(name: str) -> Path:
    if not (REAL / name).is_dir():
        pytest.skip(f"real sample files not found at {REAL / name}")
    return REAL / name


def _card(name: str = "coco_pose", tier: str = "smoke", **updates) -> TaskCard:
    card = resolve(get_card(name), tier)
    data = card.model_dump()
    for key, value in updates.items():
        section, _, field = key.partition("__")
        if field:
            data[section] = {**data[section], field: value}
        else:
            data[section] = value
    return TaskCard.model_validate(data)


# --------------------------------------------------------------------------- codec
def _interior_keypoints(rng, n, input_wh, margin_hm):
    w, h = input_wh[0] // 4, input_wh[1] // 4
    s = heatmap_scale(input_wh, (w, h))
    xs = rng.uniform(margin_hm, w - 1 - margin_hm, n) * s[0]
    ys = rng.uniform(margin_hm, h - 1 - margin_hm, n) * s[1]
    return np.stack([xs, ys], 1).astype(np.float32)


@pytest.mark.parametrize("input_wh,sigma", [((192, 256), 2.0), ((96, 128), 2.0), ((96, 128), 1.0)])
def test_udp_encode_decode_recovers_keypoints(input_wh, sigma):
    rng = np.random.default_rng(0)
    kp = _interior_keypoints(rng, 200, input_wh, margin_hm=6)
    hm_wh = (input_wh[0] // 4, input_wh[1] // 4)
    heat, weights = encode_udp(kp, np.ones(len(kp)), input_wh, hm_wh, sigma)
    assert heat.shape == (200, hm_wh[1], hm_wh[0]) and np.all(weights == 1)
    # independent check of the target: a 2-D Gaussian sums to 2 pi sigma^2 (window holds > 99%)
    np.testing.assert_allclose(heat.sum((1, 2)), 2 * math.pi * sigma**2, rtol=0.02)
    dec, scores = decode_heatmaps(torch.from_numpy(heat)[None], input_wh)  # DARK-UDP, 11x11 blur
    assert np.abs(dec[0].numpy() - kp).max() < 0.5
    assert np.abs(dec[0].numpy() - kp).max() < 0.01  # exact on a noise-free Gaussian
    assert scores.min() > 0.75
    # without smoothing the Newton step is exact everywhere but the outermost heatmap pixel
    kp_all = _interior_keypoints(rng, 200, input_wh, margin_hm=1)
    heat, _ = encode_udp(kp_all, np.ones(200), input_wh, hm_wh, sigma)
    dec, _ = decode_heatmaps(torch.from_numpy(heat)[None], input_wh, blur_kernel=0)
    assert np.abs(dec[0].numpy() - kp_all).max() < 0.01
    # the integer argmax alone is off by up to half a heatmap pixel (x the stride)
    dec, _ = decode_heatmaps(torch.from_numpy(heat)[None], input_wh, refine="none")
    err = np.abs(dec[0].numpy() - kp_all).max()
    assert 1.0 < err <= 0.5 * heatmap_scale(input_wh, hm_wh).max() + 1e-4


def test_udp_flip_alignment_needs_no_shift():
    input_wh, hm_wh = (96, 128), (24, 32)
    rng = np.random.default_rng(1)
    kp = np.concatenate([_interior_keypoints(rng, 17, input_wh, 6), np.ones((17, 1), np.float32)], 1)
    flip_index = COCO_META.flip_index()
    mirrored = flip_keypoints(kp, flip_index, input_wh[0])  # what a flipped crop would hold
    heat, _ = encode_udp(kp[:, :2], kp[:, 2], input_wh, hm_wh, 2.0)
    heat_m, _ = encode_udp(mirrored[:, :2], mirrored[:, 2], input_wh, hm_wh, 2.0)
    back = flip_heatmaps(torch.from_numpy(heat_m), flip_index)
    np.testing.assert_allclose(back.numpy(), heat, atol=1e-6)
    dec, _ = decode_heatmaps(back[None], input_wh)
    assert np.abs(dec[0].numpy() - kp[:, :2]).max() < 0.5


def test_encode_weights_unlabelled_and_far_outside():
    kp = np.array([[40.0, 50.0], [0.0, 0.0], [-100.0, 50.0], [95.5, 127.0]], np.float32)
    heat, w = encode_udp(kp, np.array([2, 0, 2, 1]), (96, 128), (24, 32), 2.0)
    assert w.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert heat[1].max() == 0 and heat[2].max() == 0
    assert heat[3].max() > 0.9  # on the last pixel: UDP maps W - 1 onto w - 1


# --------------------------------------------------------------------------- model contract
def test_registered_instance_and_card_keys():
    adapter = ADAPTERS.get("pose")
    assert isinstance(adapter, PoseAdapter) and adapter.predictions_suffix == ".json"
    with pytest.raises(ValueError, match="deconv_chanels"):
        adapter_options(_card(adapter={"deconv_chanels": 64}))
    with pytest.raises(ValueError, match="deconv_layers 3"):
        adapter_options(_card(adapter={"deconv_layers": 3}))
    with pytest.raises(ValueError, match="stride 24"):
        num_deconv_for(24, 4)
    assert [num_deconv_for(s, 4) for s in (4, 8, 16, 32)] == [0, 1, 2, 3]


@pytest.mark.parametrize("spec", ["vit_tiny", "timm:resnet18"])
def test_heatmap_head_shapes_and_train_step(spec):
    card = _card("synth_pose", adapter={"deconv_channels": 32, "codec": {"sigma": 2}},
                 input={"height": 64, "width": 64})
    adapter = PoseAdapter()
    backbone = build_backbone(spec, (64, 64))
    model = adapter.build_model(backbone, card)
    assert len([m for m in model.head.deconv if isinstance(m, torch.nn.ConvTranspose2d)]) == num_deconv_for(
        backbone.stride, 4)
    torch.manual_seed(0)
    batch = {"image": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
             "heatmaps": torch.rand(2, 17, 16, 16), "weights": torch.ones(2, 17)}
    batch["weights"][0, :5] = 0
    assert model(batch["image"]).shape == (2, 17, 16, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = adapter.loss(model, batch)
    assert set(losses) >= {"loss"} and torch.isfinite(losses["loss"])
    # the loss is the masked mean squared error (mmpose KeypointMSELoss, use_target_weight)
    with torch.no_grad():
        pred = model(batch["image"])
        ref = ((pred - batch["heatmaps"]) ** 2 * batch["weights"][:, :, None, None]).mean()
    torch.testing.assert_close(losses["loss"].detach(), ref, rtol=1e-5, atol=1e-8)
    opt.zero_grad()
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for n, g in zip(model.state_dict(), grads, strict=False) if "backbone" in n)
    opt.step()
    assert adapter.loss(model, batch)["loss"].item() != pytest.approx(losses["loss"].item(), rel=1e-7)


def test_flip_test_of_a_symmetric_input_is_symmetric():
    card = _card("synth_pose", adapter={"deconv_channels": 32}, input={"height": 64, "width": 48},
                 eval__flip_test=True)
    adapter = PoseAdapter()
    torch.manual_seed(3)
    model = adapter.build_model(build_backbone("vit_tiny", (64, 48)), card).eval()
    torch.nn.init.normal_(model.head.final.weight, std=0.2)  # away from the near-constant initial output
    half = torch.randint(0, 256, (2, 3, 64, 24), dtype=torch.uint8)
    image = torch.cat([half, half.flip(-1)], dim=-1)  # mirror-symmetric: W - 1 - x == x
    batch = {"image": image, "matrix": torch.tensor([[[1.0, 0, 0], [0, 1, 0]]] * 2, dtype=torch.float64),
             "index": torch.arange(2)}
    preds = adapter.predict(model, batch, card)
    for p in preds:
        kp = p["keypoints"]
        for a, b in COCO_META.flip_pairs:
            assert kp[a, 0] + kp[b, 0] == pytest.approx(47.0, abs=1e-3)
            assert kp[a, 1] == pytest.approx(kp[b, 1], abs=1e-3)
            assert p["scores"][a] == pytest.approx(p["scores"][b], rel=1e-5)
    # without flip test the raw network is not symmetric, so the test above is not vacuous
    plain = adapter.predict(model, batch, card.model_copy(update={"eval": card.eval.model_copy(
        update={"flip_test": False})}))
    asym = max(abs(p["keypoints"][a, 0] + p["keypoints"][b, 0] - 47.0) for p in plain for a, b in COCO_META.flip_pairs)
    assert asym > 0.5


# --------------------------------------------------------------------------- predictions -> metrics
def _gt_predictions(split):
    return [{"index": i, "keypoints": s.keypoints[:, :2].copy(), "scores": np.ones(len(s.keypoints), np.float32)}
            for i, s in enumerate(split.samples)]


@pytest.mark.parametrize("folder,file,card_name,primary", [
    ("coco", "test_coco.json", "coco_pose", "AP"),
    ("aic", "test_aic.json", "aic_pose", "AP"),
    ("crowdpose", "test_crowdpose.json", "crowdpose_pose", "AP"),
])
def test_ground_truth_as_predictions_scores_one(tmp_path, folder, file, card_name, primary):
    root = _real(folder)
    card = _card(card_name, "full")
    meta = get_dataset_card(card.dataset.name).meta()
    split = read_coco_keypoints(root / file, root, meta, name=card.dataset.name, split=card.dataset.split)
    adapter = PoseAdapter()
    path = adapter.write_predictions(_gt_predictions(split), split, card, tmp_path / "p.json")
    results = json.loads(path.read_text())
    assert len(results) == len(split.samples)
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score", "index"}
    metrics = adapter.score(path, split, card)
    for m in card.eval.metrics:
        assert metrics[m] in (1.0, -1.0), (m, metrics[m])  # -1: no person of that size/crowd level
    assert metrics[primary] == 1.0
    # moving every wrist by 30 px must cost AP
    moved = _gt_predictions(split)
    for p in moved:
        p["keypoints"][[9, 10] if folder == "coco" else [2, 5], 0] += 30
    adapter.write_predictions(moved, split, card, tmp_path / "m.json")
    assert adapter.score(tmp_path / "m.json", split, card)[primary] < 0.9


def test_pipeline_geometry_round_trip_on_real_coco(tmp_path):
    """Crop -> UDP target -> decode -> inverse affine gives back the annotation (AP ~ 1)."""
    root = _real("coco")
    card = _card("coco_pose", "full", eval__flip_test=False)
    split = read_coco_keypoints(root / "test_coco.json", root, COCO_META, name="coco", split="val2017")
    ds = TopDownDataset(split, card, train=False)
    adapter = PoseAdapter()

    class TargetEcho(torch.nn.Module):  # a "model" that outputs the ground-truth heatmaps
        input_wh = (192, 256)
        flip_index = torch.as_tensor(COCO_META.flip_index())

        def forward(self, images):
            return self.heat

    preds, echo = [], TargetEcho()
    for i in range(len(ds)):
        batch = adapter.collate([ds[i]])
        echo.heat = batch["heatmaps"]
        preds += adapter.predict(echo, batch, card)
    for p in preds:
        inst = split.samples[p["index"]]
        inside = batch_weights = ds[p["index"]]["weights"].numpy() > 0
        err = np.linalg.norm(p["keypoints"][inside] - inst.keypoints[inside, :2], axis=1)
        # exact up to float error, except joints near the crop border, which the decoder's
        # zero-padded smoothing pulls inwards (here by at most ~0.35 image px)
        assert np.median(err) < 1e-3 and err.max() < 0.5, (p["index"], err)
        assert batch_weights.sum() == (inst.keypoints[:, 2] > 0).sum()
    adapter.write_predictions(preds, split, card, tmp_path / "p.json")
    assert adapter.score(tmp_path / "p.json", split, card)["AP"] == 1.0


def test_detected_boxes_from_the_dataset_layout(tmp_path):
    root = _real("coco")
    data = tmp_path / "coco"
    (data / "annotations").mkdir(parents=True)
    (data / "person_detection_results").mkdir()
    (data / "annotations" / "person_keypoints_val2017.json").symlink_to(root / "test_coco.json")
    (data / "val2017").symlink_to(root, target_is_directory=True)
    (data / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json").symlink_to(
        root / "test_coco_det_AP_H_56.json")
    card = _card("coco_pose", "full", input={"height": 256, "width": 192, "boxes": "detected"})
    ds, split = PoseAdapter().build_data(card, data, "eval")
    dets = json.loads((root / "test_coco_det_AP_H_56.json").read_text())
    assert len(ds) == len(split.samples) == len([d for d in dets if d.get("category_id", 1) == 1])
    assert split.extra["boxes"] == "detected"
    assert sorted(s.score for s in split.samples) == sorted(d["score"] for d in dets)
    item = ds[0]
    assert item["image"].shape == (3, 256, 192) and item["image"].dtype == torch.uint8


def test_rescoring_with_box_score_and_oks_nms():
    root = _real("coco")
    card = _card("coco_pose", "full")
    split = read_coco_keypoints(root / "test_coco.json", root, COCO_META, name="coco", split="val2017")
    split.samples[0].score = 0.5
    preds = _gt_predictions(split)
    preds[0]["scores"][:] = np.linspace(0.11, 0.91, 17)  # 0.21..0.91 pass the 0.2 threshold
    dup = {**preds[1], "index": 1}
    records = prediction_records(preds + [dup], split, card)  # a duplicate index is dropped
    assert len(records) == len(split.samples)
    expected = 0.5 * np.linspace(0.11, 0.91, 17)[np.linspace(0.11, 0.91, 17) > 0.2].mean()
    assert records[0]["score"] == pytest.approx(expected, abs=1e-6)
    # two identical poses in one image: OKS-NMS keeps the higher-scored one
    split.samples.append(split.samples[1])
    twin = {**preds[1], "index": len(split.samples) - 1, "scores": np.full(17, 0.5, np.float32)}
    kept = prediction_records(preds + [twin], split, card)
    assert len(kept) == len(split.samples) - 1 and all(r["index"] != twin["index"] for r in kept)


def test_pckh_from_predictions(tmp_path):
    root = _real("mpii")
    card = _card("mpii_pose", "full")
    meta = get_dataset_card("mpii").meta()
    split = read_mpii_json(root / "test_mpii.json", root, meta)
    for s in split.samples:  # the samples ship no head-box .mat: use a fixed normaliser
        s.head_size = 20.0
    adapter = PoseAdapter()
    preds = _gt_predictions(split)
    adapter.write_predictions(preds, split, card, tmp_path / "gt.json")
    assert adapter.score(tmp_path / "gt.json", split, card)["PCKh"] == 1.0
    # shift joint 0 by 9 px (inside 0.5 x 20) and joint 1 by 11 px (outside) in every person
    for p in preds:
        p["keypoints"][0, 0] += 9.0
        p["keypoints"][1, 1] += 11.0
    adapter.write_predictions(preds, split, card, tmp_path / "p.json")
    m = adapter.score(tmp_path / "p.json", split, card)
    vis = np.stack([s.keypoints[:, 2] > 0 for s in split.samples])
    counted = vis[:, [j for j in range(16) if j not in (6, 7)]].sum()
    assert m["PCKh"] == pytest.approx(1 - vis[:, 1].sum() / counted)
    assert m["PCKh@0.1"] == pytest.approx(1 - (vis[:, 0].sum() + vis[:, 1].sum()) / counted)


# --------------------------------------------------------------------------- a short fit
def test_short_fit_on_synth_beats_the_untrained_model(tmp_path):
    from hcbench.synth import write_suite

    root = write_suite(tmp_path, "smoke", datasets=["synth_pose"], fraction=0.4)["synth_pose"]
    card = _card("synth_pose")  # 64 x 48 crops, the smoke suite's own card
    adapter = PoseAdapter()
    train_ds, _ = adapter.build_data(card, root, "train")
    eval_ds, split = adapter.build_data(card, root, "eval")
    torch.manual_seed(0)
    model = adapter.build_model(build_backbone("vit_tiny", (64, 48)), card)

    def evaluate(name):
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(eval_ds), 20):
                batch = adapter.collate([eval_ds[j] for j in range(i, min(i + 20, len(eval_ds)))])
                preds += adapter.predict(model, batch, card)
        model.train()
        path = adapter.write_predictions(preds, split, card, tmp_path / f"{name}.json")
        return adapter.score(path, split, card)

    before = evaluate("before")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(45):
        idx = torch.randint(0, len(train_ds), (16,), generator=g).tolist()
        loss = adapter.loss(model, adapter.collate([train_ds[i] for i in idx]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = evaluate("after")
    # measured: loss 0.032 -> 0.021, PCK@0.1 0.05 -> 0.33 (seeded, 1 thread)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert before["PCK"] < 0.1
    assert after["PCK"] > before["PCK"] + 0.2, (before, after)
