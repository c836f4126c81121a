"""Langfuse tracing through the real export path: SDK -> OTLP/HTTP -> loopback receiver.

The Langfuse SDK is configured with the receiver as its base URL and dummy keys; what
is asserted is what arrived over HTTP, decoded from protobuf.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langfuse import Langfuse
from langgraph.graph import END, START, StateGraph

from agentflow.decision import Decision, ModelRef
from agentflow.recording import ApprovalRecord, NullRecorder, RunContext, ToolCallRecord
from agentflow.settings import Settings
from agentflow.tracing import LangfuseRecorder, TracingSession, trace_id_for, tracing_session
from tests.fixtures.otlp_receiver import OtlpReceiver, ReceivedSpan

ROOT = Path(__file__).resolve().parents[2]
# One key for the whole module: the SDK keeps one client per public key, and this one
# must point at our receiver, whatever other tests configured.
PUBLIC_KEY = f"pk-lf-test-{uuid.uuid4().hex[:8]}"
SECRET_KEY = "sk-lf-test"


def _settings(receiver: OtlpReceiver) -> Settings:
    return Settings(
        langfuse_public_key=PUBLIC_KEY,
        langfuse_secret_key=SECRET_KEY,
        langfuse_base_url=receiver.base_url,
    )


def _router_decision(text: str) -> Decision[str]:
    return Decision[str](
        role="router",
        value="billing",
        confidence=0.91,
        source="slm:encoder",
        model=ModelRef(name="router-head", sha256="ab" * 32),
        latency_ms=12.5,
        input=text,
    )


def _of_run(spans: list[ReceivedSpan], run_id: str) -> list[ReceivedSpan]:
    """The spans agentflow recorded for ``run_id``."""
    return [s for s in spans if s.attributes.get("agentflow.run_id") == run_id]


def _has_run(run_id: str) -> Callable[[list[ReceivedSpan]], bool]:
    return lambda spans: len(_of_run(spans, run_id)) >= 1


def _by_name(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in spans]}"
    return found[0]


def _run(session: TracingSession) -> None:
    """One run: a router decision, an escalated loop verdict, an LLM call, a tool, an approval."""
    recorder = session.recorder
    recorder.decision(session.run_context("router"), _router_decision("refund my card"))
    recorder.decision(
        session.run_context("loop"),
        Decision[str](
            role="loop_evaluator",
            value="stop",
            confidence=0.4,
            source="llm",
            latency_ms=230.0,
            escalated=True,
            calibrated=False,
            input={"steps": 3},
        ),
    )
    llm = FakeListChatModel(responses=["a plan"])
    assert llm.invoke("plan this", config={"callbacks": session.callbacks}).content == "a plan"
    recorder.tool_call(
        session.run_context("act"),
        ToolCallRecord(
            tool="send_email",
            args={"to": "a@example.com"},
            idempotency_key="k-1",
            consequence="irreversible",
            outcome="failed",
            error="smtp down",
            latency_ms=4.0,
        ),
    )
    recorder.approval(
        session.run_context("approval"),
        ApprovalRecord(
            approval_id="ap-1", tool="send_email", digest="d1", decision="approve", approver="ann"
        ),
    )


def test_one_run_exports_every_record_into_the_threads_trace(otlp_receiver: OtlpReceiver) -> None:
    thread, run_id = f"thread-{uuid.uuid4()}", f"run-{uuid.uuid4()}"
    with tracing_session(
        _settings(otlp_receiver), thread_id=thread, run_id=run_id, graph="support"
    ) as session:
        assert session.enabled
        _run(session)

    trace_id = Langfuse.create_trace_id(seed=thread)
    spans = otlp_receiver.wait_for(lambda got: sum(s.trace_id == trace_id for s in got) >= 6)
    in_trace = [s for s in spans if s.trace_id == trace_id]
    names = {s.name for s in in_trace}
    assert {
        "run:support",
        "decision:router",
        "decision:loop_evaluator",
        "tool:send_email",
        "approval:send_email",
        "FakeListChatModel",
    } <= names
    assert session.trace_id == trace_id == trace_id_for(thread)

    root = _by_name(in_trace, "run:support")
    router = _by_name(in_trace, "decision:router")
    assert router.attributes["agentflow.role"] == "router"
    assert router.attributes["agentflow.value"] == "billing"
    assert router.attributes["agentflow.confidence"] == 0.91
    assert router.attributes["agentflow.source"] == "slm:encoder"
    assert router.attributes["agentflow.escalated"] is False
    assert router.attributes["agentflow.latency_ms"] == 12.5
    assert router.attributes["agentflow.model"] == "router-head"
    assert router.attributes["agentflow.calibrated"] is True
    assert router.attributes["agentflow.thread_id"] == thread
    assert router.attributes["agentflow.node"] == "router"
    # The same fields as Langfuse metadata (JSON-encoded by the SDK), for its UI.
    assert router.attributes["langfuse.observation.metadata.confidence"] == "0.91"
    assert router.attributes["langfuse.observation.input"] == "refund my card"

    loop = _by_name(in_trace, "decision:loop_evaluator")
    assert loop.attributes["agentflow.escalated"] is True
    assert loop.attributes["agentflow.calibrated"] is False
    assert loop.attributes["agentflow.source"] == "llm"

    tool = _by_name(in_trace, "tool:send_email")
    assert tool.attributes["agentflow.outcome"] == "failed"
    assert tool.attributes["agentflow.consequence"] == "irreversible"
    assert tool.attributes["langfuse.observation.level"] == "ERROR"

    generation = _by_name(in_trace, "FakeListChatModel")
    assert generation.attributes["langfuse.observation.type"] == "generation"
    # Everything hangs under this run's root observation.
    for span in (router, loop, tool, generation):
        assert span.parent_span_id == root.span_id
    expected_auth = base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    assert f"Basic {expected_auth}" in otlp_receiver.authorizations


def test_a_resumed_thread_continues_its_trace(otlp_receiver: OtlpReceiver) -> None:
    thread = f"thread-{uuid.uuid4()}"
    roots = []
    for run_id in (f"first-{uuid.uuid4()}", f"resume-{uuid.uuid4()}"):
        with tracing_session(
            _settings(otlp_receiver), thread_id=thread, run_id=run_id, graph="support"
        ) as session:
            session.recorder.decision(session.run_context("router"), _router_decision("hi"))
        spans = otlp_receiver.wait_for(_has_run(run_id))
        decision = _by_name(_of_run(spans, run_id), "decision:router")
        roots.append((decision.trace_id, decision.parent_span_id))

    (first_trace, first_root), (second_trace, second_root) = roots
    assert first_trace == second_trace == trace_id_for(thread)
    assert first_root != second_root  # each run is its own observation in the trace


class _State(TypedDict):
    text: str
    route: str


def test_records_made_inside_a_langgraph_node_join_the_trace(otlp_receiver: OtlpReceiver) -> None:
    thread, run_id = f"thread-{uuid.uuid4()}", f"run-{uuid.uuid4()}"
    with tracing_session(
        _settings(otlp_receiver), thread_id=thread, run_id=run_id, graph="g"
    ) as session:

        def route(state: _State) -> dict[str, Any]:
            decision = _router_decision(state["text"])
            session.recorder.decision(session.run_context("route"), decision)
            return {"route": decision.value}

        builder = StateGraph(_State)
        builder.add_node("route", route)
        builder.add_edge(START, "route")
        builder.add_edge("route", END)
        result = builder.compile().invoke(
            {"text": "where is my card", "route": ""}, config={"callbacks": session.callbacks}
        )
    assert result["route"] == "billing"

    spans = otlp_receiver.wait_for(
        lambda got: (
            any(s.name == "route" and s.trace_id == trace_id_for(thread) for s in got)
            and len(_of_run(got, run_id)) >= 1
        )
    )
    decision = _by_name(_of_run(spans, run_id), "decision:router")
    node = next(s for s in spans if s.name == "route" and s.trace_id == trace_id_for(thread))
    assert decision.trace_id == trace_id_for(thread)
    # The decision nests under the LangGraph node that took it, not beside it.
    assert decision.parent_span_id == node.span_id


def test_tracing_off_records_nothing_and_imports_no_langfuse() -> None:
    code = (
        "import sys\n"
        "from agentflow.settings import Settings\n"
        "from agentflow.tracing import tracing_session\n"
        "with tracing_session(Settings(), thread_id='t', run_id='r', graph='g') as s:\n"
        "    print(type(s.recorder).__name__, s.callbacks, s.trace_id, s.trace_url)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('langfuse', 'opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if "LANGFUSE" not in k}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [f"{NullRecorder.__name__} [] None None", "[]"]


def test_a_tracing_failure_is_logged_and_never_breaks_the_run(
    otlp_receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    client = Langfuse(public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=otlp_receiver.base_url)
    recorder = LangfuseRecorder(client, trace_id="not-a-hex-trace-id")
    ctx = RunContext(thread_id="t-broken", run_id="r", graph="g", node="router")
    with caplog.at_level(logging.ERROR, logger="agentflow.tracing"):
        recorder.decision(ctx, _router_decision("hello"))
    assert "could not record decision:router for thread t-broken" in caplog.text
