"""Parsing adapter: FPN-lite head contract, flip test, label maps -> npz -> metrics, a short fit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hcbench.adapters.parsing import ParsingAdapter, class_flip_index, first_max_index
from hcbench.backbones import build_backbone
from hcbench.cards import TaskCard, get_card, resolve
from hcbench.data.cards import get_dataset_card, read_split
from hcbench.data.readers.parsing import write_h36m_parsing
from hcbench.data.transforms.image import load_label
from hcbench.data.types import DataFormatError
from hcbench.registry import ADAPTERS

LIP_META = get_dataset_card("lip").meta()


@pytest.fixture(autouse=True)
def _one_thread():
    # other jobs share the 2 cores: OpenMP with 2 threads then spins and runs ~10x slower
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from hcbench.synth import write_suite

    out = tmp_path_factory.mktemp("synth")
    return write_suite(out, "smoke", datasets=["synth_parsing"], fraction=0.4)["synth_parsing"]


def _card(name: str = "synth_parsing", tier: str = "smoke", **updates) -> TaskCard:
    data = resolve(get_card(name), tier).model_dump()
    for key, value in updates.items():
        section, _, field = key.partition("__")
        data[section] = {**data[section], field: value} if field else value
    return TaskCard.model_validate(data)


def _confusion_reference(pred: np.ndarray, gt: np.ndarray, n: int) -> np.ndarray:
    # a second implementation, independent of hcbench.metrics: a 2-D histogram
    keep = gt != 255
    return np.histogram2d(gt[keep], pred[keep], bins=n, range=[[0, n], [0, n]])[0]


def _miou_reference(mat: np.ndarray) -> float:
    tp = np.diag(mat)
    union = mat.sum(0) + mat.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


# --------------------------------------------------------------------------- contract
def test_registered_instance_and_card_keys():
    adapter = ADAPTERS.get("parsing")
    assert isinstance(adapter, ParsingAdapter) and adapter.predictions_suffix == ".npz"
    with pytest.raises(ValueError, match="decoder_chanels"):
        adapter.build_model(build_backbone("vit_tiny", (64, 64)), _card(adapter={"decoder_chanels": 8}))
    # left/right classes trade places, the others stay
    idx = class_flip_index(LIP_META)
    assert idx[14] == 15 and idx[17] == 16 and idx[19] == 18 and idx[5] == 5 and len(idx) == 20


@pytest.mark.parametrize("spec,size", [("vit_tiny", (64, 64)), ("vit_tiny", (72, 56)), ("timm:resnet18", (64, 64))])
def test_logits_shapes_loss_and_train_step(spec, size):
    card = _card(adapter={"pyramid_channels": 32, "decoder_channels": 32, "dropout": 0.0},
                 input={"height": size[0], "width": size[1]})
    adapter = ParsingAdapter()
    torch.manual_seed(0)
    model = adapter.build_model(build_backbone(spec, size), card)
    image = torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)
    label = torch.randint(0, 20, (2, *size))
    label[0, :10] = 255
    logits = model(image)
    assert logits.shape == (2, 20, *size) and torch.isfinite(logits).all()  # 72x56 is padded inside
    losses = adapter.loss(model, {"image": image, "label": label})
    # reference: mean negative log-likelihood over the non-ignored pixels
    with torch.no_grad():
        logp = model(image).log_softmax(1)
        keep = label != 255
        ref = -logp.permute(0, 2, 3, 1)[keep].gather(1, label[keep][:, None]).mean()
    torch.testing.assert_close(losses["loss"].detach(), ref, rtol=1e-5, atol=1e-6)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.zero_grad()
    losses["loss"].backward()
    named = dict(model.named_parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in named.values())
    assert sum(p.grad.abs().sum() for n, p in named.items() if n.startswith("backbone.")) > 0
    opt.step()
    assert adapter.loss(model, {"image": image, "label": label})["loss"].item() != pytest.approx(
        losses["loss"].item(), rel=1e-7)


def test_flip_test_of_a_symmetric_input_mirrors_with_class_swap():
    card = _card(adapter={"pyramid_channels": 32, "decoder_channels": 32}, input={"height": 64, "width": 64},
                 eval__flip_test=True)
    adapter = ParsingAdapter()
    torch.manual_seed(1)
    model = adapter.build_model(build_backbone("vit_tiny", (64, 64)), card).eval()
    torch.nn.init.normal_(model.head.classifier.weight, std=0.5)
    with torch.no_grad():  # only the left/right classes compete, so the swap is what is tested
        model.head.classifier.bias[:] = -100.0
        model.head.classifier.bias[14:20] = 0.0
    half = torch.randint(0, 256, (1, 3, 64, 32), dtype=torch.uint8)
    batch = {"image": torch.cat([half, half.flip(-1)], -1), "valid": torch.tensor([[64, 64]]),
             "orig_size": torch.tensor([[64, 64]]), "index": torch.tensor([0])}
    pred = adapter.predict(model, batch, card)[0]["label"]
    lut = LIP_META.flip_lut()
    np.testing.assert_array_equal(lut[pred[:, ::-1]], pred)
    assert len(np.unique(pred)) >= 4
    plain = adapter.predict(model, batch, card.model_copy(update={"eval": card.eval.model_copy(
        update={"flip_test": False})}))[0]["label"]
    assert (lut[plain[:, ::-1]] != plain).mean() > 0.05  # the raw network is not symmetric


def _batch_softmax_predict(model, batch, flip: bool) -> list[np.ndarray]:
    """The previous prediction path (softmax of the whole batch, mirrored mean, then each image's
    window resized): the per-image path must give the same label maps bit for bit."""
    images = batch["image"]
    prob = model(images).float().softmax(1)
    if flip:
        mirrored = model(images.flip(-1)).float().softmax(1)
        prob = 0.5 * (prob + mirrored.flip(-1).index_select(1, model.flip_index))
    out = []
    for i in range(len(images)):
        vh, vw = batch["valid"][i].tolist()
        oh, ow = batch["orig_size"][i].tolist()
        p = F.interpolate(prob[i:i + 1, :, :vh, :vw], size=(oh, ow), mode="bilinear", align_corners=False)
        out.append(p[0].argmax(0).to(torch.uint8).numpy())
    return out


def test_first_max_index_is_argmax_ties_and_nan_included():
    torch.manual_seed(0)
    probs = torch.randn(20, 37, 29).softmax(0)
    quantised = (probs * 4).round() / 4  # exact ties everywhere: the lowest channel must win
    signed_zeros = torch.zeros(5, 3, 3)
    signed_zeros[0] = -0.0  # -0 == +0: channel 0 is the first maximum
    with_nan = probs.clone()
    with_nan[7, 3, 4] = float("nan")  # max(0).indices points at the NaN channel there
    for x in (probs, quantised, signed_zeros, with_nan, probs[:1], torch.randn(300, 4, 5)):
        got = first_max_index(x)
        assert got.dtype == torch.uint8 and got.shape == x.shape[1:]
        assert torch.equal(got, x.max(0).indices.to(torch.uint8))
        if not torch.isnan(x).any():
            assert torch.equal(got, x.argmax(0).to(torch.uint8))
    assert (quantised == quantised.amax(0)).sum(0).max() > 1  # the tie case really has ties
    assert first_max_index(with_nan)[3, 4] == 7


@pytest.mark.parametrize("flip", [True, False])
def test_per_image_prediction_equals_the_batch_softmax_path(flip):
    card = _card(eval__flip_test=flip)

    class Net(torch.nn.Module):  # input-dependent logits, so the mirror differs from the image
        flip_index = torch.as_tensor(class_flip_index(LIP_META))

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 20, 5, padding=2)

        def forward(self, images):
            return 4 * self.conv(images.float() / 255)

    torch.manual_seed(3)
    net = Net().eval()
    # padded windows of different sizes and shapes, resized up and down to their original sizes
    batch = {"image": torch.randint(0, 256, (3, 3, 48, 64), dtype=torch.uint8),
             "valid": torch.tensor([[48, 64], [40, 50], [30, 64]]),
             "orig_size": torch.tensor([[96, 128], [37, 41], [75, 160]]), "index": torch.tensor([5, 6, 7])}
    with torch.no_grad():
        got = ParsingAdapter().predict(net, batch, card)
        want = _batch_softmax_predict(net, batch, flip)
    assert [p["index"] for p in got] == [5, 6, 7]
    for g, w in zip(got, want, strict=True):
        assert g["label"].shape == w.shape and g["label"].dtype == np.uint8
        np.testing.assert_array_equal(g["label"], w)
        assert len(np.unique(w)) >= 5  # not a trivial map


# --------------------------------------------------------------------------- data, predictions, metrics
def test_eval_items_and_original_resolution_round_trip(synth_root, tmp_path):
    """Label -> eval item (keep-ratio fit + pad) -> one-hot "logits" -> prediction at the original
    size gives the label back except on part boundaries."""
    card = _card(eval__flip_test=False)
    adapter = ParsingAdapter()
    ds, split = adapter.build_data(card, synth_root, "eval")
    item = ds[0]
    h, w = card.input.height, card.input.width
    assert item["image"].shape == (3, h, w) and item["image"].dtype == torch.uint8
    vh, vw = item["valid"].tolist()
    assert max(vh / h, vw / w) == pytest.approx(1.0, abs=0.02)  # fitted, aspect kept
    assert (item["label"][vh:] == 255).all() and (item["label"][:, vw:] == 255).all()

    class OneHot(torch.nn.Module):
        flip_index = torch.as_tensor(class_flip_index(LIP_META))

        def forward(self, images):
            lab = self.label.clone()
            lab[lab == 255] = 0
            return F.one_hot(lab, 20).permute(0, 3, 1, 2).float() * 10

    echo, preds = OneHot(), []
    for i in range(len(ds)):
        batch = adapter.collate([ds[i]])
        echo.label = batch["label"]
        preds += adapter.predict(echo, batch, card)
    path = adapter.write_predictions(preds, split, card, tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(s.sample_id for s in split.samples)
        for s in split.samples:
            assert z[s.sample_id].shape == load_label(s.label).shape and z[s.sample_id].dtype == np.uint8
    m = adapter.score(path, split, card)
    assert m["pixel_acc"] > 0.97 and m["mIoU"] > 0.75


def test_ground_truth_scores_one_and_perturbation_matches_reference(synth_root, tmp_path):
    card = _card()
    adapter = ParsingAdapter()
    split = read_split("synth_parsing", "val", synth_root)
    gts = [load_label(s.label) for s in split.samples]
    adapter.write_predictions([{"index": i, "label": g} for i, g in enumerate(gts)], split, card,
                              tmp_path / "gt.npz")
    m = adapter.score(tmp_path / "gt.npz", split, card)
    assert m["mIoU"] == 1.0 and m["pixel_acc"] == 1.0 and m["mean_acc"] == 1.0
    # predict every image mirrored with swapped classes, and drop the hair
    lut = LIP_META.flip_lut()
    preds = []
    for g in gts:
        p = lut[g[:, ::-1]].copy()
        p[p == 2] = 0
        preds.append(p)
    adapter.write_predictions([{"index": i, "label": p} for i, p in enumerate(preds)], split, card,
                              tmp_path / "p.npz")
    m = adapter.score(tmp_path / "p.npz", split, card)
    mat = sum(_confusion_reference(p, g, 20) for p, g in zip(preds, gts, strict=True))
    assert m["mIoU"] == pytest.approx(_miou_reference(mat))
    assert m["pixel_acc"] == pytest.approx(np.trace(mat) / mat.sum())
    assert m["IoU/Hair"] == 0.0 and "IoU/Glove" not in m  # glove never occurs: undefined, omitted
    assert all(0.0 <= v <= 1.0 for v in m.values())


def test_h36m_raw_ids_are_remapped_before_scoring(tmp_path):
    card = _card("h36m_parsing", "full")
    raw_ids = [0, 1, 2, 3, 6, 7, 8, 17, 18, 19, 25, 26, 27, 32, 33, 34, 38, 39, 43, 44, 46, 49, 50, 56, 58]
    rng = np.random.default_rng(0)
    items = []
    for i in range(3):
        raw = rng.choice(raw_ids, size=(24, 32)).astype(np.uint8)
        raw[0, 0] = 59  # not one of the 25: ignored
        items.append((rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), raw, f"S9/Walking.5/{i:08d}"))
    write_h36m_parsing(tmp_path, "val", items, list_name="flist_2hz_eval.txt")
    split = read_split("h36m_parsing", "val", tmp_path)
    lut = split.meta.remap_lut()
    train_ids = [lut[raw] for _, raw, _ in items]
    preds = [{"index": i, "label": np.where(t == 255, 0, t).astype(np.uint8)} for i, t in enumerate(train_ids)]
    adapter = ParsingAdapter()
    adapter.write_predictions(preds, split, card, tmp_path / "p.npz")
    assert adapter.score(tmp_path / "p.npz", split, card)["mIoU"] == 1.0
    # the raw ids themselves are not valid predictions
    bad = [{"index": i, "label": raw} for i, (_, raw, _) in enumerate(items)]
    adapter.write_predictions(bad, split, card, tmp_path / "raw.npz")
    with pytest.raises(DataFormatError, match="outside 0..24"):
        adapter.score(tmp_path / "raw.npz", split, card)


def test_bad_prediction_files_name_the_sample(synth_root, tmp_path):
    card = _card()
    adapter = ParsingAdapter()
    split = read_split("synth_parsing", "val", synth_root, limit=3)
    gts = [load_label(s.label) for s in split.samples]
    adapter.write_predictions([{"index": i, "label": g} for i, g in enumerate(gts[:2])], split, card,
                              tmp_path / "missing.npz")
    with pytest.raises(DataFormatError, match=split.samples[2].sample_id):
        adapter.score(tmp_path / "missing.npz", split, card)
    arrays = {s.sample_id: g for s, g in zip(split.samples, gts, strict=True)}
    arrays[split.samples[1].sample_id] = gts[1][:-1]
    np.savez_compressed(tmp_path / "shape.npz", **arrays)
    with pytest.raises(DataFormatError, match="expected uint8"):
        adapter.score(tmp_path / "shape.npz", split, card)
    arrays[split.samples[1].sample_id] = np.array([{"pickled": 1}], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (tmp_path / "pickle.npz").write_bytes(buf.getvalue())
    with pytest.raises(DataFormatError, match="pickle"):
        adapter.score(tmp_path / "pickle.npz", split, card)


# --------------------------------------------------------------------------- a short fit
def test_short_fit_on_synth_beats_the_untrained_model(synth_root, tmp_path):
    card = _card()  # the smoke suite's own card
    adapter = ParsingAdapter()
    train_ds, _ = adapter.build_data(card, synth_root, "train")
    eval_ds, split = adapter.build_data(card, synth_root, "eval")
    torch.manual_seed(0)
    model = adapter.build_model(build_backbone("vit_tiny", (card.input.height, card.input.width)), card)

    def evaluate(name):
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(eval_ds), 12):
                preds += adapter.predict(model, adapter.collate([eval_ds[j] for j in range(i, min(i + 12, len(eval_ds)))]),
                                         card)
        model.train()
        return adapter.score(adapter.write_predictions(preds, split, card, tmp_path / f"{name}.npz"), split, card)

    before = evaluate("before")
    opt = torch.optim.AdamW(model.parameters(), lr=card.optim.lr, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        idx = torch.randint(0, len(train_ds), (8,), generator=g).tolist()
        loss = adapter.loss(model, adapter.collate([train_ds[i] for i in idx]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = evaluate("after")
    # measured (seeded, 1 thread): loss 2.4 -> 0.7; pixel_acc 0.001 -> 0.83 and mIoU 0.0001 ->
    # 0.064 (40 steps learn the background; the full synth card gets a little further)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    assert after["pixel_acc"] > 0.75 and after["pixel_acc"] > before["pixel_acc"] + 0.5, (before, after)
    assert after["mIoU"] > before["mIoU"] + 0.04, (before, after)
