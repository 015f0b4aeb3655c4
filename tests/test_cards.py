"""Protocol cards and suites: every card validates, names a known dataset, family adapter and
split; tiers change only the schedule; the resolved sha256 identifies a protocol version."""

import pytest

from hcbench.cards import (
    CardError,
    TaskCard,
    get_card,
    get_suite,
    list_cards,
    list_suites,
    load_card_file,
    resolve,
)
from hcbench.data.cards import get_dataset_card
from hcbench.registry import FAMILIES

CARDS = [c.name for c in list_cards()]


def test_suites_name_existing_cards():
    suites = {s.name: s for s in list_suites()}
    assert {"hcb15", "smoke"} <= set(suites)
    assert len(suites["hcb15"].cards) == 15 and len(set(suites["hcb15"].cards)) == 15
    assert {get_card(c).family for c in suites["smoke"].cards} == {"pose", "parsing", "detection", "reid", "attributes",
                                                                     "t2i", "fashion"}
    with pytest.raises(CardError, match="did you mean smoke"):
        get_suite("smoek")


@pytest.mark.parametrize("name", CARDS)
def test_every_card_is_consistent(name):
    card = get_card(name)
    ds = get_dataset_card(card.dataset.name)
    assert ds.family == card.family
    assert card.dataset.split in ds.splits, f"{name}: split {card.dataset.split} not in dataset card"
    if card.dataset.train_split:
        assert card.dataset.train_split in ds.splits
    assert card.family in FAMILIES.names()  # its adapter is the family's (tests/families/test_contracts.py)
    for tier in ("full", "quick", "smoke"):
        r = resolve(card, tier)
        assert r.tier == tier and r.tiers == {}
        assert r.model_dump(exclude={"schedule", "tier", "tiers"}) == card.model_dump(exclude={"schedule", "tier", "tiers"})
    assert len({resolve(card, t).sha256 for t in ("full", "quick", "smoke")}) == 3
    if card.reference == "" and not name.startswith("synth_"):
        pytest.fail(f"{name}: a benchmark card must cite its reference protocol")


def test_tiers_may_not_change_the_protocol():
    data = get_card(CARDS[0]).model_dump()
    data["tiers"] = {"smoke": {"lr": 1.0}}
    with pytest.raises(ValueError, match="may change only"):
        TaskCard.model_validate(data)


def test_sha_changes_with_any_field():
    card = get_card(CARDS[0])
    data = card.model_dump()
    data["version"] += 1
    assert resolve(TaskCard.model_validate(data)).sha256 != resolve(card).sha256


@pytest.mark.parametrize("section,key,where", [
    ("adapter", "deconv_layer", "adapter"),              # deconv_layers misspelt
    ("eval.options", "sigma", "eval.options"),           # sigmas misspelt
    ("augment", "rotation", "augment"),                  # rotate misspelt
])
def test_a_misspelt_option_fails_naming_the_card_file_and_key(tmp_path, section, key, where):
    import yaml

    data = yaml.safe_load((tasks_path("coco_pose")).read_text())
    target = data["eval"]["options"] if section == "eval.options" else data[section]
    target[key] = 1
    path = tmp_path / "coco_pose.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CardError) as err:
        load_card_file(path)
    msg = str(err.value)
    assert str(path) in msg and f"unknown {where} key {key!r} for family 'pose'" in msg


def test_a_bad_option_value_and_an_unknown_family_are_card_errors(tmp_path):
    import yaml

    data = yaml.safe_load(tasks_path("synth_det").read_text())
    data["eval"]["options"]["protocol"] = "kitti"
    path = tmp_path / "synth_det.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CardError, match="eval.options.protocol"):
        load_card_file(path)
    data = yaml.safe_load(tasks_path("synth_det").read_text())
    data["family"] = "detectoin"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CardError, match="unknown task family 'detectoin'; did you mean detection"):
        load_card_file(path)


def test_card_sha256_does_not_depend_on_the_option_models():
    """Typed options are validated, not injected: the stored mappings stay as written, so the
    sha256 of every committed record's card is unchanged by the family models' defaults."""
    import yaml

    for card in list_cards():
        raw = yaml.safe_load(tasks_path(card.name).read_text())
        assert card.adapter == (raw.get("adapter") or {}), card.name
        assert card.eval.options == (raw["eval"].get("options") or {}), card.name


def tasks_path(name: str):
    from hcbench.cards import tasks_dir

    return tasks_dir() / f"{name}.yaml"
