"""Opening LangGraph savers from one URL, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import socket
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from operator import add
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from agentflow.checkpoints import open_async_saver, open_saver, parse_database_url, setup_savers
from agentflow.errors import ConfigurationError, LedgerError

# --- URL handling -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "sqlalchemy_url", "target"),
    [
        ("sqlite:////srv/a/b.db", "sqlite", "sqlite:////srv/a/b.db", "/srv/a/b.db"),
        ("sqlite:///rel/b.db", "sqlite", "sqlite:///rel/b.db", "rel/b.db"),
        ("sqlite+aiosqlite:////srv/b.db", "sqlite", "sqlite:////srv/b.db", "/srv/b.db"),
        ("/srv/state.db", "sqlite", "sqlite:////srv/state.db", "/srv/state.db"),
        ("state.db", "sqlite", "sqlite:///state.db", "state.db"),
        (
            "postgresql+psycopg://u:pw@db:5432/agent?sslmode=require",
            "postgres",
            "postgresql+psycopg://u:pw@db:5432/agent?sslmode=require",
            "postgresql://u:pw@db:5432/agent?sslmode=require",
        ),
        (
            "postgresql://u@db/agent",
            "postgres",
            "postgresql+psycopg://u@db/agent",
            "postgresql://u@db/agent",
        ),
        ("postgres://u@db/agent", "postgres", "postgresql+psycopg://u@db/agent", "postgresql://u@db/agent"),
    ],
)  # fmt: skip
def test_urls_are_normalised_for_each_library(
    url: str, kind: str, sqlalchemy_url: str, target: str
) -> None:
    db = parse_database_url(url)
    assert db.kind == kind
    assert db.sqlalchemy_url == sqlalchemy_url
    assert (db.sqlite_path if kind == "sqlite" else db.conninfo) == target


def test_a_bare_path_expands_the_home_folder() -> None:
    assert parse_database_url("~/x.db").sqlite_path == str(Path.home() / "x.db")


def test_the_masked_url_hides_the_password() -> None:
    db = parse_database_url("postgresql+psycopg://agent:s3cret@db:5432/agent")
    assert db.masked == "postgresql://agent:***@db:5432/agent"
    assert "s3cret" in str(db.conninfo)


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("mysql://u:pw@db/agent", "scheme 'mysql'"),
        ("postgresql+asyncpg://u@db/agent", "driver 'asyncpg'"),
        ("sqlite+pysqlcipher:///x.db", "driver 'pysqlcipher'"),
        ("   ", "empty"),
    ],
)
def test_unsupported_urls_are_configuration_errors_with_the_fix(url: str, what: str) -> None:
    with pytest.raises(ConfigurationError, match=what) as err:
        parse_database_url(url)
    assert "pw" not in str(err.value)
    assert "sqlite:///" in err.value.hint or "AGENTFLOW_DATABASE_URL" in err.value.hint


def test_the_default_url_comes_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AGENTFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(tmp_path / "data"))
    assert parse_database_url().sqlite_path == str((tmp_path / "data" / "agentflow.db").resolve())
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", "postgresql://u@db/x")
    assert parse_database_url().kind == "postgres"


# --- a graph that needs durable state ----------------------------------------------


class _State(TypedDict):
    log: Annotated[list[str], add]


def _graph(saver: Any) -> CompiledStateGraph[Any]:
    """step -> ask (interrupts for a human) -> done."""

    def step(state: _State) -> dict[str, Any]:
        return {"log": ["step"]}

    def ask(state: _State) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"log": [f"answer:{answer}"]}

    builder = StateGraph(_State)
    builder.add_node("step", step)
    builder.add_node("ask", ask)
    builder.add_edge(START, "step")
    builder.add_edge("step", "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver)


def _config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/not/yet/there/agentflow.db"
    return str(request.getfixturevalue("postgres_url"))


def test_setup_is_idempotent_and_the_right_saver_opens(db_url: str) -> None:
    setup_savers(db_url)
    setup_savers(db_url)
    expected = SqliteSaver if db_url.startswith("sqlite") else PostgresSaver
    with open_saver(db_url) as saver:
        assert type(saver) is expected
        assert list(saver.list(None)) == []


def test_an_interrupted_run_survives_a_restart(db_url: str) -> None:
    setup_savers(db_url)
    with open_saver(db_url) as saver:
        result = _graph(saver).invoke({"log": []}, _config("t1"))
        assert "__interrupt__" in result
    # A new process: nothing but the database remembers the pending question.
    with open_saver(db_url) as saver:
        graph = _graph(saver)
        assert graph.get_state(_config("t1")).next == ("ask",)
        final = graph.invoke(Command(resume="yes"), _config("t1"))
    assert final["log"] == ["step", "answer:yes"]


def test_one_sync_saver_serves_several_threads(db_url: str) -> None:
    setup_savers(db_url)
    with open_saver(db_url) as saver:
        graph = _graph(saver)
        threads = [f"t{i}" for i in range(8)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda t: graph.invoke({"log": []}, _config(t)), threads))
        assert all(graph.get_state(_config(t)).next == ("ask",) for t in threads)


def test_sqlite_files_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "state.db"
    setup_savers(str(path))
    with open_saver(str(path)) as saver:
        _graph(saver).invoke({"log": []}, _config("t"))
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)


async def test_the_async_saver_runs_a_graph(db_url: str) -> None:
    setup_savers(db_url)
    async with open_async_saver(db_url) as saver:
        if db_url.startswith("sqlite"):
            assert isinstance(saver, AsyncSqliteSaver)
        graph = _graph(saver)
        await graph.ainvoke({"log": []}, _config("a"))
        final = await graph.ainvoke(Command(resume="ok"), _config("a"))
    assert final["log"] == ["step", "answer:ok"]


# --- refusals -----------------------------------------------------------------------


def test_a_postgres_database_never_set_up_is_refused_with_the_fix(postgres_url: str) -> None:
    with pytest.raises(LedgerError, match="agentflow setup"), open_saver(postgres_url):
        pass


async def test_the_async_saver_refuses_it_too(postgres_url: str) -> None:
    with pytest.raises(LedgerError, match="missing or outdated"):
        async with open_async_saver(postgres_url):
            pass


def test_an_unreachable_postgres_is_a_ledger_error_without_the_password() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = closed.getsockname()[1]
        url = f"postgresql://agent:s3cret@127.0.0.1:{port}/x"
        for attempt in (lambda: setup_savers(url), lambda: open_saver(url).__enter__()):
            with pytest.raises(LedgerError) as err:
                attempt()
            assert "s3cret" not in str(err.value)
            assert f"agent:***@127.0.0.1:{port}" in str(err.value)
