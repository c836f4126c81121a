"""The agent CLI end to end: setup, run --json, approvals, resume, assess (real models,
real SQLite, real Valkey; the order-status and refund paths need no LLM)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentflow.cli import app
from agentflow.cli.demo import CONVERSATIONS
from agentflow.models.llm import tidy_answer
from agentflow.nodes._answer import STAND_IN_LABEL
from agentflow.nodes.respond import SYSTEM as RESPOND_SYSTEM
from graphs import support
from tests.fixtures.heads import data_dir_with_heads

runner = CliRunner()


@pytest.fixture
def cli_env(
    tmp_path: Path, valkey_server: Any, heads_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(data_dir_with_heads(tmp_path / "af", heads_cache)))
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite")
    monkeypatch.setenv("AGENTFLOW_REDIS_URL", valkey_server.url)
    monkeypatch.setenv("AGENTFLOW_NAMESPACE", f"cli-{tmp_path.name}")
    monkeypatch.setenv("AGENTFLOW_SUPPORT_DB", str(tmp_path / "support.db"))
    support.store.cache_clear()
    result = runner.invoke(app, ["setup"])
    assert result.exit_code == 0, result.output
    return tmp_path


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_run_json_has_the_documented_fields(cli_env: Path) -> None:
    out = _json(["run", "graphs/support.py", "where is my order A10234?", "--json"])
    assert {"thread_id", "route", "decisions", "llm_calls", "status"} <= set(out)
    assert out["route"] == "order_status" and out["status"] == "done" and out["llm_calls"] == 0
    for d in out["decisions"]:
        assert {"role", "value", "confidence", "source", "latency_ms"} <= set(d)


def test_run_reads_the_first_of_two_arguments_as_the_graph(cli_env: Path) -> None:
    missing = runner.invoke(app, ["run", "graphs/no_such_agent.py", "where is my order?"])
    assert missing.exit_code == 1 and "no_such_agent" in missing.output
    twice = runner.invoke(app, ["run", "graphs/support.py", "hi", "--graph", "graphs/support.py"])
    assert twice.exit_code == 1 and "graph given twice" in twice.output
    loose = runner.invoke(app, ["run", "graphs/support.py", "where", "is", "it"])
    assert loose.exit_code == 1 and "quote a message" in loose.output


def test_approvals_and_resume_from_the_cli(cli_env: Path) -> None:
    run = _json(["run", "Refund $21 for order 58812, it broke", "--json"])
    assert run["status"] == "waiting_approval"
    pending = _json(["approvals", "--json"])
    assert [p["thread_id"] for p in pending] == [run["thread_id"]]
    refused = runner.invoke(
        app, ["resume", run["thread_id"], "--approve", "--by", "eve", "--digest", "0" * 64]
    )
    assert refused.exit_code == 1 and "digest" in refused.output
    assert support.store().refunds("58812") == []
    done = _json(["resume", run["thread_id"], "--approve", "--by", "sam", "--json"])
    assert done["status"] == "done"
    assert [r["amount_cents"] for r in support.store().refunds("58812")] == [2100]
    assert _json(["approvals", "--json"]) == []


def test_resume_needs_an_approver(cli_env: Path) -> None:
    result = runner.invoke(app, ["resume", "t_x", "--approve"])
    assert result.exit_code == 2 and "--by" in result.output


def test_assess_prints_one_line_per_tool_in_order(tmp_path: Path) -> None:
    tools = [
        {
            "tool": {
                "name": "charge_card",
                "description": "Charge a customer's credit card",
                "inputSchema": {"type": "object", "properties": {"amount": {"type": "number"}}},
                "annotations": {"irreversible": True},
            },
            "args": {"amount": 10},
        },
        {
            "tool": {
                "name": "get_invoice",
                "description": "Read an invoice by id",
                "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
                "annotations": {"readOnlyHint": True},
            },
            "args": {"id": "in_1"},
        },
    ]
    path = tmp_path / "tools.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in tools))
    result = runner.invoke(app, ["assess", "--tool", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["tool"] for r in rows] == ["charge_card", "get_invoice"]
    assert rows[0]["class"] == "irreversible" and rows[0]["floor"] == "irreversible"
    assert rows[1]["floor"] == "safe"
    assert all({"class", "confidence", "source", "floor"} <= set(r) for r in rows)


def test_a_question_and_its_answer_share_a_thread(cli_env: Path) -> None:
    asked = _json(["run", "the apartment number on order 62157 is wrong, it's 4B", "--json"])
    assert asked["status"] == "done" and asked["needs_input"] == ["address"]
    assert asked["llm_calls"] == 0
    reply = ["run", "Flat 4B, 12 Harbour Street, Leeds LS1 4AB", "--thread", asked["thread_id"]]
    done = _json([*reply, "--json"])
    assert done["route"] == "change_address" and done["needs_input"] == []
    assert support.store().order("62157")["address"] == "Flat 4B, 12 Harbour Street, Leeds LS1 4AB"


def test_demo_shows_every_path(cli_env: Path) -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    for route in support.routes():
        assert f"route {route.name}" in out, route.name
    assert "asked the user for address" in out and "waiting for approval" in out
    assert "already shipped" in out  # A10235 has shipped: the back office says no
    assert support.store().refunds("58812") != []  # the demo approves its refund

    # Piped output: no decision line is broken inside a field.
    decisions = [line for line in out.splitlines() if "conf=" in line]
    assert decisions and all(re.search(r"conf=\S+ \S+ +[\d.]+ ms", line) for line in decisions)
    # The local stand-in's answers (pricing, complaint) are labelled and copy nothing from
    # the prompt: no run of eight words of the instructions or of any request.
    stand_in = [
        line.removeprefix(f"outcome {STAND_IN_LABEL}").strip()
        for line in out.splitlines()
        if line.startswith(f"outcome {STAND_IN_LABEL}")
    ]
    assert len(stand_in) >= 2, out
    requests = [m for conversation in CONVERSATIONS for m in conversation]
    for text in stand_in:
        if text.startswith("No LLM endpoint is configured"):
            continue  # the plain note, which quotes the request on purpose
        assert tidy_answer(text, [RESPOND_SYSTEM, *requests]) == (text, None), text
