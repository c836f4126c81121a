"""A traced support-agent thread through the real runtime: SLM decisions, the LLM call,
tool execution and the approval arrive over OTLP in one trace, and the resumed run
continues the same trace."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.nodes.approval import ApprovalAnswer
from agentflow.runtime import AgentRuntime
from agentflow.tracing import trace_id_for
from tests.fixtures.support_env import support_environment

PUBLIC_KEY = f"pk-lf-runtime-{uuid.uuid4().hex[:8]}"


def test_a_thread_is_one_trace_across_resumption(
    tmp_path: Path, valkey_server: Any, heads_cache: Path, otlp_receiver: Any
) -> None:
    with (
        support_environment(
            tmp_path,
            valkey_server.url,
            heads_cache,
            langfuse_public_key=PUBLIC_KEY,
            langfuse_secret_key="sk-lf-test",
            langfuse_base_url=otlp_receiver.base_url,
        ) as settings,
        AgentRuntime.open(
            "graphs/support.py",
            settings=settings,
            llm=FakeListChatModel(responses=["Sorry about that."]),
        ) as rt,
    ):
        res = rt.run("Refund $14 for order 58812, it arrived cracked")
        trace = trace_id_for(res.thread_id)
        first = otlp_receiver.wait_for(
            lambda got: any(
                s.trace_id == trace and s.name == "decision:consequence_modeler" for s in got
            )
        )
        p = res.pending_approval
        done = rt.answer(
            res.thread_id,
            ApprovalAnswer(
                approval_id=p["approval_id"], decision="approve", approver="sam", digest=p["digest"]
            ),
        )
        assert done.status == "done"
        spans = otlp_receiver.wait_for(
            lambda got: any(s.trace_id == trace and s.name.startswith("tool:") for s in got)
        )
    mine = [s for s in spans if s.trace_id == trace]
    names = {s.name for s in mine}
    assert {"decision:router", "decision:consequence_modeler", "decision:loop_evaluator"} <= names
    assert any(n.startswith("tool:issue_refund") for n in names)
    assert any(n.startswith("approval:") for n in names)
    router = next(s for s in mine if s.name == "decision:router")
    assert router.attributes.get("agentflow.value") == "refund"
    assert {"agentflow.confidence", "agentflow.source", "agentflow.escalated"} <= set(
        router.attributes
    )
    # Two runs (the request, then the resumption after approval), one trace.
    assert len({s.trace_id for s in first if s.trace_id == trace}) == 1
    assert len([s for s in mine if s.name.startswith("run:")]) >= 2
