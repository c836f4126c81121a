"""The SQL ledger: every decision, LLM call, tool call, approval, label and head version.

:class:`Ledger` implements ``agentflow.recording.Recorder`` on the same database URL as
the checkpoints (SQLite file or Postgres). Each record is its own short transaction, so
a crash mid-run loses nothing already recorded; a record that cannot be written raises
:class:`~agentflow.errors.LedgerError` naming the database (password hidden) and the
fix — never silently dropped. Tables are created only by :meth:`Ledger.setup`
(``agentflow setup``); a ledger used before that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Engine, Select, Table, create_engine, event, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from agentflow.decision import Decision
from agentflow.errors import LedgerError
from agentflow.recording import ApprovalRecord, LlmCallRecord, RunContext, ToolCallRecord
from agentflow.settings import Settings
from checkpoints import migrations
from checkpoints.savers import parse_database_url
from checkpoints.schema import (
    ApprovalRow,
    DecisionRow,
    HeadVersionRow,
    LabeledInput,
    LabelRow,
    LabelSource,
    LlmCallRow,
    ToolCallRow,
    approvals,
    decisions,
    head_versions,
    labels,
    llm_calls,
    tool_calls,
    utc,
)

__all__ = ["Ledger"]

R = TypeVar("R", bound=BaseModel)

_SETUP_FIX = "run `agentflow setup` (applies the ledger migrations) and retry"
_REACH_FIX = "check that the database is reachable and AGENTFLOW_DATABASE_URL is right"


def _json(value: Any) -> Any:
    """A JSON-compatible copy of ``value`` (pydantic models, enums, dates included)."""
    return to_jsonable_python(value, fallback=str)


class Ledger:
    """The audit trail in SQL; one instance is safe to share across threads."""

    def __init__(self, url: str | None = None, *, clock: Callable[[], datetime] | None = None):
        """Bind to ``url`` (default: the settings' database). Nothing connects yet.

        ``clock`` stamps ``created_at`` (default: now, UTC); tests and imports of
        historical data pass their own.
        """
        self._db = parse_database_url(url)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._engine: Engine | None = None
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        """The ledger on ``settings.resolved_database_url``."""
        return cls(settings.resolved_database_url)

    @property
    def url(self) -> str:
        """The database URL with its password hidden."""
        return self._db.masked

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use)."""
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        if self._db.kind == "postgres":
            return create_engine(
                self._db.sqlalchemy_url, pool_pre_ping=True, connect_args={"connect_timeout": 10}
            )
        path = self._db.sqlite_path or ":memory:"
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(
                    f"cannot create the folder of the ledger database {self.url}: {exc}",
                    hint=f"{_REACH_FIX} (a writable path)",
                ) from exc
        # The checkpoint saver writes to the same file: wait for its lock, not fail.
        engine = create_engine(self._db.sqlalchemy_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if path != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine

    def close(self) -> None:
        """Release the connection pool (the ledger reconnects if used again)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- setup ------------------------------------------------------------------------

    def setup(self) -> None:
        """Apply every pending migration (``alembic upgrade head``); a no-op when current."""
        with self._guard("migrate"):
            migrations.upgrade(self.engine)
        self._ready = True

    def revision(self) -> str | None:
        """The migration the database is at (None: never set up)."""
        with self._guard("read the schema version of"):
            return migrations.current_revision(self.engine)

    def _require_ready(self) -> None:
        if self._ready:
            return
        current = self.revision()
        head = migrations.head_revision()
        if current != head:
            state = "has no ledger tables" if current is None else f"is at migration {current}"
            raise LedgerError(
                f"the ledger database {self.url} {state}; this agentflow needs {head}",
                hint=_SETUP_FIX,
            )
        self._ready = True

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn database failures into LedgerError naming the database and the fix."""
        try:
            yield
        except SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise LedgerError(
                f"cannot {action} the ledger database {self.url}: "
                f"{detail[0] if detail else type(exc).__name__}",
                hint=f"{_REACH_FIX}, then run `agentflow setup`",
            ) from exc

    def _insert(self, table: Table, values: dict[str, Any]) -> int:
        self._require_ready()
        with self._guard(f"write a {table.name} record to"), self.engine.begin() as conn:
            result = conn.execute(insert(table).values(**values))
            key = result.inserted_primary_key
        assert key is not None  # every ledger table has an integer primary key
        return int(key[0])

    def _ctx(self, ctx: RunContext) -> dict[str, Any]:
        return {
            "created_at": self._clock(),
            "thread_id": ctx.thread_id,
            "run_id": ctx.run_id,
            "graph": ctx.graph,
            "node": ctx.node,
            "trace_id": ctx.trace_id,
        }

    # --- Recorder -----------------------------------------------------------------------

    def record_decision(self, ctx: RunContext, decision: Decision[Any]) -> int:
        """Write one decision and return its id (the id reviewers label)."""
        return self._insert(
            decisions,
            {
                **self._ctx(ctx),
                "role": decision.role,
                "input": _json(decision.input),
                "value": _json(decision.value),
                "confidence": decision.confidence,
                "source": decision.source,
                "model_name": decision.model.name if decision.model else None,
                "model_sha256": decision.model.sha256 if decision.model else None,
                "latency_ms": decision.latency_ms,
                "escalated": decision.escalated,
                "calibrated": decision.calibrated,
                "rationale": decision.rationale,
                "scores": _json(decision.scores),
            },
        )

    def decision(self, ctx: RunContext, decision: Decision[Any]) -> None:
        """Record one decision (``Recorder``)."""
        self.record_decision(ctx, decision)

    def llm_call(self, ctx: RunContext, record: LlmCallRecord) -> None:
        """Record one LLM call (``Recorder``)."""
        self._insert(llm_calls, {**self._ctx(ctx), **record.model_dump()})

    def tool_call(self, ctx: RunContext, record: ToolCallRecord) -> None:
        """Record one tool execution attempt (``Recorder``)."""
        self._insert(tool_calls, {**self._ctx(ctx), **_json(record.model_dump())})

    def approval(self, ctx: RunContext, record: ApprovalRecord) -> None:
        """Record an approval request or answer (``Recorder``)."""
        self._insert(approvals, {**self._ctx(ctx), **_json(record.model_dump())})

    # --- labels and heads ---------------------------------------------------------------

    def add_label(
        self, decision_id: int, value: Any, labeled_by: str, source: LabelSource = "human"
    ) -> int:
        """Say what decision ``decision_id`` should have been; returns the label's id."""
        if source not in ("human", "llm"):
            raise LedgerError(
                f"label source {source!r} is neither 'human' nor 'llm'",
                hint="label with source='human' (a reviewer) or source='llm' (an LLM verdict)",
            )
        row = {
            "decision_id": decision_id,
            "value": _json(value),
            "labeled_by": labeled_by,
            "source": source,
            "created_at": self._clock(),
        }
        try:
            return self._insert(labels, row)
        except LedgerError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise LedgerError(
                    f"there is no decision {decision_id} in {self.url} to label",
                    hint="list decisions with `agentflow review` and label one of their ids",
                ) from exc.__cause__
            raise

    def record_head_version(
        self, role: str, sha256: str, path: str, metrics: dict[str, Any], accepted: bool
    ) -> int:
        """Record a trained head (kept or not) with its hash and evaluation; returns its id."""
        return self._insert(
            head_versions,
            {
                "role": role,
                "sha256": sha256,
                "path": str(path),
                "metrics": _json(metrics),
                "accepted": accepted,
                "created_at": self._clock(),
            },
        )

    # --- queries ------------------------------------------------------------------------

    def _rows(
        self,
        table: Table,
        model: type[R],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        **equal: Any,
    ) -> list[R]:
        """Rows oldest first, ``since`` inclusive, ``until`` exclusive; ``limit``: the newest N."""
        self._require_ready()
        query: Select[Any] = select(table)
        for column, value in equal.items():
            if value is not None:
                query = query.where(table.c[column] == value)
        if since is not None:
            query = query.where(table.c.created_at >= utc(since))
        if until is not None:
            query = query.where(table.c.created_at < utc(until))
        query = query.order_by(table.c.created_at.desc(), table.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._guard(f"read {table.name} from"), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [model.model_validate(dict(r)) for r in reversed(rows)]

    def decisions(
        self,
        role: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        thread_id: str | None = None,
        limit: int | None = None,
    ) -> list[DecisionRow]:
        """Recorded decisions, oldest first; ``limit`` keeps the newest N."""
        return self._rows(
            decisions, DecisionRow, since=since, until=until, limit=limit,
            role=role, thread_id=thread_id,
        )  # fmt: skip

    def llm_calls(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        thread_id: str | None = None,
        limit: int | None = None,
    ) -> list[LlmCallRow]:
        """Recorded LLM calls, oldest first."""
        return self._rows(
            llm_calls, LlmCallRow, since=since, until=until, limit=limit, thread_id=thread_id
        )

    def tool_calls(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        thread_id: str | None = None,
        tool: str | None = None,
        limit: int | None = None,
    ) -> list[ToolCallRow]:
        """Recorded tool execution attempts, oldest first."""
        return self._rows(
            tool_calls, ToolCallRow, since=since, until=until, limit=limit,
            thread_id=thread_id, tool=tool,
        )  # fmt: skip

    def approvals(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        thread_id: str | None = None,
        approval_id: str | None = None,
        limit: int | None = None,
    ) -> list[ApprovalRow]:
        """Recorded approval requests and answers, oldest first."""
        return self._rows(
            approvals, ApprovalRow, since=since, until=until, limit=limit,
            thread_id=thread_id, approval_id=approval_id,
        )  # fmt: skip

    def labels(self, decision_id: int | None = None, role: str | None = None) -> list[LabelRow]:
        """Labels, oldest first, of one decision or of every decision of ``role``."""
        self._require_ready()
        query = select(labels)
        if decision_id is not None:
            query = query.where(labels.c.decision_id == decision_id)
        if role is not None:
            query = query.join(decisions, decisions.c.id == labels.c.decision_id).where(
                decisions.c.role == role
            )
        query = query.order_by(labels.c.created_at, labels.c.id)
        with self._guard("read labels from"), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [LabelRow.model_validate(dict(r)) for r in rows]

    def labels_for(self, role: str) -> list[LabeledInput]:
        """Training examples for ``role``: one per labelled decision, in decision order.

        When a decision has several labels, a human's beats the LLM's and a newer one
        beats an older one from the same source.
        """
        self._require_ready()
        query = (
            select(decisions.c.id, decisions.c.input, labels.c.value, labels.c.source)
            .join(labels, labels.c.decision_id == decisions.c.id)
            .where(decisions.c.role == role)
            .order_by(decisions.c.id, labels.c.created_at, labels.c.id)
        )
        with self._guard("read labels from"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        chosen: dict[int, LabeledInput] = {}
        for decision_id, inp, value, source in rows:
            previous = chosen.get(decision_id)
            if previous is None or source == "human" or previous.source == "llm":
                chosen[decision_id] = LabeledInput(inp, value, source)
        return list(chosen.values())

    def head_versions(self, role: str | None = None) -> list[HeadVersionRow]:
        """Recorded head versions, oldest first (the last accepted one is current)."""
        return self._rows(head_versions, HeadVersionRow, role=role)
