"""Messages that are not one clean request: where they are cut, what counts as a yes."""

from __future__ import annotations

import pytest

from agentflow.nodes._requests import is_yes, left_over, separate

FLOWS = {"change_address", "refund", "order_status", "cancel_subscription"}


def _keywords(piece: str) -> str | None:
    """A stand-in for the router's small model in these unit tests: a word decides."""
    text = piece.lower()
    for word, route in (
        ("address", "change_address"),
        ("refund", "refund"),
        ("where", "order_status"),
        ("cancel", "cancel_subscription"),
        ("manager", "complaint"),
    ):
        if word in text:
            return route
    return None


def test_two_actionable_requests_are_cut_at_the_join() -> None:
    text = (
        "Change the address of order 62157 to 1 Drop Street, London E1 1AA and refund $30 "
        "for order 58812"
    )
    assert separate(text, _keywords, FLOWS) == [
        "Change the address of order 62157 to 1 Drop Street, London E1 1AA",
        "refund $30 for order 58812",
    ]


def test_greetings_and_asides_stay_with_their_request() -> None:
    text = "Hi there! Where is my order A10234? It has been a week. Thanks, Sam"
    assert separate(text, _keywords, FLOWS) == [text]


def test_a_complaint_in_passing_does_not_make_a_second_request() -> None:
    text = "I want a refund for 58812 and I want to speak to a manager about it"
    assert separate(text, _keywords, FLOWS) == [text]


def test_an_unsure_classifier_never_splits() -> None:
    text = "Change the address to 5 Elm St, Leeds LS1 4AP and refund order 58812"
    assert separate(text, lambda _piece: None, FLOWS) == [text]


def test_new_lines_and_also_start_requests_and_lose_their_joining_word() -> None:
    text = "where is order A10234?\nAlso, cancel my Plus plan at the end of the month."
    assert separate(text, _keywords, FLOWS) == [
        "where is order A10234",
        "cancel my Plus plan at the end of the month.",
    ]


def test_a_plain_sentence_break_is_context_not_a_second_request() -> None:
    # The first sentence would be sent to order_status on its own; it only sets the scene.
    text = "I just placed order A13412, where is it going? Please change the address to 5 Elm St"
    assert separate(text, _keywords, FLOWS) == [text]


def test_plus_the_plan_is_not_a_join() -> None:
    text = "I cancelled Plus in May and still got charged, please refund it"
    assert separate(text, _keywords, FLOWS) == [text]


@pytest.mark.parametrize("reply", ["yes", "Yes please!", "ok", "go on", "Sure, thanks", "y"])
def test_yes(reply: str) -> None:
    assert is_yes(reply)


@pytest.mark.parametrize("reply", ["no", "yes but now", "", "yes, cancel it now", "not yet"])
def test_not_a_plain_yes(reply: str) -> None:
    assert not is_yes(reply)


def test_left_over_quotes_what_is_left() -> None:
    said = left_over(["refund $30 for order 58812"])
    assert "“refund $30 for order 58812”" in said and "go on" in said
