"""Set-up shared by the server tests: one support-agent runtime, its app, and a live server.

Everything is real except the LLM (a langchain-core fake chat model): MiniLM heads,
SQLite checkpoints, ledger and back office, Valkey. Trained heads are kept in pytest's
cache folder (they are keyed by the sha256 of their encoder and examples, so a reused
head is the head the examples would train) and linked into each test's data folder:
training three heads on 2 CPU cores takes minutes, loading them takes milliseconds.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.runtime import AgentRuntime
from agentflow.server import create_app
from agentflow.server.auth import hash_token
from agentflow.settings import Settings
from agentflow.tracing import trace_id_for
from tests.fixtures.support_env import support_environment

TOKENS = {
    "sam": "sam-secret-token",
    "eve": "eve-secret-token",
    "alex": "alex-secret-token",
    "mallory": "mallory-secret-token",
    "auditor": "auditor-secret-token",
}
"""Identity -> bearer token; the settings hold only the hashes (scopes in :data:`SCOPES`)."""
SCOPES: dict[str, list[str]] = {
    "sam": ["read", "approve"],
    "eve": ["read", "approve"],
    "alex": ["run", "read"],  # the demo back office's customer
    "mallory": ["run", "read"],  # another customer
    "auditor": ["read"],
}
"""What each token may do."""
CUSTOMERS: dict[str, dict[str, str]] = {
    "alex": {"email": "alex@example.com"},
    "mallory": {"email": "mallory@example.com"},
}
"""Whom each run-scoped token's runs act for."""


def auth(name: str = "sam") -> dict[str, str]:
    """The ``Authorization`` header of ``name``'s token."""
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def token_settings() -> dict[str, Any]:
    """``AGENTFLOW_TOKENS`` for :data:`TOKENS` (hashes, scopes, customers)."""
    return {
        name: {
            "sha256": hash_token(token),
            "scopes": SCOPES[name],
            "customer": CUSTOMERS.get(name, {}),
        }
        for name, token in TOKENS.items()
    }


LLM_TEXT = "Thanks for reaching out: our Pro plan is $29 a month."
"""What the fake LLM answers."""
TRACE_BASE = "https://langfuse.invalid/project/p/traces/"
"""Where the test trace links point (never fetched)."""


@dataclass(frozen=True)
class SupportEnv:
    """Where one support agent keeps everything."""

    settings: Settings
    """Settings with a temporary database, data folder and the test Valkey."""
    support_db: Path
    """The back office's SQLite file."""


@pytest.fixture(scope="package")
def support_env(
    tmp_path_factory: pytest.TempPathFactory, valkey_server: Any, heads_cache: Path
) -> Iterator[SupportEnv]:
    """A set-up database and back office for the support agent."""
    tmp = tmp_path_factory.mktemp("server")
    with support_environment(
        tmp, valkey_server.url, heads_cache, tokens=token_settings()
    ) as settings:
        yield SupportEnv(settings=settings, support_db=tmp / "support.db")


@pytest.fixture(scope="package")
def runtime(support_env: SupportEnv) -> Iterator[AgentRuntime]:
    """The support agent, open on ``support_env`` with a fake LLM."""
    llm = FakeListChatModel(responses=[LLM_TEXT])
    with AgentRuntime.open("graphs/support.py", settings=support_env.settings, llm=llm) as rt:
        yield rt


@pytest.fixture(scope="package")
def app(support_env: SupportEnv, runtime: AgentRuntime) -> FastAPI:
    """The API and page over the shared runtime (which outlives each app start)."""
    return create_app(
        support_env.settings,
        runtime_factory=lambda _graph, _settings: nullcontext(runtime),
        trace_links=lambda thread_id: TRACE_BASE + trace_id_for(thread_id),
    )


@pytest.fixture(scope="package")
def client(app: FastAPI) -> Iterator[TestClient]:
    """An in-process HTTP client (the app started and stopped around the package)."""
    # Served by the name a local user opens it by (the Host guard refuses "testserver").
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="package")
def live_url(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def refund_count(env: SupportEnv, order_id: str | None = None) -> int:
    """Refund rows in the back office's SQLite file (all, or one order's)."""
    with closing(sqlite3.connect(env.support_db)) as db:
        if order_id is None:
            return int(db.execute("SELECT COUNT(*) FROM refunds").fetchone()[0])
        sql = "SELECT COUNT(*) FROM refunds WHERE order_id = ?"
        return int(db.execute(sql, (order_id,)).fetchone()[0])
