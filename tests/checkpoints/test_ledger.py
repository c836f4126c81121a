"""The SQL ledger on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from agentflow.checkpoints import Ledger, open_saver, setup_savers
from agentflow.checkpoints.migrations import head_revision
from agentflow.decision import Decision, ModelRef
from agentflow.errors import LedgerError
from agentflow.recording import (
    ApprovalRecord,
    LlmCallRecord,
    Recorder,
    RunContext,
    ToolCallRecord,
)
from agentflow.settings import Settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CTX = RunContext(
    thread_id="th-1", run_id="run-1", graph="support", node="router", trace_id="ab" * 16
)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/agentflow.db"
    return str(request.getfixturevalue("postgres_url"))


class _Clock:
    """A settable clock, so tests place records in time without sleeping."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def ledger(db_url: str, clock: _Clock) -> Iterator[Ledger]:
    ledger = Ledger(db_url, clock=clock)
    ledger.setup()
    yield ledger
    ledger.close()


class _Ticket(BaseModel):
    priority: int
    tags: list[str]


def _decision(role: str = "router", value: object = "billing", **kw: object) -> Decision[object]:
    fields: dict[str, object] = {
        "role": role,
        "value": value,
        "confidence": 0.87,
        "source": "slm:encoder",
        "latency_ms": 13.25,
        "input": {"text": "I was charged twice — ünïcode ok?"},
        **kw,
    }
    return Decision[object].model_validate(fields)


# --- setup --------------------------------------------------------------------------


def test_a_ledger_used_before_setup_says_to_run_setup(db_url: str) -> None:
    ledger = Ledger(db_url)
    with pytest.raises(LedgerError, match="agentflow setup") as err:
        ledger.decision(CTX, _decision())
    assert "no ledger tables" in str(err.value)
    with pytest.raises(LedgerError, match="agentflow setup"):
        ledger.decisions()


def test_setup_is_idempotent_and_keeps_records(db_url: str) -> None:
    first = Ledger(db_url)
    first.setup()
    first.decision(CTX, _decision())
    first.setup()
    second = Ledger(db_url)  # another process: no setup call, the database is current
    assert second.revision() == head_revision()
    assert [d.value for d in second.decisions()] == ["billing"]


def test_the_ledger_is_a_recorder(tmp_path: Path) -> None:
    assert isinstance(Ledger(f"sqlite:///{tmp_path}/x.db"), Recorder)


def test_from_settings_uses_the_checkpoint_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    ledger = Ledger.from_settings(settings)
    ledger.setup()
    ledger.decision(CTX, _decision())
    assert (tmp_path / "data" / "agentflow.db").is_file()
    # The checkpoint saver opens the same file next to the ledger tables.
    setup_savers(settings.resolved_database_url)
    with open_saver(settings.resolved_database_url) as saver:
        assert list(saver.list(None)) == []
    assert len(Ledger.from_settings(settings).decisions()) == 1


# --- round trips --------------------------------------------------------------------


def test_a_decision_round_trips_every_field(ledger: Ledger) -> None:
    decision = _decision(
        value=_Ticket(priority=2, tags=["refund", "card"]),
        model=ModelRef(name="router-head", sha256="cd" * 32),
        escalated=True,
        calibrated=False,
        rationale="close call",
        scores={"billing": 0.87, "shipping": 0.13},
    )
    decision_id = ledger.record_decision(CTX, decision)
    (row,) = ledger.decisions()
    assert row.id == decision_id
    assert row.created_at == T0
    assert (row.thread_id, row.run_id, row.graph, row.node, row.trace_id) == (
        "th-1",
        "run-1",
        "support",
        "router",
        "ab" * 16,
    )
    assert row.role == "router"
    assert row.value == {"priority": 2, "tags": ["refund", "card"]}
    assert row.input == {"text": "I was charged twice — ünïcode ok?"}
    assert row.confidence == 0.87
    assert row.source == "slm:encoder"
    assert (row.model_name, row.model_sha256) == ("router-head", "cd" * 32)
    assert row.latency_ms == 13.25
    assert (row.escalated, row.calibrated) == (True, False)
    assert row.rationale == "close call"
    assert row.scores == {"billing": 0.87, "shipping": 0.13}


def test_llm_tool_and_approval_records_round_trip(ledger: Ledger) -> None:
    ledger.llm_call(
        CTX,
        LlmCallRecord(
            purpose="escalation:router",
            model="gpt-4o-mini",
            input_tokens=120,
            output_tokens=7,
            latency_ms=340.5,
            cost_estimate=0.0000762,
        ),
    )
    ledger.tool_call(
        CTX,
        ToolCallRecord(
            tool="refund",
            args={"amount": 12.5, "items": [1, 2], "note": None},
            idempotency_key="agentflow:abc",
            consequence="irreversible",
            outcome="failed",
            error="gateway timeout",
            latency_ms=88.0,
        ),
    )
    ledger.approval(
        CTX,
        ApprovalRecord(
            approval_id="ap-9",
            tool="refund",
            digest="sha256:ff",
            decision="approve",
            approver="ann",
            reason="customer verified",
            payload={"args": {"amount": 12.5}, "assessment": {"class": "irreversible"}},
        ),
    )
    (llm,) = ledger.llm_calls()
    assert (llm.purpose, llm.model, llm.input_tokens, llm.output_tokens) == (
        "escalation:router",
        "gpt-4o-mini",
        120,
        7,
    )
    assert (llm.latency_ms, llm.cost_estimate, llm.created_at) == (340.5, 0.0000762, T0)
    (tool,) = ledger.tool_calls()
    assert tool.args == {"amount": 12.5, "items": [1, 2], "note": None}
    assert (tool.idempotency_key, tool.consequence, tool.outcome) == (
        "agentflow:abc",
        "irreversible",
        "failed",
    )
    assert (tool.error, tool.latency_ms, tool.thread_id) == ("gateway timeout", 88.0, "th-1")
    (approval,) = ledger.approvals()
    assert (approval.approval_id, approval.digest, approval.decision, approval.approver) == (
        "ap-9",
        "sha256:ff",
        "approve",
        "ann",
    )
    assert approval.reason == "customer verified"
    assert approval.payload == {"args": {"amount": 12.5}, "assessment": {"class": "irreversible"}}


def test_head_versions_are_kept_in_order_per_role(ledger: Ledger, clock: _Clock) -> None:
    ledger.record_head_version("router", "a" * 64, "/heads/r1.json", {"acc": 0.9}, True)
    clock.now = T0 + timedelta(hours=1)
    ledger.record_head_version("router", "b" * 64, "/heads/r2.json", {"acc": 0.85}, False)
    ledger.record_head_version("loop_evaluator", "c" * 64, "/heads/l1.json", {}, True)
    rows = ledger.head_versions("router")
    assert [(r.sha256[0], r.accepted, r.metrics) for r in rows] == [
        ("a", True, {"acc": 0.9}),
        ("b", False, {"acc": 0.85}),
    ]
    assert len(ledger.head_versions()) == 3


# --- labels -------------------------------------------------------------------------


def test_labels_prefer_humans_then_the_newest(ledger: Ledger) -> None:
    a = ledger.record_decision(CTX, _decision(input="card stolen", value="billing"))
    b = ledger.record_decision(CTX, _decision(input="where is it", value="billing"))
    c = ledger.record_decision(CTX, _decision(input="hello", value="chitchat"))
    ledger.record_decision(CTX, _decision(role="loop_evaluator", input="x", value="stop"))
    ledger.add_label(a, "fraud", "ann")
    ledger.add_label(a, "billing", "gpt-4o-mini", source="llm")  # later, but only the LLM
    ledger.add_label(b, "shipping", "gpt-4o-mini", source="llm")
    ledger.add_label(b, "returns", "gpt-4o-mini", source="llm")  # a newer LLM verdict wins
    # c stays unlabelled and is not a training example.
    assert c
    assert ledger.labels_for("router") == [
        ("card stolen", "fraud", "human"),
        ("where is it", "returns", "llm"),
    ]
    assert ledger.labels_for("loop_evaluator") == []
    assert [(label.value, label.source) for label in ledger.labels(decision_id=a)] == [
        ("fraud", "human"),
        ("billing", "llm"),
    ]
    assert len(ledger.labels(role="router")) == 4


def test_labelling_a_missing_decision_or_with_a_bad_source_fails(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="no decision 424242"):
        ledger.add_label(424242, "x", "ann")
    decision_id = ledger.record_decision(CTX, _decision())
    with pytest.raises(LedgerError, match="neither 'human' nor 'llm'"):
        ledger.add_label(decision_id, "x", "ann", source="robot")  # type: ignore[arg-type]
    assert ledger.labels() == []


# --- queries ------------------------------------------------------------------------


def _at(clock: _Clock, hours: int, record: Callable[[], object]) -> None:
    clock.now = T0 + timedelta(hours=hours)
    record()


def test_decisions_filter_by_role_time_thread_and_limit(ledger: Ledger, clock: _Clock) -> None:
    other = CTX.model_copy(update={"thread_id": "th-2"})
    _at(clock, 0, lambda: ledger.decision(CTX, _decision(value="r0")))
    _at(clock, 1, lambda: ledger.decision(other, _decision(value="r1")))
    _at(clock, 2, lambda: ledger.decision(CTX, _decision(role="loop_evaluator", value="l2")))
    _at(clock, 3, lambda: ledger.decision(CTX, _decision(value="r3")))

    def values(**query: object) -> list[object]:
        return [d.value for d in ledger.decisions(**query)]  # type: ignore[arg-type]

    assert values() == ["r0", "r1", "l2", "r3"]
    assert values(role="router") == ["r0", "r1", "r3"]
    assert values(since=T0 + timedelta(hours=1)) == ["r1", "l2", "r3"]  # inclusive
    assert values(until=T0 + timedelta(hours=2)) == ["r0", "r1"]  # exclusive
    assert values(thread_id="th-2") == ["r1"]
    assert values(role="router", limit=2) == ["r1", "r3"]  # the newest two, oldest first
    # Naive datetimes are UTC; other zones are converted.
    assert values(since=datetime(2026, 3, 1, 14, 30)) == ["r3"]
    plus_two = timezone(timedelta(hours=2))
    assert values(until=datetime(2026, 3, 1, 16, 0, tzinfo=plus_two)) == ["r0", "r1"]
    assert all(d.created_at.tzinfo is not None for d in ledger.decisions())


def test_other_records_filter_by_time_and_key(ledger: Ledger, clock: _Clock) -> None:
    for hour, tool in enumerate(["search", "refund", "search"]):
        clock.now = T0 + timedelta(hours=hour)
        ledger.tool_call(
            CTX,
            ToolCallRecord(
                tool=tool, args={}, idempotency_key=None, consequence="safe", outcome="ok"
            ),
        )
        ledger.llm_call(CTX, LlmCallRecord(purpose="plan", model="m"))
        ledger.approval(
            CTX,
            ApprovalRecord(
                approval_id=f"ap-{hour}", tool="refund", digest="d", decision="requested"
            ),
        )
    since = T0 + timedelta(hours=1)
    assert [t.tool for t in ledger.tool_calls(since=since)] == ["refund", "search"]
    assert len(ledger.tool_calls(tool="search")) == 2
    assert len(ledger.llm_calls(until=since)) == 1
    assert [a.approval_id for a in ledger.approvals(approval_id="ap-2")] == ["ap-2"]
    assert ledger.approvals(thread_id="nobody") == []


# --- failures -----------------------------------------------------------------------


def test_concurrent_writers_lose_nothing(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.setup()

    def write(worker: int) -> None:
        ctx = CTX.model_copy(update={"thread_id": f"w{worker}"})
        for i in range(20):
            ledger.decision(ctx, _decision(value=i))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = ledger.decisions()
    assert len(rows) == 80
    assert sorted(r.value for r in rows if r.thread_id == "w3") == list(range(20))


def test_an_unreachable_database_is_a_ledger_error_with_the_password_hidden() -> None:
    with socket_port() as port:
        ledger = Ledger(f"postgresql://agent:s3cret@127.0.0.1:{port}/ledger")
        with pytest.raises(LedgerError) as err:
            ledger.decision(CTX, _decision())
    message = str(err.value)
    assert "s3cret" not in message
    assert f"postgresql://agent:***@127.0.0.1:{port}/ledger" in message
    assert "agentflow setup" in message


def test_an_unwritable_sqlite_path_is_a_ledger_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LedgerError, match="cannot create the folder"):
        Ledger(f"sqlite:///{blocker}/sub/agentflow.db").setup()


def test_a_broken_table_is_a_ledger_error_not_a_lost_record(ledger: Ledger) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE llm_calls"))
    with pytest.raises(LedgerError, match="cannot write a llm_calls record"):
        ledger.llm_call(CTX, LlmCallRecord(purpose="plan", model="m"))


class socket_port:
    """A loopback port with nothing listening on it (held closed while in use)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def test_an_in_memory_ledger_keeps_one_database_across_threads() -> None:
    ledger = Ledger("sqlite://")
    ledger.setup()
    worker = threading.Thread(target=ledger.decision, args=(CTX, _decision(value="from-thread")))
    worker.start()
    worker.join()
    assert [d.value for d in ledger.decisions()] == ["from-thread"]
