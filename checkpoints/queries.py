"""The ledger's read side: every query :class:`agentflow.checkpoints.ledger.Ledger` answers.

:class:`LedgerQueries` is mixed into ``Ledger``, which supplies the engine, the
"is the schema current" check and the error translation; this module only reads.
Rows come back oldest first as the frozen models of :mod:`agentflow.checkpoints.rows`.
:func:`pair_episodes` rebuilds, from the flat decision rows, which small-model decision
each LLM verdict overrode (the two are recorded back to back from one trail).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Engine, Select, Table, select

from agentflow.checkpoints.rows import (
    ApprovalRow,
    DecisionRow,
    Episode,
    HeadVersionRow,
    LabeledInput,
    LabelRow,
    LlmCallRow,
    ToolCallRow,
)
from agentflow.checkpoints.schema import (
    approvals,
    decisions,
    head_versions,
    labels,
    llm_calls,
    tool_calls,
    utc,
)

__all__ = ["LedgerQueries", "pair_episodes"]

R = TypeVar("R", bound=BaseModel)


def pair_episodes(rows: Iterable[DecisionRow]) -> list[Episode]:
    """Group decision rows (in id order) into episodes, in the order they began.

    Within one thread, run, node and role, an escalated decision directly following a
    non-escalated one on the same input is the verdict that overrode it (the node
    records a resolution's trail in order). Anything else starts its own episode.
    """
    episodes: list[Episode] = []
    open_: dict[tuple[str, str, str, str], int] = {}  # key -> index of its latest episode
    for row in sorted(rows, key=lambda r: r.id):
        key = (row.thread_id, row.run_id, row.node, row.role)
        at = open_.get(key)
        if at is not None and row.escalated:
            last = episodes[at]
            if (
                last.final.id == last.first.id
                and not last.first.escalated
                and last.first.input == row.input
            ):
                episodes[at] = Episode(first=last.first, final=row)
                continue
        open_[key] = len(episodes)
        episodes.append(Episode(first=row, final=row))
    return episodes


class LedgerQueries:
    """Read queries over the ledger tables; ``Ledger`` provides the plumbing."""

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (provided by ``Ledger``)."""
        raise NotImplementedError

    def _require_ready(self) -> None:
        raise NotImplementedError

    def _guard(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

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

    def decisions_by_id(self, ids: Iterable[int]) -> dict[int, DecisionRow]:
        """The decisions with these ids (ids that do not exist are simply absent)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        self._require_ready()
        query = select(decisions).where(decisions.c.id.in_(wanted))
        with self._guard("read decisions from"), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return {int(r["id"]): DecisionRow.model_validate(dict(r)) for r in rows}

    def episodes(
        self,
        role: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        thread_id: str | None = None,
    ) -> list[Episode]:
        """Decisions as the graph took them: each small-model decision with its verdict."""
        return pair_episodes(self.decisions(role, since, until, thread_id))

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
