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
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import Engine, Table, create_engine, delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from agentflow.checkpoints import migrations
from agentflow.checkpoints.queries import LedgerQueries
from agentflow.checkpoints.rows import LabelSource
from agentflow.checkpoints.savers import parse_database_url
from agentflow.checkpoints.schema import (
    approvals,
    decisions,
    effects,
    head_versions,
    labels,
    llm_calls,
    tool_calls,
)
from agentflow.decision import Decision
from agentflow.errors import LedgerError
from agentflow.recording import ApprovalRecord, LlmCallRecord, RunContext, ToolCallRecord
from agentflow.settings import Settings
from agentflow.tools.journal import EffectEntry, EffectOutcome

__all__ = ["Ledger"]

_SETUP_FIX = "run `agentflow setup` (applies the ledger migrations) and retry"
_REACH_FIX = "check that the database is reachable and AGENTFLOW_DATABASE_URL is right"


def _json(value: Any) -> Any:
    """A JSON-compatible copy of ``value`` (pydantic models, enums, dates included)."""
    return to_jsonable_python(value, fallback=str)


class Ledger(LedgerQueries):
    """The audit trail in SQL; one instance is safe to share across threads.

    Writes are defined here; every query (``decisions``, ``episodes``, ``labels_for``,
    ``head_versions``, ...) comes from :class:`agentflow.checkpoints.queries.LedgerQueries`.
    """

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
        db = self._db
        if db.kind == "postgres":
            return create_engine(
                db.sqlalchemy_url, pool_pre_ping=True, connect_args={"connect_timeout": 10}
            )
        memory = (db.sqlite_path or ":memory:") == ":memory:"
        if memory:
            # One shared connection, or every pooled connection sees its own empty database.
            engine = create_engine(
                db.sqlalchemy_url, connect_args={"check_same_thread": False}, poolclass=StaticPool
            )
        else:
            try:
                Path(db.sqlite_path or "").parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(
                    f"cannot create the folder of the ledger database {self.url}: {exc}",
                    hint=f"{_REACH_FIX} (a writable path)",
                ) from exc
            # The checkpoint saver writes to the same file: wait for its lock, not fail.
            engine = create_engine(db.sqlalchemy_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
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

    def check_schema(self) -> None:
        """Raise LedgerError unless the database is migrated to this agentflow's schema."""
        self._require_ready()

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
            # One statement per table, values as parameters: SQLAlchemy compiles it once
            # (building `.values(...)` anew cost ~1 ms per record).
            result = conn.execute(insert(table), values)
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

    # --- EffectJournal (agentflow.tools.journal) ---------------------------------------------------

    def effect(
        self,
        key: str,
        *,
        thread_id: str,
        tool: str,
        fingerprint: str,
        outcome: EffectOutcome,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """Record the outcome of ``key`` (insert, or update the row already there)."""
        self._require_ready()
        now = self._clock()
        values = {
            "outcome": outcome,
            "result": _json(result),
            "error": error,
            "updated_at": now,
            "fingerprint": fingerprint,
        }
        which = effects.c.idempotency_key == key
        if outcome == "started":
            # A start is written only over nothing or a released key, never over a result.
            which = which & (effects.c.outcome == "released")
        change = update(effects).where(which).values(**values)
        row = {"idempotency_key": key, "thread_id": thread_id, "tool": tool}
        with self._guard("write an effect to"):
            with self.engine.begin() as conn:
                if conn.execute(change).rowcount:
                    return
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(effects).values(**row, created_at=now, **values))
            except IntegrityError:
                # The row exists (another worker's, or not released for a start): a start
                # stays refused; any other outcome is the later word on the key.
                if outcome != "started":
                    with self.engine.begin() as conn:
                        conn.execute(change)

    def forget_effect(self, key: str) -> bool:
        """A human allows a re-run of ``key``: delete its row. True when there was one."""
        self._require_ready()
        with self._guard("delete an effect from"), self.engine.begin() as conn:
            return bool(
                conn.execute(delete(effects).where(effects.c.idempotency_key == key)).rowcount
            )

    def effect_of(self, key: str) -> EffectEntry | None:
        """The recorded outcome of ``key``, if any."""
        self._require_ready()
        query = select(effects).where(effects.c.idempotency_key == key)
        with self._guard("read an effect from"), self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return EffectEntry(
            outcome=row["outcome"],
            fingerprint=row["fingerprint"],
            result=row["result"],
            error=row["error"],
            thread_id=row["thread_id"],
            tool=row["tool"],
        )

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
