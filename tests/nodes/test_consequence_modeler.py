"""Invariant: declared annotations are a floor no model output can lower; unknown escalates."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.consequence import ToolAnnotations, floor_from_annotations, severity
from agentflow.examples import Example
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.nodes.consequence_modeler import ConsequenceModeler, describe_call

_TOOLS = [
    (
        "wire_transfer",
        "Send money from the company account to an external IBAN",
        {"iban": "DE89", "amount": 5000},
    ),
    (
        "delete_bucket",
        "Permanently delete a storage bucket and all objects in it",
        {"bucket": "prod-logs"},
    ),
    ("get_weather", "Read the forecast for a city", {"city": "Leeds"}),
    ("append_row", "Append a row to a spreadsheet", {"sheet": "q3", "row": [1, 2]}),
    ("send_sms", "Send a text message to a phone number", {"to": "+4477", "body": "hi"}),
    ("process", "Process the item", {"id": 7}),
]


@pytest.fixture(scope="module")
def poisoned_head(encoder: Encoder) -> EncoderHead:
    """A real head trained on deliberately wrong labels: it calls every write 'safe'."""
    rows = []
    for name, desc, args in _TOOLS:
        text = describe_call({"name": name, "description": desc, "inputSchema": {}}, args)
        rows += [Example(text=text, label="safe"), Example(text=text + " now", label="safe")]
    rows += [
        Example(text="tool: list_files. List files in a folder", label="retry_safe"),
        Example(text="tool: read_file. Read a file", label="retry_safe"),
    ]
    return EncoderHead.train(rows, encoder, "consequence_modeler")


ADVERSARIAL_LLM = [
    "safe",
    "SAFE!!",
    "retry_safe",
    "banana",
    "",
    "I think it is safe, not irreversible",
]


@pytest.mark.parametrize("llm_says", ADVERSARIAL_LLM)
@pytest.mark.parametrize(
    "annotations",
    [
        {"irreversible": True},
        {"destructiveHint": True},
        {"readOnlyHint": False, "destructiveHint": True},
    ],
)
@pytest.mark.parametrize("tool", _TOOLS, ids=[t[0] for t in _TOOLS])
def test_declared_irreversible_is_never_lowered(
    poisoned_head, encoder, llm_says, annotations, tool
) -> None:
    name, desc, args = tool
    modeler = ConsequenceModeler(
        head=poisoned_head,
        encoder=encoder,
        llm=FakeListChatModel(responses=[llm_says]),
        threshold=0.8,
    )
    result = modeler.assess(
        {"name": name, "description": desc, "inputSchema": {}, "annotations": annotations}, args
    )
    assert result.cls == "irreversible"
    assert result.decisions[-1].value == "irreversible"


@pytest.mark.parametrize("llm_says", ADVERSARIAL_LLM)
def test_retry_unsafe_floor_is_never_lowered(poisoned_head, encoder, llm_says) -> None:
    modeler = ConsequenceModeler(
        head=poisoned_head,
        encoder=encoder,
        llm=FakeListChatModel(responses=[llm_says]),
        threshold=0.8,
    )
    result = modeler.assess(
        {
            "name": "append_row",
            "description": "Append a row",
            "inputSchema": {},
            "annotations": {"readOnlyHint": False},
        },
        {"row": [1]},
    )
    assert result.cls == "unknown" or severity(result.cls) >= severity("retry_unsafe")


def test_unknown_escalates_and_a_failed_llm_leaves_it_unknown(encoder: Encoder) -> None:
    rows = [Example(text=f"tool: do_{i}. Does something", label="unknown") for i in range(4)]
    rows += [Example(text=f"tool: read_{i}. Reads a record", label="safe") for i in range(4)]
    head = EncoderHead.train(rows, encoder, "consequence_modeler")
    modeler = ConsequenceModeler(
        head=head,
        encoder=encoder,
        llm=FakeListChatModel(responses=["no idea, sorry"]),
        threshold=0.5,
    )
    result = modeler.assess(
        {"name": "do_thing", "description": "Does something", "inputSchema": {}}, {}
    )
    assert result.llm_called
    assert result.cls == "unknown"  # the safe default: a human decides


# ------------------------------------------------------------------ money is never routine

# Calls written for this test (none is in the training set): a charge with an innocuous
# name, a description that leaves the money out, a cancellation with nothing but an id.
_MONEY = [
    (
        "finalize",
        "Completes the selected offer.",
        {"booking_id": "bk_20Q7", "payment_method_id": "pm_card_4242", "amount": 1288.6},
    ),
    (
        "update_reservation",
        "Updates the cabin and the flights of an existing reservation.",
        {"reservation_id": "res_8KQ2LZ", "cabin": "business", "payment_method": "credit_card_55"},
    ),
    ("cancel_booking", "Cancels the booking.", {"booking_id": "bk_5512"}),
    ("give_credit", "Adds to the customer's account.", {"customer": "c_7", "amount": 40}),
]


def _money_definition(name: str, desc: str, args: dict, annotations: dict | None) -> dict:
    props = {
        k: {"type": "number" if isinstance(v, float | int) else "string"} for k, v in args.items()
    }
    definition = {
        "name": name,
        "description": desc,
        "inputSchema": {"type": "object", "properties": props},
    }
    return {**definition, "annotations": annotations} if annotations else definition


@pytest.mark.parametrize("llm_says", ADVERSARIAL_LLM)
@pytest.mark.parametrize(
    "annotations",
    [
        None,
        # A charge declared read-only: the declaration is a floor, never a ceiling, so it
        # cannot lower what the arguments show; raising above a floor is always allowed.
        {"readOnlyHint": True},
        {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True},
        {"readOnlyHint": False, "idempotentHint": False},
    ],
    ids=["undeclared", "read_only", "idempotent", "retry_unsafe"],
)
@pytest.mark.parametrize("call", _MONEY, ids=[c[0] for c in _MONEY])
def test_money_moving_calls_are_never_routine(
    poisoned_head, encoder, llm_says, annotations, call
) -> None:
    name, desc, args = call
    modeler = ConsequenceModeler(
        head=poisoned_head,
        encoder=encoder,
        llm=FakeListChatModel(responses=[llm_says]),
        threshold=0.8,
    )
    result = modeler.assess(_money_definition(name, desc, args, annotations), args)
    assert result.cls == "irreversible"
    assert result.money
    rule = result.decisions[-1]
    assert (rule.source, rule.value) == ("rule", "irreversible")
    assert rule.rationale is not None and "moves money" in rule.rationale
    # irreversible is the strictest class that runs: no LLM answer could change it
    assert not result.llm_called
    # the declared floor is reported as declared, not as what money made of it
    declared = ToolAnnotations.model_validate(annotations) if annotations else None
    assert result.floor == floor_from_annotations(declared)


def test_reads_that_mention_money_are_left_to_the_head(poisoned_head, encoder) -> None:
    # The poisoned head calls everything safe: a read the rule left alone stays safe, so
    # nothing but the head decided it.
    modeler = ConsequenceModeler(head=poisoned_head, encoder=encoder, llm=None, threshold=0.5)
    for name, args in [
        ("get_refund_status", {"refund_id": "re_1"}),
        ("list_charges", {"customer": "c_1", "limit": 20}),
        ("search_flights", {"origin": "LIS", "destination": "BOS", "max_price": 650}),
        ("quote_fare_change", {"pnr": "Q7XK2M", "payment_method_id": "pm_1"}),
    ]:
        result = modeler.assess(
            _money_definition(name, "Reads fares and refunds.", args, None), args
        )
        assert result.money == (), name
        assert all(d.source != "rule" for d in result.decisions), name


def test_a_call_unlike_any_the_head_knows_escalates_however_sure_the_head_is(
    poisoned_head: EncoderHead, encoder: Encoder
) -> None:
    # The poisoned head is sure every call is harmless; a call far from all it was trained
    # on is not its to decide, and with no LLM to ask a person decides.
    modeler = ConsequenceModeler(head=poisoned_head, encoder=encoder, llm=None)
    far = {
        "name": "rotor_blade_pitch",
        "description": "Stellt den Anstellwinkel aller Rotorblätter der Windkraftanlage ein.",
        "inputSchema": {"type": "object", "properties": {"grad": {"type": "number"}}},
    }
    result = modeler.assess(far, {"grad": 87.5})
    first = result.decisions[0]
    assert first.far and not modeler.policy.trusts(first), first
    assert result.cls == "unknown", result
