"""graphs/support_extract.py: which address and order id a message names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from graphs import support, support_extract


@pytest.fixture(autouse=True)
def _store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AGENTFLOW_SUPPORT_DB", str(tmp_path / "support.db"))
    support.store.cache_clear()
    yield
    support.store.cache_clear()


@pytest.mark.parametrize(
    "text,address",
    [
        (
            "The new address is 2117 Belmont Ave, Apt 3, Nashville TN 37212. Can you change it?",
            "2117 Belmont Ave, Apt 3, Nashville TN 37212",
        ),
        ("change #62590 to 58 Wexford Rd, Dublin OH 43017 thx", "58 Wexford Rd, Dublin OH 43017"),
        (
            "Could it go to 700 Congress Ave, Austin TX 78701 instead of the Dallas address?",
            "700 Congress Ave, Austin TX 78701",
        ),
        ("switch it to my PO box: PO Box 1187, Bozeman MT 59771.", "PO Box 1187, Bozeman MT 59771"),
        (
            "New warehouse: Unit 4, 19 Industrial Pkwy, Reno NV 89502.",
            "Unit 4, 19 Industrial Pkwy, Reno NV 89502",
        ),
        (
            "send it to 88 Queen St W, Toronto ON M5H 2M9 please",
            "88 Queen St W, Toronto ON M5H 2M9",
        ),
        (
            "Change of address: 12 Rue Sainte-Catherine, 33000 Bordeaux, France",
            "12 Rue Sainte-Catherine, 33000 Bordeaux, France",
        ),
        # Not complete, or only the old address: the flow must ask rather than guess.
        ("Wrong apartment number on my order! It's 12C not 21C. Order 63214.", None),
        ("Please redirect it to the pickup locker at 300 Main St, it's safer.", None),
        ("it should be 14 Elm Court not 41 Elm Court", None),
        ("It still shows 12 Harbour Street, Leeds LS1 4AB instead of my new flat.", None),
        ("I ordered 2 Bags of beans, order 62591, where are they?", None),
    ],
)
def test_find_address(text: str, address: str | None) -> None:
    assert support_extract.find_address(text) == address


@pytest.mark.parametrize(
    "text,order_id",
    [
        ("Please change it to 505 Elm St Apt 6, Evanston IL 60201. #63144", "63144"),
        ("Zip 94110 is correct on A14603, please fix it", "A14603"),
        ("order no. 62708 has not arrived, I live in 10001", "62708"),
        ("ref 77123: ship to 505 Elm St Apt 6, Evanston IL 60201, order 63144", "63144"),
        ("where is 58812?", "58812"),
    ],
)
def test_order_id_prefers_a_marked_id_over_other_numbers(text: str, order_id: str) -> None:
    fields, decisions = support_extract.extract_address(text, {})
    assert fields["order_id"] == order_id
    assert decisions[0].source == "rule"


def test_no_order_id_falls_back_to_the_customers_latest_order() -> None:
    fields, decisions = support_extract.extract_address("can I still change the address?", {})
    latest = support.store().latest_order("alex@example.com")
    assert latest is not None and fields == {"order_id": latest["order_id"], "address": None}
    assert decisions[0].evidence == "default:latest-order"


def test_the_shipped_calibration_was_measured_with_these_rules_and_data() -> None:
    from agentflow import FieldCalibration

    measured = FieldCalibration.load(support_extract.CALIBRATION)
    assert measured.matches(support_extract.calibration_key()), (
        "graphs/support_extract.py or its labelled data changed since the calibration was "
        "measured: run `agentflow eval extract --write-calibration`"
    )
    assert support_extract.calibration().counts == measured.counts


def test_two_requests_do_not_run_into_the_address() -> None:
    text = "Change the address of order 62157 to 1 Drop Street, London E1 1AA and refund $30 for order 58812"
    assert support_extract.find_address(text) == "1 Drop Street, London E1 1AA"
    fields, _ = support_extract.extract_address(text, {})
    assert fields["order_id"] == "62157"


@pytest.mark.parametrize(
    "text,when",
    [
        ("I want to cancel my subscription at the end of this month", "end_of_period"),
        ("please don't renew my Pro plan", "end_of_period"),
        ("Cancel my subscription now. Not at the end of the month, NOW.", "now"),
        ("cancel it right away please", "now"),
        ("please cancel my subscription", None),
    ],
)
def test_when_to_cancel_in_the_customers_words(text: str, when: str | None) -> None:
    assert support_extract._when_phrase(text) == when
