"""The official LangGraph checkpointer conformance suite, on the savers agentflow opens.

Each saver comes from :func:`checkpoints.open_async_saver` with the URL a user would
configure, so the suite checks our URL handling and connection set-up too, not just
the upstream classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import CapabilityReport

from agentflow.checkpoints import open_async_saver, setup_savers
from tests.fixtures.postgres import PostgresServer


def _failures(report: CapabilityReport) -> dict[str, list[str]]:
    return {name: r.failures for name, r in report.results.items() if r.failures}


async def test_sqlite_saver_passes_the_conformance_suite(tmp_path: Path) -> None:
    fresh = iter(range(1000))

    @checkpointer_test(name="agentflow-sqlite")
    async def sqlite_saver() -> AsyncIterator[BaseCheckpointSaver[str]]:
        # A fresh file per capability suite, under a folder that does not exist yet.
        url = f"sqlite:///{tmp_path}/nested/db{next(fresh)}.sqlite"
        setup_savers(url)
        async with open_async_saver(url) as saver:
            yield saver

    report = await validate(sqlite_saver)
    assert report.passed_all_base(), _failures(report)


async def test_postgres_saver_passes_the_conformance_suite(
    postgres_server: PostgresServer,
) -> None:
    databases: list[str] = []

    @checkpointer_test(name="agentflow-postgres")
    async def postgres_saver() -> AsyncIterator[BaseCheckpointSaver[str]]:
        name = f"conformance_{len(databases)}"
        databases.append(name)
        # SQLAlchemy-style URL on purpose: open_async_saver must normalise it for psycopg.
        url = postgres_server.create_database(name).replace(
            "postgresql://", "postgresql+psycopg://"
        )
        setup_savers(url)
        async with open_async_saver(url) as saver:
            yield saver

    try:
        report = await validate(postgres_saver)
    finally:
        for name in databases:
            postgres_server.drop_database(name)
    assert report.passed_all_base(), _failures(report)
