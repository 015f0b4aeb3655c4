"""Protocol cards and suites: every card validates, names a known dataset, family adapter and
split; tiers change only the schedule; the resolved sha256 identifies a protocol version."""

import pytest

from hcbench.cards import CardError, TaskCard, get_card, get_suite, list_cards, list_suites, resolve
from hcbench.data.cards import get_dataset_card
from hcbench.registry import ADAPTERS

CARDS = [c.name for c in list_cards()]


def test_suites_name_existing_cards():
    suites = {s.name: s for s in list_suites()}
    assert {"hcb15", "smoke"} <= set(suites)
    assert len(suites["hcb15"].cards) == 15 and len(set(suites["hcb15"].cards)) == 15
    assert {get_card(c).family for c in suites["smoke"].cards} == {"pose", "parsing", "detection", "reid", "attributes"}
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
    assert card.family in ADAPTERS.names()
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
