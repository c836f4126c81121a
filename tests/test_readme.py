"""The README's agent example runs as printed: its Python blocks are written to a module
unchanged and opened like any graph module, on real MiniLM, SQLite and Valkey. The LLM
planner is a langchain-core fake chat model (the one allowed stand-in)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import setup_savers
from agentflow.nodes.approval import ApprovalAnswer
from agentflow.runtime import AgentRuntime
from agentflow.settings import Settings
from tests.fixtures.heads import data_dir_with_heads

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.slow


def python_blocks() -> list[str]:
    """Every fenced ``python`` block of the README, as printed."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_a_python_example() -> None:
    assert any("def build(" in block for block in python_blocks())


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, valkey_server: Any, heads_cache: Path
) -> Settings:
    tmp = tmp_path_factory.mktemp("readme")
    s = Settings(
        data_dir=data_dir_with_heads(tmp / "af", heads_cache),
        database_url=f"sqlite:///{tmp}/agentflow.db",
        redis_url=valkey_server.url,
    )
    setup_savers(s.resolved_database_url)
    Ledger(s.resolved_database_url).setup()
    return s


@pytest.fixture()
def example_module(tmp_path: Path) -> Iterator[str]:
    (block,) = [b for b in python_blocks() if "def build(" in b]
    path = tmp_path / "readme_payments.py"
    path.write_text(block)
    yield str(path)


def test_the_readme_agent_routes_by_rule_and_waits_for_approval(
    settings: Settings, example_module: str
) -> None:
    plan = {"goal": "pay invoice 12", "steps": [{"tool": "pay", "args": {"invoice": "12"}}]}
    llm = FakeListChatModel(responses=[json.dumps(plan), "Invoice 12 is paid."])
    with AgentRuntime.open(example_module, settings=settings, llm=llm) as rt:
        res = rt.run("Please pay invoice 12 today")
        assert res.route == "pay"
        router = [d for d in res.decisions if d["role"] == "router"]
        assert [(d["source"], d["value"]) for d in router] == [("rule", "pay")]
        assert res.status == "waiting_approval", res.outcome
        pending = res.pending_approval
        assert pending is not None and pending["tool"] == "pay"
        assert pending["args"] == {"invoice": "12"}

        done = rt.answer(
            res.thread_id,
            ApprovalAnswer(
                approval_id=pending["approval_id"],
                decision="approve",
                approver="alice",
                digest=pending["digest"],
            ),
        )
        assert done.status == "done", done.outcome
        paid = [o for o in done.observations if o["tool"] == "pay"]
        assert len(paid) == 1 and paid[0]["status"] == "ok"
        assert paid[0]["output"]["paid"] == "12" and paid[0]["output"]["idempotency_key"]
