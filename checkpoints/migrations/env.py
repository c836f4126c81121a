"""Alembic environment for the ledger: runs on the connection the caller hands over.

``agentflow.checkpoints.migrations.upgrade`` passes its connection in ``config.attributes``; a
plain ``sqlalchemy.url`` main option works too (for ``alembic revision
--autogenerate`` during development).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from agentflow.checkpoints.schema import VERSION_TABLE, metadata

# Any constant works; it only has to be the same for every agentflow process.
_PG_LOCK_ID = 0x6167_6E74_666C_6F77 & 0x7FFF_FFFF_FFFF_FFFF


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two workers running `agentflow setup` at once: the second waits, then
            # finds the database at head and does nothing.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
        context.run_migrations()


def _main() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
