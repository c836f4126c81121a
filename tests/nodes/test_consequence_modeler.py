"""Invariant: declared annotations are a floor no model output can lower; unknown escalates."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.consequence import severity
from agentflow.examples import Example
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from nodes.consequence_modeler import ConsequenceModeler, describe_call

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
