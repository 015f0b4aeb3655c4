"""Contract tests that enroll every registered plugin: each family, adapter, dataset reader and
pretraining method found in the registries (not a hand-written list) is built and run through
its contract on tiny synthetic data. A new plugin is tested by being registered.

- family: its parts load, its option models refuse unknown keys, and on its synthetic dataset
  build_data -> build_model (a 1-block ViT-Ti) -> loss -> predict -> write -> score works, the
  evaluator reads back what it wrote, and ``hcbench score --card`` gives the run's numbers;
- adapter: satisfies the TaskAdapter protocol and is its family's adapter;
- reader: reads every split of a synthetic dataset in its format into the family's types;
- pretraining method: one optimizer-free step (forward + backward) on a tiny multi-view batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.adapters.base import TaskAdapter
from hcbench.cards import list_cards, resolve
from hcbench.families.base import Evaluator, Family, families
from hcbench.registry import ADAPTERS, DATASETS, FAMILIES, PRETRAINERS

FAMILY_NAMES = [f.name for f in families()]
FRACTION = 0.04  # of the smoke counts (every count stays >= 2)
EVAL_LIMIT = 6


def _tiny_backbone(card):
    from hcbench.backbones.timm_backbone import TimmBackbone

    torch.manual_seed(0)
    return TimmBackbone("vit_tiny_patch16_224", img_size=(card.input.height, card.input.width), depth=1)


def _synthetic_card(fam: Family):
    """A card in tasks/ on one of the family's synthetic datasets, resolved at its smoke tier."""
    names = {s.name for s in fam.synthetic}
    cards = sorted((c for c in list_cards(fam.name) if c.dataset.name in names), key=lambda c: c.name)
    return resolve(cards[0], "smoke") if cards else None


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("contract-synth")


def _dataset(root: Path, name: str) -> Path:
    from hcbench.synth import write_suite

    if not (root / name).is_dir():
        write_suite(root, "smoke", seed=0, datasets=[name], fraction=FRACTION)
    return root / name


# --------------------------------------------------------------------------- families
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_spec(name):
    fam = FAMILIES.get(name)
    assert isinstance(fam, Family) and fam.name == name and fam.label and fam.metrics
    ev = fam.get_evaluator()
    assert isinstance(ev, Evaluator) and ev.predictions_suffix.startswith(".")
    adapter = fam.get_adapter()
    assert isinstance(adapter, TaskAdapter) and adapter.family == name
    assert adapter.predictions_suffix == ev.predictions_suffix
    for which in ("adapter", "eval.options", "augment"):
        if fam._model(which) is None:
            continue
        fam.parse_options(which, {})  # every option has a default
        with pytest.raises(ValueError, match="unknown .* key 'no_such_option'"):
            fam.parse_options(which, {"no_such_option": 1}, "a-card")
    for spec in fam.synthetic:
        assert "smoke" in spec.sizes, spec.name
    for card in list_cards(name):  # every card of the family names metrics the family declares
        for m in card.eval.metrics:
            assert fam.metric(m) is not None, f"{card.name}: metric {m!r} is not declared by family {name!r}"


def _first_batch(adapter, ds, card, n: int):
    sampler = adapter.train_sampler(ds, card, seed=0)
    idx = list(iter(sampler))[: card.schedule.batch_size] if sampler is not None else list(range(min(n, len(ds))))
    return adapter.collate([ds[i] for i in idx])


def _fraction(v) -> bool:
    return v is None or (isinstance(v, float) and (math.isnan(v) or v == -1.0 or 0.0 <= v <= 1.0))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_runs_its_contract_on_synthetic_data(name, synth_root, tmp_path):
    from hcbench.score import score_family

    fam = FAMILIES.get(name)
    card = _synthetic_card(fam)
    if card is None:
        pytest.skip(f"family {name!r} has no card on a synthetic dataset in tasks/")
    # a small batch (ReID's P x K sampler then needs only 2 identities of the tiny split)
    card = card.model_copy(update={"schedule": card.schedule.model_copy(
        update={"eval_limit": EVAL_LIMIT, "batch_size": min(card.schedule.batch_size, 8)})})
    root = _dataset(synth_root, card.dataset.name)
    adapter, ev = fam.get_adapter(), fam.get_evaluator()
    torch.manual_seed(0)
    model = adapter.build_model(_tiny_backbone(card), card)
    assert hasattr(model, "backbone")

    train_ds, _ = adapter.build_data(card, root, "train")
    model.train()
    losses = adapter.loss(model, _first_batch(adapter, train_ds, card, 2))
    assert torch.isfinite(losses["loss"]) and losses["loss"].requires_grad
    losses["loss"].backward()

    eval_ds, split = adapter.build_data(card, root, "eval", limit=EVAL_LIMIT)
    assert len(split.samples) > 0 and len(eval_ds) > 0
    assert [type(s) for s in split.samples[:1]] == [fam.sample_type] or fam.sample_type is None
    same = ev.eval_split(card, root, EVAL_LIMIT)  # what re-scoring and `hcbench score` read
    assert len(same.samples) == len(split.samples)
    model.eval()
    preds = []
    for s in range(0, len(eval_ds), 4):
        preds += adapter.predict(model, adapter.collate([eval_ds[i] for i in range(s, min(s + 4, len(eval_ds)))]), card)
    path = tmp_path / f"{card.name}.predictions{ev.predictions_suffix}"
    adapter.write_predictions(preds, split, card, path)
    metrics = adapter.score(path, split, card)
    assert set(card.eval.metrics) <= set(metrics), (card.eval.metrics, sorted(metrics))
    assert all(_fraction(None if v is None else float(v)) for v in metrics.values()), metrics
    assert ev.score(path, same, card) == metrics  # run and re-scoring: one code path
    ev.read(path, split, card)
    # `hcbench score <family> --card`, with the ground truth as the dataset root
    card_file = tmp_path / f"{card.name}.yaml"
    _write_card(card, card_file)
    scored = score_family(name, path, root, card=str(card_file), tier="smoke")
    for m in card.eval.metrics:
        want = metrics[m]
        assert scored[m] == (None if want is None or (isinstance(want, float) and math.isnan(want))
                             else pytest.approx(float(want), abs=1e-12)), m


def _write_card(card, path: Path) -> None:
    """The (limited) smoke card as a full card file whose smoke tier reproduces it."""
    import yaml

    data = card.model_dump(mode="json", exclude={"tier"})
    data["tiers"] = {"smoke": {k: v for k, v in data["schedule"].items()
                               if k in ("eval_limit",) and v is not None}}
    path.write_text(yaml.safe_dump(data))


# --------------------------------------------------------------------------- adapters
@pytest.mark.parametrize("name", ADAPTERS.names())
def test_adapter_is_its_family_adapter(name):
    adapter = ADAPTERS.get(name)
    assert isinstance(adapter, TaskAdapter)
    assert adapter.family in FAMILIES and FAMILIES.get(adapter.family).get_adapter() is adapter


# --------------------------------------------------------------------------- dataset readers
def _synthetic_cards_by_format() -> dict[str, str]:
    from hcbench.data.cards import list_dataset_cards

    out: dict[str, str] = {}
    synth = {s.name for f in families() for s in f.synthetic}
    for c in list_dataset_cards():
        if c.synthetic and c.name in synth:
            out.setdefault(c.format, c.name)
    return out


@pytest.mark.parametrize("fmt", DATASETS.names())
def test_reader_reads_synthetic_data_in_its_format(fmt, synth_root):
    from hcbench.data.cards import get_dataset_card, read_split

    dataset = _synthetic_cards_by_format().get(fmt)
    if dataset is None:
        pytest.skip(f"no synthetic dataset is written in format {fmt!r}; its reader is tested on "
                    "writer round trips and real samples in tests/data")
    card = get_dataset_card(dataset)
    fam = FAMILIES.get(card.family)
    root = _dataset(synth_root, dataset)
    for split in card.splits:
        ds = read_split(dataset, split, root)
        assert ds.family == card.family and len(ds) > 0, split
        assert fam.sample_type is None or all(isinstance(s, fam.sample_type) for s in ds.samples)
        assert fam.meta_type is None or isinstance(ds.meta, fam.meta_type)
        assert all(Path(f).exists() for f in ds.files)
        assert len(read_split(dataset, split, root, limit=2)) <= max(2, len(ds))


# --------------------------------------------------------------------------- pretraining methods
@pytest.mark.parametrize("name", PRETRAINERS.names())
def test_pretraining_method_takes_one_step(name, tmp_path):
    from PIL import Image

    from hcbench.backbones.timm_backbone import TimmBackbone
    from hcbench.pretrain import get_method
    from hcbench.pretrain.views import MultiViewDataset, ViewConfig, collate_views, list_images

    cls = get_method(name)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (96, 48, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    views = ViewConfig(global_size=(64, 32), local_size=(32, 32), canvas_size=(64, 64))
    torch.manual_seed(0)
    ds = MultiViewDataset(list_images(tmp_path), views)
    batch = collate_views([ds[i] for i in range(2)])
    student = TimmBackbone("vit_tiny_patch16_224", img_size=views.global_size, depth=2)  # SAIP reads 2 blocks
    teacher = (TimmBackbone("vit_small_patch16_224", img_size=views.global_size, depth=1)
               if cls.needs_teacher else None)
    options = cls.Options.preset("small")
    method = cls(student, teacher, options)
    if not cls.trains:
        return
    out = method(batch, 0.0)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert any(p.grad is not None for p in method.student.parameters())
    method.after_step(0.0)
