"""The money rule on its own: which calls it holds at irreversible, and which it leaves alone.

Every tool here is written for this test (none is in the shipped training set), in the
shapes real back offices use: names that do not say money, money only in the arguments,
descriptions that leave it out, camel-cased and dotted names.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.money import money_floor, money_signals, name_tokens


def _tool(tool_name: str, description: str = "", **props: str) -> dict[str, Any]:
    return {
        "name": tool_name,
        "description": description,
        "inputSchema": {"type": "object", "properties": {k: {"type": v} for k, v in props.items()}},
    }


MOVES_MONEY = [
    # an innocuous name: the card token and the amount are the only signs
    (
        _tool(
            "finalize",
            "Completes the offer.",
            booking_id="string",
            payment_method_id="string",
            amount="number",
        ),
        {"booking_id": "bk_77Q", "payment_method_id": "pm_card_4242", "amount": 412.5},
    ),
    # a description that omits money, a payment method beside a reservation
    (
        _tool(
            "modify_trip",
            "Changes the trip.",
            trip_id="string",
            flights="array",
            payment_method="string",
        ),
        {"trip_id": "tr_5K2", "flights": [{"no": "IB3170"}], "payment_method": "credit_card_88120"},
    ),
    (
        _tool(
            "updateReservationCabin", "", reservationId="string", cabin="string", paymentId="string"
        ),
        {"reservationId": "R8KQ2L", "cabin": "business", "paymentId": "gift_card_5512"},
    ),
    (
        _tool("bags.add", "Adds bags.", pnr="string", count="integer", card="string"),
        {"pnr": "Q7XK2M", "count": 2, "card": "card_visa_1"},
    ),
    # cancelling a booking, with no money anywhere in the call
    (_tool("cancel_reservation", "Cancels it.", reservation_id="string"), {"reservation_id": "R1"}),
    (_tool("pnr-void", "", locator="string"), {"locator": "HB3R9T"}),
    (_tool("cancel", "Cancels.", booking_ref="string"), {"booking_ref": "BK-1"}),
    # compensation, credit and vouchers
    (
        _tool("send_goodwill_certificate", "", user_id="string", amount="number"),
        {"user_id": "u_1", "amount": 150},
    ),
    (_tool("issue_voucher", "", customer="string"), {"customer": "c_9"}),
    (
        _tool("grant_travel_credit", "", customer="string", value="number", currency="string"),
        {"customer": "c_9", "value": 80, "currency": "EUR"},
    ),
    # paying verbs, whatever they act on
    (_tool("pay_invoice", "", invoice="string"), {"invoice": "in_1"}),
    (_tool("refund_order", "", order_id="string"), {"order_id": "o_1"}),
    (_tool("charge_customer", "", customer="string"), {"customer": "c_1"}),
    (
        _tool("book_flight", "", flight_id="string", passengers="array"),
        {"flight_id": "f_1", "passengers": [{"name": "A"}]},
    ),
    (_tool("search_and_purchase", "", query="string"), {"query": "LIS-BOS cheapest"}),
    (_tool("place_order", "", items="array"), {"items": [{"sku": "x"}]}),
    (
        _tool("move_money", "", to_account="string", amount="number"),
        {"to_account": "a2", "amount": 5},
    ),
    (_tool("transfer_funds", "", amount="number"), {"amount": 250}),
    # only the description says it
    (
        _tool(
            "apply_change",
            "Applies the change and charges the fare difference to the card on file.",
            ref="string",
        ),
        {"ref": "X1"},
    ),
    (
        _tool(
            "close_folio",
            "Closes the folio; the balance is charged to the guest's card.",
            room="string",
        ),
        {"room": "412"},
    ),
    (
        _tool(
            "finish_ride",
            "Ends the ride and locks the bike; the metered fare is charged.",
            ride="string",
        ),
        {"ride": "r_7"},
    ),
]

LEAVES_ALONE = [
    # reads that mention money: a reading verb keeps the rule silent
    (
        _tool(
            "get_refund_status", "Returns the status of a refund to the card.", refund_id="string"
        ),
        {"refund_id": "re_1"},
    ),
    (_tool("list_charges", "Lists charges.", customer="string"), {"customer": "c_1"}),
    (
        _tool("search_flights", "Searches fares.", origin="string", max_price="number"),
        {"origin": "LIS", "max_price": 300},
    ),
    (
        _tool("quote_fare_change", "Prices a change.", pnr="string", payment_method_id="string"),
        {"pnr": "Q7XK2M", "payment_method_id": "pm_1"},
    ),
    (_tool("estimateRefund", "", bookingId="string"), {"bookingId": "b1"}),
    (
        _tool("flight_search", "", fare_class="string", price="number"),
        {"fare_class": "Y", "price": 99},
    ),
    (
        _tool("check_refund_eligibility", "", order_id="string", card="string"),
        {"order_id": "o1", "card": "card_1"},
    ),
    # writes that name money but move none
    (
        _tool("update_payment_method", "Replaces the saved card.", payment_method_id="string"),
        {"payment_method_id": "pm_2"},
    ),
    (_tool("add_card", "Saves a card for later.", card_token="string"), {"card_token": "tok_1"}),
    (
        _tool("update_passenger_name", "", reservation_id="string", name="string"),
        {"reservation_id": "R1", "name": "Ana"},
    ),
    (
        _tool("book_meeting_room", "Books a meeting room.", room="string", start="string"),
        {"room": "4.12", "start": "10:00"},
    ),
    (_tool("charge_battery", "", vehicle_id="string"), {"vehicle_id": "v1"}),
    (
        _tool("transfer_to_human_agent", "Hands over to a person.", summary="string"),
        {"summary": "wants a manager"},
    ),
    (_tool("release_seat_hold", "", hold_id="string"), {"hold_id": "h1"}),
    (_tool("cancel_pipeline", "", pipeline_id="string"), {"pipeline_id": "p1"}),
    (_tool("create_support_ticket", "", subject="string"), {"subject": "login fails"}),
    (_tool("update_refund_policy", "", text="string"), {"text": "30 days"}),
    (
        _tool("create_transfer_draft", "", to_account="string", amount="number"),
        {"to_account": "a2", "amount": 5},
    ),
    (
        _tool("switch_plan_tier", "Moves the plan up a tier; no fee is charged.", tier="string"),
        {"tier": "pro"},
    ),
]


@pytest.mark.parametrize(
    ("definition", "args"), MOVES_MONEY, ids=[t[0]["name"] for t in MOVES_MONEY]
)
def test_calls_that_move_money_or_cancel_a_booking_are_held_at_irreversible(
    definition: dict[str, Any], args: dict[str, Any]
) -> None:
    signals = money_signals(definition, args)
    assert signals.moves_money(), signals
    assert money_floor(signals) == "irreversible"
    assert "moves money" in signals.tags()


@pytest.mark.parametrize(
    ("definition", "args"), LEAVES_ALONE, ids=[t[0]["name"] for t in LEAVES_ALONE]
)
def test_reads_and_writes_that_move_no_money_are_left_to_the_model(
    definition: dict[str, Any], args: dict[str, Any]
) -> None:
    signals = money_signals(definition, args)
    assert not signals.moves_money(), signals.reasons
    assert money_floor(signals) is None


def test_a_dry_run_counts_only_when_the_schema_offers_it() -> None:
    payout = _tool("create_payout", "Sends a payout.", amount="number", dry_run="boolean")
    assert not money_signals(payout, {"amount": 100, "dry_run": True}).moves_money()
    assert money_signals(payout, {"amount": 100, "dry_run": False}).moves_money()
    # a flag the tool never declared is no promise of the tool's
    undeclared = _tool("create_payout", "Sends a payout.", amount="number")
    assert money_signals(undeclared, {"amount": 100, "dry_run": True}).moves_money()


def test_the_signals_the_head_reads() -> None:
    call = money_signals(
        _tool(
            "modify_trip",
            "",
            trip_id="string",
            payment_method="string",
            total="number",
            currency="string",
        ),
        {"trip_id": "t", "payment_method": "pm_1", "total": 90.0, "currency": "USD"},
    )
    assert call.tags() == ["amount", "currency", "payment method", "booking", "moves money"]
    assert money_signals(_tool("get_trip", "", trip_id="string"), {"trip_id": "t"}).tags() == [
        "reads"
    ]
    # a count is not an amount: total_bags counts bags
    bags = money_signals(_tool("set_bags", "", total_bags="integer"), {"total_bags": 2})
    assert not bags.amount


@pytest.mark.parametrize(
    ("name", "tokens"),
    [
        ("update_reservation_flights", ["update", "reservation", "flights"]),
        ("updateReservationFlights", ["update", "reservation", "flights"]),
        ("reservations.cancel", ["reservations", "cancel"]),
        ("check_in_passenger", ["checkin", "passenger"]),
        ("top-up-wallet", ["topup", "wallet"]),
        ("HTTPGetRefund", ["http", "get", "refund"]),
    ],
)
def test_names_are_split_into_words(name: str, tokens: list[str]) -> None:
    assert name_tokens(name) == tokens
