"""``hcbench score <family> --card NAME --gt ROOT`` on the built-in benchmark cards whose datasets
have writers in hcbench (parsing, ReID, attributes): a tiny copy in the real on-disk layout,
perfect predictions written by the family's evaluator (as ``hcbench run`` writes them), and the
command's numbers equal the evaluator's and are perfect. (Pose and detection cards:
tests/families/test_score_cards.py; synthetic cards: tests/families/test_contracts.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hcbench.cards import get_card, resolve
from hcbench.cli import main
from hcbench.data.cards import get_dataset_card
from hcbench.families.base import get_family

RNG = np.random.default_rng(0)


def _img(h: int = 24, w: int = 12) -> np.ndarray:
    return RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- builders
def _parsing_items(n: int, num_classes: int, sids: list[str]):
    out = []
    for i in range(n):
        label = RNG.integers(0, num_classes, (10, 8)).astype(np.uint8)
        out.append((_img(10, 8), label, sids[i]))
    return out


def build_lip(root: Path, name: str) -> None:
    from hcbench.data.readers.parsing import write_cihp, write_lip

    k = get_dataset_card(name).meta().num_classes
    writer = write_lip if name == "lip" else write_cihp
    writer(root, "val", _parsing_items(3, k, ["100_1", "101_2", "102_3"]))


def build_h36m(root: Path, name: str) -> None:
    from hcbench.data.readers.parsing import write_h36m_parsing

    raw = sorted(get_dataset_card(name).label_map)  # raw part ids the card maps to classes
    items = []
    for i in range(3):
        label = np.asarray(raw, np.uint8)[RNG.integers(0, len(raw), (10, 8))]
        items.append((_img(10, 8), label, f"S9/Walking.5499/{i:08d}"))
    write_h36m_parsing(root, "val", items)


def _reid_items():
    # 3 identities, each seen by two cameras in the gallery; one query each
    items = []
    for pid in (1, 2, 3):
        items += [(_img(), pid, 0, "query"), (_img(), pid, 1, "gallery"), (_img(), pid, 1, "gallery")]
    items += [(_img(), 4, 0, "gallery"), (_img(), 5, 0, "train"), (_img(), 5, 1, "train")]
    return items


def build_market(root: Path, name: str) -> None:
    from hcbench.data.readers.reid import write_market1501

    write_market1501(root, _reid_items())


def build_msmt(root: Path, name: str) -> None:
    from hcbench.data.readers.reid import write_msmt17

    write_msmt17(root, _reid_items())


def build_cuhk03(root: Path, name: str) -> None:
    from hcbench.data.readers.reid import write_cuhk03_np

    write_cuhk03_np(root, _reid_items())


def _labels(n: int, a: int) -> np.ndarray:
    lab = (RNG.uniform(size=(n, a)) < 0.4).astype(np.uint8)
    lab[4] = np.arange(a) % 2  # every attribute has a positive and a negative in the test rows (4..7),
    lab[5] = 1 - lab[4]  # and every row a positive (an empty row has instance accuracy 0)
    lab[6:, 0] = 1
    return lab


def build_pa100k(root: Path, name: str) -> None:
    from hcbench.data.readers.attributes import write_pa100k_mat

    attrs = get_dataset_card(name).attributes
    names = [f"{i:06d}.jpg" for i in range(8)]
    write_pa100k_mat(root, names, _labels(8, len(attrs)), attrs, {"train": [0, 1, 2], "val": [3], "test": [4, 5, 6, 7]},
                     images=[_img() for _ in names])


def _parts():
    return [{"train": [0, 1, 2], "val": [3], "test": [4, 5, 6, 7]}]


def build_peta(root: Path, name: str) -> None:
    from hcbench.data.readers.attributes import write_peta_mat

    attrs = get_dataset_card(name).attributes
    write_peta_mat(root, _labels(8, len(attrs)), attrs, _parts(), images=[_img() for _ in range(8)])


def build_rapv2(root: Path, name: str) -> None:
    from hcbench.data.readers.attributes import write_rapv2_mat

    attrs = get_dataset_card(name).attributes
    names = [f"CAM01_{i:04d}.png" for i in range(8)]
    write_rapv2_mat(root, names, _labels(8, len(attrs)), attrs, list(range(len(attrs))), _parts(),
                    images=[_img() for _ in names])


BUILDERS = {"lip": build_lip, "cihp": build_lip, "h36m_parsing": build_h36m, "market1501": build_market,
            "msmt17": build_msmt, "cuhk03_np": build_cuhk03, "pa100k_mat": build_pa100k, "peta_mat": build_peta,
            "rapv2_mat": build_rapv2}
CARDS = ["lip_parsing", "cihp_parsing", "h36m_parsing", "market_reid", "msmt_reid", "cuhk03_reid", "pa100k_attr",
         "peta_attr", "rapv2_attr"]


# --------------------------------------------------------------------------- perfect predictions
def _perfect(family: str, split) -> list[dict]:
    if family == "parsing":
        from hcbench.data.transforms.image import load_label

        remap = split.meta.remap_lut()
        return [{"index": i, "label": remap[load_label(s.label)]} for i, s in enumerate(split.samples)]
    if family == "reid":
        pids = sorted({s.pid for s in split.samples})
        eye = np.eye(len(pids), dtype=np.float32)
        return [{"index": i, "feat": eye[pids.index(s.pid)]} for i, s in enumerate(split.samples)]
    return [{"index": i, "probs": s.labels.astype(np.float32)} for i, s in enumerate(split.samples)]


PERFECT = {"parsing": {"mIoU": 1.0, "pixel_acc": 1.0, "mean_acc": 1.0},
           "reid": {"mAP": 1.0, "rank1": 1.0, "mINP": 1.0},
           "attributes": {"mA": 1.0, "accuracy": 1.0, "F1": 1.0}}


@pytest.mark.parametrize("name", CARDS)
def test_score_card_on_a_tiny_copy_of_its_dataset(name, tmp_path, capsys):
    card = resolve(get_card(name))
    ds = get_dataset_card(card.dataset.name)
    root = tmp_path / card.dataset.name
    BUILDERS[ds.format](root, ds.name)
    ev = get_family(card.family).get_evaluator()
    split = ev.eval_split(card, root)
    assert len(split.samples) > 0
    pred = ev.write(_perfect(card.family, split), split, card, tmp_path / f"{name}.predictions{ev.predictions_suffix}")

    rc = main(["score", card.family, "--card", name, "--gt", str(root), "--pred", str(pred)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    got = json.loads(out)
    want = ev.score(pred, split, card)
    assert set(card.eval.metrics) <= set(got)
    assert got == pytest.approx({k: (None if v != v else v) for k, v in want.items()}, abs=1e-12)
    for k, v in PERFECT[card.family].items():
        assert got[k] == pytest.approx(v), k
