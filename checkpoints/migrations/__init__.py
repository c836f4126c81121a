"""Alembic migrations of the ledger, driven programmatically.

There is no ``alembic.ini``: :func:`alembic_config` points Alembic at this folder, so
migrations run the same from any working directory and from an installed wheel. The
revisions in ``versions/`` are append-only; ``agentflow setup`` applies them with
:func:`upgrade`, which is a no-op on a database that is already at head.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from agentflow.checkpoints.schema import VERSION_TABLE

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent
"""This folder: Alembic's ``script_location``."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for these migrations, bound to ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        # env.py runs on this connection instead of opening its own.
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # only a broken install ships no revisions
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR / 'versions'}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` removes every ledger table)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
