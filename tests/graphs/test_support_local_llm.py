"""Every route of the support agent with real local models in every role, the LLM
included (the embedded Gemma GGUF, the weak default)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentflow.nodes._answer import STAND_IN_LABEL
from agentflow.nodes.approval import ApprovalAnswer
from agentflow.runtime import AgentRuntime
from graphs import support
from tests.fixtures.support_env import support_environment

MESSAGES = {
    "order_status": "Where is order A10234? Tracking hasn't updated",
    "change_address": "Please send order {processing} to 22 Baker Street, London NW1 6XE instead",
    "cancel_subscription": "Cancel my plan at the end of the billing period please",
    "refund": "Order 58812 came broken, refund $30 please",
    "pricing": "What does the Team plan cost per seat and is there an annual discount?",
    "complaint": "I am furious. Nobody answers my emails and my order is lost. Get me a manager.",
}


@pytest.fixture(scope="module")
def rt(
    tmp_path_factory: pytest.TempPathFactory, valkey_server: Any, heads_cache: Path
) -> Iterator[AgentRuntime]:
    tmp = tmp_path_factory.mktemp("local-llm")
    with (
        support_environment(tmp, valkey_server.url, heads_cache, namespace="local-llm") as settings,
        AgentRuntime.open("graphs/support.py", settings=settings) as runtime,  # llm: local GGUF
    ):
        yield runtime


@pytest.mark.parametrize("route", list(MESSAGES))
def test_every_route_with_real_local_models(rt: AgentRuntime, route: str) -> None:
    with support.store()._connect() as conn:
        processing = conn.execute(
            "SELECT order_id FROM orders WHERE status='processing' LIMIT 1"
        ).fetchone()[0]
    res = rt.run(MESSAGES[route].format(processing=processing))
    assert res.route == route, res.decisions
    if res.pending_approval:
        p = res.pending_approval
        res = rt.answer(
            res.thread_id,
            ApprovalAnswer(
                approval_id=p["approval_id"],
                decision="approve",
                approver="tester",
                digest=p["digest"],
            ),
        )
    assert res.status == "done", res.outcome
    assert res.outcome  # an answer was written, templated or by the local LLM
    if route in ("pricing", "complaint"):
        assert res.llm_calls >= 1 and res.llm_tokens > 0
        assert res.outcome.startswith(STAND_IN_LABEL)  # never passed off as a real LLM
