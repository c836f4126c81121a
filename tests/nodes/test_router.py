"""The router: encoder head first, the LLM below threshold, its verdict recorded."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.decision import EscalationPolicy
from agentflow.errors import ModelOutputError
from agentflow.examples import Example
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.nodes._common import parse_choice
from agentflow.nodes.router import LLM_ROUTE, MAX_ROUTED_CHARS, Route, Router

ROUTES = [
    Route(
        "weather",
        "weather questions",
        (
            "will it rain tomorrow",
            "how hot is it today",
            "is it sunny in Paris",
            "forecast for the weekend",
            "do I need an umbrella",
            "is it going to snow tonight",
            "what's the temperature outside",
            "how windy will it be",
            "any storms coming this week",
            "will it be cold in the morning",
            "is the heatwave over",
            "chance of rain this afternoon",
        ),
    ),
    Route(
        "billing",
        "invoices and payments",
        (
            "why was I charged twice",
            "send me my invoice",
            "update my credit card",
            "what is this charge",
            "I need a receipt for last month",
            "my payment failed",
            "change my billing address",
            "can I pay by bank transfer",
            "refund the duplicate charge",
            "when is my next bill due",
            "the invoice amount is wrong",
            "remove my old card",
        ),
    ),
]


def _router(encoder: Encoder, llm_answer: str, threshold: float) -> Router:
    rows = [Example(text=t, label=r.name) for r in ROUTES for t in r.examples]
    head = EncoderHead.train(rows, encoder, "router")
    return Router(
        ROUTES,
        encoder=encoder,
        head=head,
        llm=FakeListChatModel(responses=[llm_answer]),
        policy=EscalationPolicy(threshold=threshold),
    )


def test_confident_head_decides_alone(encoder: Encoder) -> None:
    res = _router(encoder, "billing", threshold=0.0).decide("is it going to rain on Saturday?")
    assert res.final.value == "weather" and res.final.source == "slm:encoder" and not res.llm_called


def test_a_request_no_route_covers_goes_to_the_llm_however_confident(encoder: Encoder) -> None:
    # Threshold 0: confidence alone would route it. It is far from every example of both
    # routes, so the LLM decides (silent misrouting is what the far test is for).
    res = _router(encoder, "Route: llm", threshold=0.0).decide(
        "what is the capital city of Peru and its population"
    )
    assert res.trail[0].far and res.llm_called and res.final.value == LLM_ROUTE


def test_below_threshold_the_llm_decides_and_is_recorded(encoder: Encoder) -> None:
    res = _router(encoder, "Route: billing", threshold=0.999).decide("hello, can you help me?")
    assert res.llm_called and res.final.source == "llm" and res.final.value == "billing"
    assert [d.source for d in res.trail] == ["slm:encoder", "llm"]
    assert res.trail[0].confidence < 0.999
    assert res.final.input == "hello, can you help me?"  # the label for retraining


def test_llm_nonsense_falls_back_to_the_llm_route(encoder: Encoder) -> None:
    res = _router(encoder, "purple", threshold=1.0).decide("hello")
    assert res.final.value == LLM_ROUTE and res.final.source == "rule"


def test_parse_choice_word_boundaries() -> None:
    assert parse_choice("It is retry_safe.", ["safe", "retry_safe"]) == "retry_safe"
    assert parse_choice("safe", ["safe", "retry_safe"]) == "safe"
    try:
        parse_choice("unsafe-ish", ["safe"])
    except ModelOutputError:
        pass
    else:
        raise AssertionError("a word inside another word must not match")


@pytest.mark.parametrize(
    "text", ["", "   ", "?!", "\n\t", "why was I charged twice? " * (MAX_ROUTED_CHARS // 20)]
)
def test_a_message_with_no_words_takes_the_llm_route_by_rule(encoder: Encoder, text: str) -> None:
    """The head would place an empty message somewhere, confidently (issue: an empty
    message routed to `complaint` at 0.99); with nothing to read, the LLM answers. So it
    does for a message longer than the encoder reads (it would route on a part of it)."""
    res = _router(encoder, "billing", threshold=0.0).decide(text)
    assert res.final.value == LLM_ROUTE and res.final.source == "rule" and not res.llm_called
    assert [d.source for d in res.trail] == ["rule"]
