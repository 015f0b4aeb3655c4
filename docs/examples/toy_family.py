"""A sixth task family from outside hcbench: ``toy_bright``, regress an image's mean brightness.

Everything a family needs, in one file that ``--include`` loads (or an installed package names
under the ``hcbench.families`` / ``hcbench.datasets`` / ``hcbench.backbones`` entry points):

    hcbench --include docs/examples/toy_family.py data synth --datasets toy_synth --out data
    hcbench --include docs/examples/toy_family.py run --backbone toy_vit \\
        --card docs/examples/toy_bright.yaml --tier smoke --root data
    hcbench --include docs/examples/toy_family.py score toy_bright --card docs/examples/toy_bright.yaml \\
        --gt data/toy_synth --pred results/adhoc/toy_vit/toy_bright.predictions.json
    hcbench --include docs/examples/toy_family.py leaderboard

tests/families/test_plugin_family.py runs exactly this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import read_split, register_dataset_card
from hcbench.data.types import DataFormatError, DatasetSplit
from hcbench.families.base import Family, MetricKey, OptionsModel, ScoreArg, SynthDataset
from hcbench.families.evaluator import BaseEvaluator, ScoreUsageError, exists, jsonable, read_json
from hcbench.registry import BACKBONES, DATASETS, FAMILIES

HERE = Path(__file__).resolve().parent
FAMILY_NAME = "toy_bright"


# --------------------------------------------------------------------------- 1. a backbone
@BACKBONES.register("toy_vit", description="a 2-block ViT-Ti (the docs' examples and tests)")
def toy_vit(img_size: tuple[int, int] = (32, 32)):
    from hcbench.backbones.timm_backbone import TimmBackbone

    return TimmBackbone("vit_tiny_patch16_224", img_size=img_size, depth=2)


# --------------------------------------------------------------------------- 2. a dataset reader
@dataclass
class BrightSample:
    image: Path
    value: float  # mean brightness in [0, 1]


@DATASETS.register("toy_csv", description="<split>.csv rows 'file,value' + images/<split>/")
def read_toy_csv(root: Path, split: str, card: Any, *, limit: int | None = None) -> DatasetSplit:
    files = card.split(split).files
    path = Path(root) / files["labels"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels of split {split!r} missing")
    samples = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, _, value = line.partition(",")
        try:
            v = float(value)
        except ValueError:
            raise DataFormatError(path, f"value {value!r} is not a number", record=f"line {line_no}") from None
        samples.append(BrightSample(Path(root) / files["images"] / name, v))
    return DatasetSplit(card.name, split, FAMILY_NAME, samples[:limit], None, files=[path])


def write_toy(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, dict]:
    """The synthetic dataset: grey 32x32 images with noise; the label is their mean brightness."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    shown: dict[str, list] = {}
    for split, n in counts.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            img = np.clip(rng.uniform(0.1, 0.9) * 255 + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / "images" / split / f"{i:04d}.png")
            rows.append(f"{i:04d}.png,{img.mean() / 255:.6f}")
            if i < keep:
                shown.setdefault(split, []).append(img)
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return {"note": "toy brightness data"}, shown


# --------------------------------------------------------------------------- 3. the evaluator
class ToyEvalOptions(OptionsModel):
    tolerance: float = 0.1  # "within" counts predictions closer than this


class ToyAdapterOptions(OptionsModel):
    dropout: float = 0.0


def _relative(sample: BrightSample, split: DatasetSplit) -> str:
    return sample.image.name


class ToyEvaluator(BaseEvaluator):
    """Predictions file: a JSON list of ``{"file", "value"}``; metrics: ``mae`` (lower is better)
    and ``within`` (the fraction closer than ``eval.options.tolerance``)."""

    family = FAMILY_NAME
    predictions_suffix = ".json"

    def write(self, predictions, split, card, path):
        from hcbench.io import atomic_write_json

        rows = [{"file": _relative(split.samples[int(p["index"])], split), "value": round(float(p["value"]), 6)}
                for p in sorted(predictions, key=lambda p: int(p["index"]))]
        atomic_write_json(Path(path), rows)
        return Path(path)

    def read(self, path, split, card=None) -> np.ndarray:
        rows = read_json(Path(path), "predictions")
        by_file = {}
        for i, r in enumerate(rows if isinstance(rows, list) else []):
            if not isinstance(r, dict) or not isinstance(r.get("value"), (int, float)):
                raise DataFormatError(path, "expected {file, value}", record=i)
            by_file[r.get("file")] = float(r["value"])
        missing = [_relative(s, split) for s in split.samples if _relative(s, split) not in by_file]
        if not isinstance(rows, list) or missing:
            raise DataFormatError(path, f"no prediction for {missing[:3]}" if missing else "expected a JSON list")
        return np.array([by_file[_relative(s, split)] for s in split.samples])

    def score(self, path, split, card):
        pred = self.read(path, split, card)
        gt = np.array([s.value for s in split.samples])
        tol = ToyEvalOptions.model_validate(card.eval.options).tolerance
        err = np.abs(pred - gt)
        return {"mae": float(err.mean()), "within": float((err < tol).mean())}

    def score_files(self, pred, gt=None, card=None, *, tolerance=None):
        if card is None:
            raise ScoreUsageError("hcbench score toy_bright: pass --card (the toy family scores cards only)")
        if tolerance is not None:
            raise ScoreUsageError(f"card {card.name!r} fixes the tolerance; drop --tolerance")
        return jsonable(self.score(exists(pred, "predictions"), self.split_from_gt(card, gt), card))


EVALUATOR = ToyEvaluator()


# --------------------------------------------------------------------------- 4. the adapter
class ToyAdapter:
    """Backbone embedding -> linear -> sigmoid -> brightness; MSE loss. Images reach the model in
    [0, 1]; the backbone normalises them with its own mean/std."""

    family = FAMILY_NAME
    predictions_suffix = ".json"

    def build_data(self, card, root, role, *, limit=None):
        import torch
        from torch.utils.data import Dataset

        from hcbench.adapters.base import split_name
        from hcbench.data.transforms.image import load_rgb

        split = (EVALUATOR.eval_split(card, root, limit) if role == "eval"
                 else read_split(card.dataset.name, split_name(card, role), root, limit=limit))
        size = (card.input.height, card.input.width)

        class Items(Dataset):
            def __len__(self):
                return len(split.samples)

            def __getitem__(self, i):
                img = torch.from_numpy(np.array(load_rgb(split.samples[i].image))).permute(2, 0, 1).float() / 255
                img = torch.nn.functional.interpolate(img[None], size=size, mode="bilinear")[0]
                return {"index": i, "image": img, "value": torch.tensor(split.samples[i].value)}

        return Items(), split

    def collate(self, items):
        import torch

        return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("index", "image", "value")}

    def train_sampler(self, dataset, card, seed):
        return None

    def build_model(self, backbone, card):
        import torch
        from torch import nn

        opts = ToyAdapterOptions.model_validate(card.adapter)

        class ToyModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                self.head = nn.Sequential(nn.Dropout(opts.dropout), nn.Linear(backbone.embed_dim, 1))

            def forward(self, images):
                emb = self.backbone(images).embedding
                return torch.sigmoid(self.head(emb).squeeze(1))  # in [0, 1], so the MAE is a fraction too

        return ToyModel()

    def loss(self, model, batch):
        import torch.nn.functional as F

        mse = F.mse_loss(model(batch["image"]).float(), batch["value"].float())
        return {"loss": mse, "mse": mse.detach()}

    def predict(self, model, batch, card):
        out = model(batch["image"]).float().cpu()
        return [{"index": int(i), "value": float(v)} for i, v in zip(batch["index"].tolist(), out, strict=True)]

    def write_predictions(self, predictions, split, card, path):
        return EVALUATOR.write(predictions, split, card, path)

    def score(self, path, split, card):
        return EVALUATOR.score(path, split, card)


# --------------------------------------------------------------------------- 5. the family
FAMILY = Family(
    name=FAMILY_NAME,
    label="Brightness",
    description="toy regression of an image's mean brightness (the extension example)",
    metrics=(MetricKey("mae", higher_is_better=False), MetricKey("within")),
    adapter=ToyAdapter,
    evaluator=EVALUATOR,
    adapter_options=ToyAdapterOptions,
    eval_options=ToyEvalOptions,
    sample_type=BrightSample,
    synthetic=(SynthDataset("toy_synth", {"smoke": {"train": 24, "val": 8}, "small": {"train": 200, "val": 50}},
                            write=write_toy),),
    score_args=(ScoreArg("--tolerance", "tolerance", type=float, help="(fixed by the card)"),),
    score_help="MAE / within-tolerance of brightness predictions (--card required)",
)
FAMILIES.add(FAMILY_NAME, FAMILY)
register_dataset_card(HERE / "toy_synth.yaml")  # its dataset card, kept beside the plugin (after the family)
