"""The text-to-image adapter: CLIP tokenisation, an OpenAI-layout text checkpoint (random weights,
keys as the release names them) loading with no missing or unexpected key, the SDM loss against
its formula, and one training step / prediction / scoring pass on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.adapters.t2i_text import (
    EOT_ID,
    MASK_ID,
    SOT_ID,
    TextCheckpointError,
    TextEncoder,
    load_clip_text,
    mask_tokens,
    tokenize,
)


def openai_text_state_dict(layers: int, width: int, embed: int, context: int = 77, vocab: int = 49408,
                           visual: bool = True) -> dict[str, torch.Tensor]:
    """A CLIP state dict with random values, named and shaped as OpenAI's ``model.state_dict()``
    (written out here from the release's layout, not from hcbench's module)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02  # noqa: E731
    sd = {"positional_embedding": r(context, width), "text_projection": r(width, embed),
          "logit_scale": torch.tensor(4.6052), "token_embedding.weight": r(vocab, width),
          "ln_final.weight": torch.ones(width), "ln_final.bias": torch.zeros(width)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        sd |= {p + "attn.in_proj_weight": r(3 * width, width), p + "attn.in_proj_bias": r(3 * width),
               p + "attn.out_proj.weight": r(width, width), p + "attn.out_proj.bias": r(width),
               p + "ln_1.weight": torch.ones(width), p + "ln_1.bias": torch.zeros(width),
               p + "mlp.c_fc.weight": r(4 * width, width), p + "mlp.c_fc.bias": r(4 * width),
               p + "mlp.c_proj.weight": r(width, 4 * width), p + "mlp.c_proj.bias": r(width),
               p + "ln_2.weight": torch.ones(width), p + "ln_2.bias": torch.zeros(width)}
    if visual:
        sd |= {"visual.class_embedding": r(32), "visual.conv1.weight": r(32, 3, 16, 16),
               "visual.proj": r(32, embed), "visual.transformer.resblocks.0.ln_1.weight": torch.ones(32)}
    return sd


def test_tokenize_is_clip_bpe():
    ids = tokenize("a photo of a cat", 77)
    assert ids.shape == (77,) and ids.dtype == torch.long
    assert ids[:7].tolist() == [SOT_ID, 320, 1125, 539, 320, 2368, EOT_ID] and not ids[7:].any()
    assert tokenize("A Photo  of a CAT", 77).equal(ids)  # lower-cased, whitespace cleaned
    long = tokenize(" ".join(["red"] * 100), 20)
    assert long.shape == (20,) and long[0] == SOT_ID and long[-1] == EOT_ID and long.argmax() == 19


def test_mask_tokens_keeps_special_tokens():
    ids = tokenize("a man in a black jacket and blue jeans with a red backpack", 32)
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(3))
    picked = labels > 0
    assert picked.any() and labels[picked].equal(ids[picked])
    assert masked[0] == SOT_ID and (masked == EOT_ID).sum() == 1 and not masked[ids == 0].any()
    assert ((masked == MASK_ID) <= picked).all()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_openai_layout_text_checkpoint_loads_exactly(tmp_path: Path, suffix: str):
    sd = openai_text_state_dict(layers=2, width=64, embed=32, context=77)
    path = tmp_path / f"clip{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    enc = TextEncoder(embed_dim=32, context_length=77, width=64, layers=2, heads=4)
    own = enc.state_dict()
    text_keys = {k for k in sd if not k.startswith("visual.") and k != "logit_scale"}
    assert set(own) == text_keys  # no missing, no unexpected key
    rep = load_clip_text(enc, path)
    assert rep.loaded == len(text_keys) and rep.ignored_visual == 4 and rep.ignored_other == ["logit_scale"]
    for k in text_keys:
        assert torch.equal(enc.state_dict()[k], sd[k]), k
    _, eot = enc(torch.stack([tokenize("a man in red", 77), tokenize("a woman", 77)]))
    assert eot.shape == (2, 32) and torch.isfinite(eot).all()


def test_text_checkpoint_errors(tmp_path: Path):
    enc = TextEncoder(embed_dim=32, context_length=77, width=64, layers=2, heads=4)
    sd = openai_text_state_dict(layers=3, width=64, embed=32)
    torch.save(sd, tmp_path / "deep.pt")
    with pytest.raises(TextCheckpointError, match=r"deep.pt: .*unexpected 12 key\(s\): transformer.resblocks.2"):
        load_clip_text(enc, tmp_path / "deep.pt")
    sd = openai_text_state_dict(layers=2, width=64, embed=32, context=40)
    torch.save(sd, tmp_path / "short.pt")
    with pytest.raises(TextCheckpointError, match=r"positional_embedding \(40, 64\) vs \(77, 64\)"):
        load_clip_text(enc, tmp_path / "short.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(TextCheckpointError, match="refused"):
        load_clip_text(enc, tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError):
        load_clip_text(enc, tmp_path / "nothing.pt")


def test_sdm_loss_matches_its_formula():
    from hcbench.adapters.t2i import sdm_loss

    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    pids = torch.tensor([0, 0, 1, 2, 2, 2])
    got = float(sdm_loss(img, txt, pids, 50.0))
    i = img.numpy() / np.linalg.norm(img.numpy(), axis=1, keepdims=True)
    t = txt.numpy() / np.linalg.norm(txt.numpy(), axis=1, keepdims=True)
    y = (pids.numpy()[:, None] == pids.numpy()[None]).astype(np.float64)
    q = y / y.sum(1, keepdims=True)
    want = 0.0
    for s in (50.0 * t @ i.T, 50.0 * i @ t.T):
        s = s - s.max(1, keepdims=True)
        p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
        want += np.mean(np.sum(p * (np.log(p) - np.log(q + 1e-8)), 1))
    assert got == pytest.approx(want, rel=1e-5)


@pytest.fixture(scope="module")
def tiny_t2i(tmp_path_factory) -> Path:
    from hcbench.synth.t2i import write_t2i_synth

    root = tmp_path_factory.mktemp("t2i") / "synth_t2i"
    write_t2i_synth(root, 6, 2, 3, 2, seed=0)
    return root


def _card(**adapter):
    from hcbench.cards import TaskCard, get_card, resolve

    d = resolve(get_card("synth_t2i"), "smoke").model_dump()
    d["adapter"] = {**d["adapter"], "num_ids": 6, **adapter}
    d["adapter"]["text"] = {**d["adapter"]["text"], "layers": 1, "width": 32, "heads": 2}
    d["input"] = {"height": 32, "width": 16}
    return TaskCard.model_validate(d)


@pytest.mark.parametrize("mlm", [False, True])
def test_train_step_predict_write_score(tiny_t2i: Path, tmp_path: Path, mlm: bool):
    from hcbench.adapters.t2i import T2IAdapter
    from hcbench.backbones import build_backbone

    card = _card(mlm=mlm, cmt_depth=1, embed_dim=32)
    ad = T2IAdapter()
    train, split = ad.build_data(card, tiny_t2i, "train")
    assert len(train) == 6 * 2 * 2  # every caption of every training image is a pair
    model = ad.build_model(build_backbone("vit_tiny", (32, 16)), card)
    batch = ad.collate([train[i] for i in range(8)])
    assert batch["images"].shape == (8, 3, 32, 16) and batch["tokens"].shape == (8, 64)
    losses = ad.loss(model, batch)
    assert set(losses) == {"loss", "sdm", "id"} | ({"mlm"} if mlm else set())
    losses["loss"].backward()
    assert model.text.token_embedding.weight.grad is not None and model.image_proj.weight.grad is not None

    model.eval()
    ev, test = ad.build_data(card, tiny_t2i, "eval")
    assert len(ev) == 3 * 2 + 3 * 2 * 2  # images, then captions
    preds = []
    for lo in range(0, len(ev), 5):  # batches mixing images and captions
        preds += ad.predict(model, ad.collate([ev[i] for i in range(lo, min(lo + 5, len(ev)))]), card)
    path = ad.write_predictions(preds, test, card, tmp_path / "p.npz")
    with np.load(path) as z:
        assert z["image_feats"].shape == (6, 32) and z["text_feats"].shape == (12, 32)
        assert z["text_pids"].tolist() == [s.pid for s in test.samples for _ in s.captions]
        assert str(z["captions"][0]) == test.samples[0].captions[0]
    m = ad.score(path, test, card)
    assert set(m) == {"rank1", "rank5", "rank10", "mAP", "mINP"} and 0 <= m["rank1"] <= m["rank5"] <= 1


def test_eval_limit_keeps_a_match_for_every_caption(tiny_t2i: Path):
    from hcbench.adapters.t2i import T2IAdapter

    ev, split = T2IAdapter().build_data(_card(), tiny_t2i, "eval", limit=1)
    assert len(split.samples) == 2 and len({s.pid for s in split.samples}) == 1  # the first image + its twin


def test_score_cli_from_feature_files(tiny_t2i: Path, tmp_path: Path, capsys):
    """``hcbench score t2i --pred FEATS.npz [--gt reid_raw.json]``: JSON metrics; ids are checked."""
    from hcbench.cli import main
    from hcbench.data.cards import get_dataset_card
    from hcbench.data.readers.t2i import read_cuhkpedes
    from hcbench.metrics.t2i import evaluate_t2i

    test = read_cuhkpedes(tiny_t2i, "test", get_dataset_card("synth_t2i"))
    rng = np.random.default_rng(0)
    ip = np.array([s.pid for s in test.samples])
    tp = np.array([s.pid for s in test.samples for _ in s.captions])
    feats = {"image_feats": rng.normal(size=(len(ip), 8)).astype(np.float32),
             "text_feats": rng.normal(size=(len(tp), 8)).astype(np.float32), "image_pids": ip, "text_pids": tp}
    np.savez(tmp_path / "f.npz", **feats)
    want = evaluate_t2i(feats["text_feats"], feats["image_feats"], tp, ip)
    assert main(["score", "t2i", "--pred", str(tmp_path / "f.npz"), "--gt", str(tiny_t2i / "reid_raw.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rank1"] == pytest.approx(want["rank1"]) and out["mAP"] == pytest.approx(want["mAP"])
    np.savez(tmp_path / "bad.npz", **{**feats, "text_pids": tp[::-1].copy()})
    assert main(["score", "t2i", "--pred", str(tmp_path / "bad.npz"), "--gt", str(tiny_t2i / "reid_raw.json")]) != 0
