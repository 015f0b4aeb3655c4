"""Fashionpedia reader: a small file in the real layout, the synthetic writer round trip, bad records."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.fashionpedia import decode_mask, encode_mask, ground_truth, read_fashionpedia
from hcbench.data.types import DataFormatError

FP_CLASSES = get_dataset_card("fashionpedia").classes


def _real_like() -> dict:
    """Three images in the layout of instances_attributes_val2020.json (fields as the released file
    and fashionpedia-api's data/sample.json show them): polygon, compressed and uncompressed RLE
    masks, non-contiguous attribute ids, extra image fields, an image without annotations."""
    cats = [{"id": i, "name": n, "supercategory": "upperbody", "level": 2, "taxonomy_id": f"cat{i:06d}"}
            for i, n in enumerate(FP_CLASSES)]
    att_ids = [0, 1, 2, 113, 115, 156, 198, 298, 317, 340]
    atts = [{"id": a, "name": f"att {a}", "supercategory": "nickname", "level": 1, "taxonomy_id": f"att{a:06d}_00"}
            for a in att_ids]
    img = {"license": 4, "time_captured": "March-August, 2018", "isstatic": 1, "kaggle_id": "x"}
    images = [{**img, "id": 9813, "width": 618, "height": 1000, "file_name": "000000009813.jpg",
               "original_url": "https://example.org/a.jpg"},
              {**img, "id": 10223, "width": 100, "height": 80, "file_name": "000000010223.jpg", "original_url": ""},
              {**img, "id": 31, "width": 50, "height": 40, "file_name": "e5d7b6f1a3c4.jpg", "original_url": ""}]
    m = np.zeros((80, 100), np.uint8)
    m[10:30, 20:60] = 1
    rle = encode_mask(m)
    fortran = np.asfortranarray(m)
    runs, last, n = [], 0, 0  # uncompressed RLE: column-major run lengths starting with zeros
    for v in fortran.ravel(order="F"):
        if v != last:
            runs.append(n)
            n, last = 0, v
        n += 1
    runs.append(n)
    anns = [
        {"id": 16, "image_id": 9813, "category_id": 24, "attribute_ids": [],
         "segmentation": [[194, 890, 191, 902, 187, 913, 185, 920, 190, 934, 197, 935, 208, 935, 221, 933]],
         "area": 921.0, "iscrowd": 0, "bbox": [185.0, 890.0, 36.0, 45.0]},
        {"id": 18, "image_id": 9813, "category_id": 10, "attribute_ids": [317, 115, 113],
         "segmentation": [[182, 186, 168, 188, 144, 193, 133, 201, 123, 249, 113, 304], [300, 300, 320, 300, 320, 330]],
         "area": 6000.5, "iscrowd": 0, "bbox": [113.0, 186.0, 207.0, 144.0]},
        {"id": 34, "image_id": 10223, "category_id": 6, "attribute_ids": [340, 2], "segmentation": rle,
         "area": 800.0, "iscrowd": 0, "bbox": [20.0, 10.0, 40.0, 20.0]},
        {"id": 35, "image_id": 10223, "category_id": 32, "attribute_ids": [156, 198],
         "segmentation": {"size": [80, 100], "counts": runs}, "iscrowd": 0},  # no area/bbox: computed
    ]
    return {"info": {"year": 2020, "version": "1.0", "description": "test"}, "licenses": [],
            "images": images, "annotations": anns, "categories": cats, "attributes": atts}


def _card(files: dict, **options):
    card = get_dataset_card("fashionpedia")
    spec = card.splits["val"].model_copy(update={"files": files, "size": None})
    return card.model_copy(update={"splits": {"val": spec}, "options": {**card.options, **options}})


def _write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "instances_attributes_val2020.json"
    p.write_text(json.dumps(doc))
    return p


def _read(tmp_path: Path, doc, **options):
    _write(tmp_path, doc)
    card = _card({"annotations": "instances_attributes_val2020.json", "images": "test"}, num_attributes=10, **options)
    return read_fashionpedia(tmp_path, "val", card)


def test_reads_the_real_layout(tmp_path):
    doc = _real_like()
    split = _read(tmp_path, doc)
    assert [s.image_id for s in split.samples] == [9813, 10223, 31]  # file order, empty image kept
    assert split.samples[0].image == tmp_path / "test" / "000000009813.jpg"
    assert split.samples[2].annotations == []
    meta = split.meta
    assert meta.num_classes == 46 and meta.category_ids == tuple(range(46))
    assert meta.attribute_ids == (0, 1, 2, 113, 115, 156, 198, 298, 317, 340)  # multi-hot order = file order
    assert meta.attribute_index()[340] == 9
    assert meta.attribute_categories == tuple(get_dataset_card("fashionpedia").options["attribute_categories"])
    dress = split.samples[0].annotations[1]
    assert (dress.ann_id, dress.category_id, dress.attribute_ids) == (18, 10, (317, 115, 113))
    # masks: polygons (two parts), compressed RLE, uncompressed RLE
    pants, pocket = split.samples[1].annotations
    m = decode_mask(pants.segmentation, 80, 100)
    assert m.sum() == 800 and m[10:30, 20:60].all()
    assert np.array_equal(decode_mask(pocket.segmentation, 80, 100), m)
    assert pocket.area == 800.0 and pocket.bbox == (20.0, 10.0, 40.0, 20.0)  # computed from the RLE
    poly = decode_mask(dress.segmentation, 1000, 618)
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(doc["annotations"][1]["segmentation"], 1000, 618)))
    assert np.array_equal(poly, ref) and poly.sum() > 0
    gt = ground_truth(split)
    assert len(gt["images"]) == 3 and len(gt["annotations"]) == 4 and len(gt["attributes"]) == 10


def test_limit_keeps_the_first_images(tmp_path):
    doc = _real_like()
    _write(tmp_path, doc)
    card = _card({"annotations": "instances_attributes_val2020.json", "images": "test"}, num_attributes=10)
    split = read_fashionpedia(tmp_path, "val", card, limit=1)
    assert [s.image_id for s in split.samples] == [9813]
    gt = ground_truth(split)
    assert [a["id"] for a in gt["annotations"]] == [16, 18]


def _mutate(path: str, value):
    def f(doc):
        obj = doc
        keys = path.split(".")
        for k in keys[:-1]:
            obj = obj[int(k)] if k.isdigit() else obj[k]
        last = keys[-1]
        if value is _DELETE:
            del obj[int(last) if last.isdigit() else last]
        else:
            obj[int(last) if last.isdigit() else last] = value
        return doc
    return f


_DELETE = object()


@pytest.mark.parametrize(("mutate", "match"), [
    (_mutate("annotations.1.category_id", 46), r"annotation id=18.*category_id 46"),
    (_mutate("annotations.1.attribute_ids", [113, 999]), r"annotation id=18.*attribute_ids \[999\]"),
    (_mutate("annotations.1.attribute_ids", "113"), r"annotation id=18.*list of integers"),
    (_mutate("annotations.0.segmentation", [[1, 2, 3, 4, 5]]), r"annotation id=16.*polygon 0 has 5 values"),
    (_mutate("annotations.0.segmentation", [[1, 2, 3, 4, 5, "x"]]), r"annotation id=16.*'x'"),
    (_mutate("annotations.0.segmentation", []), r"annotation id=16.*empty polygon"),
    (_mutate("annotations.2.segmentation.size", [81, 100]), r"annotation id=34.*RLE size"),
    (_mutate("annotations.3.segmentation.counts", [1, 2]), r"annotation id=35.*summing to"),
    (_mutate("annotations.0.segmentation", "abc"), r"annotation id=16.*polygon list or an RLE"),
    (_mutate("annotations.0.image_id", 777), r"annotation id=16.*image_id 777"),
    (_mutate("annotations.0.bbox", [1, 2, -3, 4]), r"annotation id=16.*bbox"),
    (_mutate("annotations.0.area", float("nan")), r"annotation id=16.*area"),
    (_mutate("annotations.0.iscrowd", 2), r"annotation id=16.*iscrowd"),
    (_mutate("annotations.1.id", 16), r"annotation id=16.*duplicate annotation id 16"),
    (_mutate("annotations.1.id", "18"), r"annotation #1.*integer 'id'"),
    (_mutate("images.1.width", 0), r"image #1 id=10223.*not two positive integers"),
    (_mutate("images.1.id", 9813), r"duplicate image id 9813"),
    (_mutate("images.0.file_name", _DELETE), r"image #0.*no 'file_name'"),
    (_mutate("attributes.0.id", 1), r"attribute #1.*duplicate attribute id 1"),
    (_mutate("categories.3", {"name": "x"}), r"category #3.*integer 'id'"),
    (_mutate("attributes", _DELETE), r"'attributes' is missing"),
])
def test_bad_records_name_file_and_record(tmp_path, mutate, match):
    doc = mutate(copy.deepcopy(_real_like()))
    with pytest.raises(DataFormatError, match=match) as e:
        _read(tmp_path, doc)
    assert "instances_attributes_val2020.json" in str(e.value)


def test_file_card_mismatches_and_not_json(tmp_path):
    doc = _real_like()
    with pytest.raises(DataFormatError, match="10 attributes, but dataset card 'fashionpedia' says num_attributes: 294"):
        _write(tmp_path, doc)
        read_fashionpedia(tmp_path, "val", _card({"annotations": "instances_attributes_val2020.json",
                                                   "images": "test"}))
    doc["categories"][5]["name"] = "waistcoat"
    with pytest.raises(DataFormatError, match="first difference at position 5: card 'vest' vs file 'waistcoat'"):
        _read(tmp_path, doc)
    (tmp_path / "instances_attributes_val2020.json").write_text("{not json")
    card = _card({"annotations": "instances_attributes_val2020.json", "images": "test"}, num_attributes=10)
    with pytest.raises(DataFormatError, match="not a JSON file"):
        read_fashionpedia(tmp_path, "val", card)
    with pytest.raises(FileNotFoundError, match="missing"):
        read_fashionpedia(tmp_path / "nowhere", "val", card)


def test_synthetic_writer_round_trip(tmp_path):
    from hcbench.data.cards import read_split
    from hcbench.synth.fashion import ATTRIBUTES, CATEGORY_NAMES, write_fashion

    facts, shown = write_fashion(tmp_path / "synth_fashion", {"train": 6, "val": 3}, seed=1, keep=3)
    assert sum(facts["instances"].values()) >= 6 * 3
    split = read_split("synth_fashion", "val", tmp_path / "synth_fashion")
    assert split.meta.category_names == CATEGORY_NAMES and split.meta.attribute_names == ATTRIBUTES
    assert split.meta.category_ids == (1, 6, 7, 8, 14, 23, 24)
    assert (tmp_path / "synth_fashion" / "test").is_dir()  # Fashionpedia's val images folder
    for sample, drawn in zip(split.samples, shown["val"], strict=True):
        assert sample.image.is_file()
        assert len(sample.annotations) == len(drawn["garments"])
        for ann, g in zip(sample.annotations, drawn["garments"], strict=True):
            assert ann.category_id == g["category_id"]
            assert [ATTRIBUTES[a] for a in ann.attribute_ids] == sorted(g["attributes"], key=ATTRIBUTES.index)
            m = decode_mask(ann.segmentation, sample.height, sample.width)
            assert np.array_equal(m, g["mask"]) and ann.area == m.sum()
        cats = [a.category_id for a in sample.annotations]
        assert cats.count(1) == 1 and sum(c in (6, 7, 8) for c in cats) == 1  # one top, one bottom
        top = next(a for a in sample.annotations if a.category_id == 1)
        names = {ATTRIBUTES[a] for a in top.attribute_ids}
        assert len(names & {"long sleeve", "short sleeve"}) == 1 and len(names & {"plain (pattern)", "stripe"}) == 1


def test_data_check_reports_split_sizes_and_missing_images(tmp_path):
    """`hcbench data check fashionpedia`: the card expects 45,623 / 1,158 images; a copy with three val
    images (one image file missing) and no train split is reported, naming files."""
    from PIL import Image

    from hcbench.data.check import check_dataset

    doc = _real_like()
    doc["attributes"] = doc["attributes"] + [{"id": 1000 + i, "name": f"x{i}"} for i in range(284)]  # 294 in all
    (tmp_path / "instances_attributes_val2020.json").write_text(json.dumps(doc))
    (tmp_path / "test").mkdir()
    for img in doc["images"][:2]:
        Image.new("RGB", (img["width"], img["height"])).save(tmp_path / "test" / img["file_name"])
    rep = check_dataset("fashionpedia", tmp_path, quiet=True)
    assert rep.summary["val"]["records"] == 3 and rep.summary["val"]["expected"] == 1158
    text = "\n".join(rep.problems)
    assert "1158" in text and "instances_attributes_train2020.json" in text
    assert "e5d7b6f1a3c4.jpg" in text  # the missing image file
