"""Open the right LangGraph checkpoint saver from one database URL.

``AGENTFLOW_DATABASE_URL`` names one database for checkpoints and the ledger:

- ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or a bare path: a SQLite file
  (langgraph-checkpoint-sqlite), WAL-journalled, its folder created on demand;
- ``postgresql://``, ``postgresql+psycopg://`` or ``postgres://``: PostgreSQL
  (langgraph-checkpoint-postgres) through a psycopg connection pool.

Creating tables is never a side effect of opening: :func:`setup_savers` does it,
explicitly and idempotently (``agentflow setup``). A Postgres database that was never
set up is refused on open with the fix, instead of failing later inside a graph run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver

from agentflow.errors import ConfigurationError, LedgerError
from agentflow.settings import Settings

__all__ = [
    "DatabaseUrl",
    "open_async_saver",
    "open_saver",
    "parse_database_url",
    "setup_savers",
]

DatabaseKind = Literal["sqlite", "postgres"]
"""The two database engines agentflow stores state in."""

_SQLITE_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for the file lock (the ledger writes to the same file)."""
_PG_CONNECT_TIMEOUT_S = 10
"""How long a Postgres connection attempt may take before the URL counts as unreachable."""
_PG_POOL_MAX = 8
"""Connections per pool: the HTTP server and CLI share one saver across threads."""
_SETUP_FIX = "run `agentflow setup` (creates checkpoint and ledger tables) and retry"


@dataclass(frozen=True)
class DatabaseUrl:
    """One database URL, in the forms each client library wants."""

    kind: DatabaseKind
    """Which engine: ``sqlite`` or ``postgres``."""
    sqlalchemy_url: str
    """URL for SQLAlchemy (``sqlite:///...`` or ``postgresql+psycopg://...``)."""
    sqlite_path: str | None
    """File path for SQLite (``:memory:`` for an in-memory database); None for Postgres."""
    conninfo: str | None
    """libpq URL for psycopg (``postgresql://...``); None for SQLite."""
    masked: str
    """The URL with its password hidden, for messages and logs."""


def parse_database_url(url: str | None = None) -> DatabaseUrl:
    """Normalise a database URL (default: ``Settings().resolved_database_url``).

    Raises ConfigurationError for a scheme or driver agentflow cannot store state in.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = (url if url is not None else Settings().resolved_database_url).strip()
    if not raw:
        raise ConfigurationError(
            "the database URL is empty",
            hint="unset AGENTFLOW_DATABASE_URL for the embedded SQLite file, or set it to "
            "sqlite:///path.db or postgresql://user@host/db",
        )
    if "://" not in raw:
        # A bare path: the embedded SQLite file somewhere else.
        path = str(Path(raw).expanduser()) if raw != ":memory:" else raw
        raw = "sqlite://" if path == ":memory:" else f"sqlite:///{path}"
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"cannot parse database URL {raw!r}: {exc}",
            hint="use sqlite:///path.db, a bare file path, or postgresql://user@host:5432/db",
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    masked = parsed.render_as_string(hide_password=True)
    if backend == "sqlite":
        if driver not in ("", "pysqlite", "aiosqlite"):
            raise _unsupported(masked, f"SQLite driver {driver!r}")
        database = parsed.database or ":memory:"
        plain = parsed.set(drivername="sqlite")
        return DatabaseUrl(
            kind="sqlite",
            sqlalchemy_url=plain.render_as_string(hide_password=False),
            sqlite_path=database,
            conninfo=None,
            masked=plain.render_as_string(hide_password=True),
        )
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise _unsupported(masked, f"Postgres driver {driver!r} (only psycopg 3 is installed)")
        libpq = parsed.set(drivername="postgresql")
        return DatabaseUrl(
            kind="postgres",
            sqlalchemy_url=parsed.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False
            ),
            sqlite_path=None,
            conninfo=libpq.render_as_string(hide_password=False),
            masked=libpq.render_as_string(hide_password=True),
        )
    raise _unsupported(masked, f"scheme {parsed.drivername!r}")


def _unsupported(masked: str, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"database URL {masked} uses an unsupported {what}",
        hint="set AGENTFLOW_DATABASE_URL to sqlite:///path.db (or a bare path) or to "
        "postgresql://user:password@host:5432/db (postgresql+psycopg:// works too)",
    )


def _sqlite_file(db: DatabaseUrl) -> str:
    path = db.sqlite_path or ":memory:"
    if path != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unreachable(db, exc) from exc
    return path


@contextmanager
def open_saver(url: str | None = None) -> Iterator[BaseCheckpointSaver[Any]]:
    """Open the synchronous saver for ``url``; safe to share across threads.

    SQLite: a ``SqliteSaver`` on one WAL connection guarded by the saver's lock.
    Postgres: a ``PostgresSaver`` on a connection pool; refused with LedgerError when
    :func:`setup_savers` was never run on that database.
    """
    db = parse_database_url(url)
    if db.kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        try:
            conn = sqlite3.connect(
                _sqlite_file(db), check_same_thread=False, timeout=_SQLITE_TIMEOUT_S
            )
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise _unreachable(db, exc) from exc
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()
        return

    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    _check_postgres_setup(db)
    pool: ConnectionPool[Any] = ConnectionPool(
        db.conninfo or "",
        min_size=1,
        max_size=_PG_POOL_MAX,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    try:
        yield PostgresSaver(pool)
    finally:
        pool.close()


@asynccontextmanager
async def open_async_saver(url: str | None = None) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Open the asyncio saver for ``url`` (``AsyncSqliteSaver`` / ``AsyncPostgresSaver``).

    Use it from inside a running event loop; Postgres is refused with LedgerError when
    :func:`setup_savers` was never run on that database.
    """
    db = parse_database_url(url)
    if db.kind == "sqlite":
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        try:
            conn = await aiosqlite.connect(_sqlite_file(db), timeout=_SQLITE_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise _unreachable(db, exc) from exc
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            yield AsyncSqliteSaver(conn)
        finally:
            await conn.close()
        return

    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    _check_postgres_setup(db)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db.conninfo or "",
        min_size=1,
        max_size=_PG_POOL_MAX,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    await pool.open()
    try:
        yield AsyncPostgresSaver(pool)
    finally:
        await pool.close()


def setup_savers(url: str | None = None) -> None:
    """Create (or migrate) the checkpoint tables for ``url``; running it again is a no-op."""
    db = parse_database_url(url)
    if db.kind == "sqlite":
        with open_saver(url) as saver:
            try:
                saver.setup()  # type: ignore[attr-defined]
            except sqlite3.Error as exc:
                raise _unreachable(db, exc) from exc
        return

    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    try:
        # One plain autocommit connection: the saver's migrations build indexes
        # CONCURRENTLY, which Postgres refuses inside a transaction.
        with psycopg.connect(
            db.conninfo or "",
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
            connect_timeout=_PG_CONNECT_TIMEOUT_S,
        ) as conn:
            PostgresSaver(conn).setup()  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise _unreachable(db, exc) from exc


def _check_postgres_setup(db: DatabaseUrl) -> None:
    """Refuse a Postgres database whose checkpoint tables are missing or outdated."""
    import psycopg
    from langgraph.checkpoint.postgres.base import BasePostgresSaver

    expected = len(BasePostgresSaver.MIGRATIONS) - 1
    try:
        with psycopg.connect(
            db.conninfo or "", autocommit=True, connect_timeout=_PG_CONNECT_TIMEOUT_S
        ) as conn:
            row = conn.execute(
                "SELECT max(v) FROM checkpoint_migrations"
                if _has_table(conn, "checkpoint_migrations")
                else "SELECT NULL"
            ).fetchone()
    except psycopg.Error as exc:
        raise _unreachable(db, exc) from exc
    version = row[0] if row else None
    if version is None or version < expected:
        raise LedgerError(
            f"checkpoint tables in {db.masked} are missing or outdated "
            f"(migration {version}, expected {expected})",
            hint=_SETUP_FIX,
        )


def _has_table(conn: Any, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _unreachable(db: DatabaseUrl, exc: BaseException) -> LedgerError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return LedgerError(
        f"cannot use the checkpoint database {db.masked}: {first_line}",
        hint="check that the database server is running and AGENTFLOW_DATABASE_URL is right, "
        "then run `agentflow setup`",
    )
