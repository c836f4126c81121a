"""The escalation policy: trust, escalate on low confidence or bad output, safe default."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.decision import Decision, EscalationPolicy, resolve
from agentflow.errors import ModelOutputError


def _d(
    value: str, confidence: float, *, calibrated: bool = True, source: Any = "slm:encoder"
) -> Decision[str]:
    return Decision[str](
        role="router",
        value=value,
        confidence=confidence,
        source=source,
        latency_ms=1.0,
        calibrated=calibrated,
    )


def _llm(value: str):
    calls: list[Decision[str] | None] = []

    def verdict(small: Decision[str] | None) -> Decision[str]:
        calls.append(small)
        return _d(value, 1.0, source="llm")

    return verdict, calls


POLICY = EscalationPolicy(threshold=0.8)


def test_confident_calibrated_decision_is_acted_on_without_llm() -> None:
    llm, calls = _llm("other")
    res = resolve("router", lambda: _d("refund", 0.93), llm, "llm", POLICY)
    assert res.final.value == "refund" and not res.llm_called and calls == []


@pytest.mark.parametrize("confidence,calibrated", [(0.79, True), (0.99, False)])
def test_low_or_uncalibrated_confidence_escalates(confidence: float, calibrated: bool) -> None:
    llm, calls = _llm("pricing")
    res = resolve(
        "router", lambda: _d("refund", confidence, calibrated=calibrated), llm, "llm", POLICY
    )
    assert res.llm_called and res.final.value == "pricing" and res.final.escalated
    assert calls[0] is not None and calls[0].value == "refund"
    assert [d.source for d in res.trail] == ["slm:encoder", "llm"]


def test_a_confident_decision_on_an_input_far_from_training_escalates() -> None:
    llm, calls = _llm("pricing")
    far = _d("refund", 0.99).model_copy(update={"far": True})
    res = resolve("router", lambda: far, llm, "llm", POLICY)
    assert res.llm_called and res.final.value == "pricing" and calls == [far]
    # A role whose policy does not use the far test acts on the same decision.
    lenient = EscalationPolicy(threshold=0.8, escalate_far=False)
    assert resolve("router", lambda: far, llm, "llm", lenient).final.value == "refund"


def test_malformed_small_model_output_escalates() -> None:
    def broken() -> Decision[str]:
        raise ModelOutputError("model answered 'banana', not a route")

    llm, calls = _llm("refund")
    res = resolve("router", broken, llm, "llm", POLICY)
    assert res.final.value == "refund" and res.llm_called and calls == [None]
    assert "banana" in (res.error or "")


def test_llm_failure_takes_the_roles_safe_default() -> None:
    def llm_down(_small: Decision[str] | None) -> Decision[str]:
        raise ConnectionError("endpoint unreachable")

    res = resolve("consequence_modeler", lambda: _d("safe", 0.3), llm_down, "unknown", POLICY)
    assert res.final.value == "unknown" and res.final.source == "rule" and res.final.escalated
    assert "unreachable" in (res.final.rationale or "")


def test_no_llm_configured_takes_the_safe_default() -> None:
    res = resolve("loop_evaluator", lambda: _d("done", 0.5), None, "escalate", POLICY)
    assert res.final.value == "escalate" and not res.llm_called
