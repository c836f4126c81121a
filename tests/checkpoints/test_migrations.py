"""The ledger's Alembic migrations on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agentflow.checkpoints import Ledger, setup_savers
from agentflow.checkpoints.migrations import current_revision, downgrade, head_revision, upgrade
from agentflow.checkpoints.schema import VERSION_TABLE, metadata

ROOT = Path(__file__).resolve().parents[2]
LEDGER_TABLES = {
    "decisions",
    "llm_calls",
    "tool_calls",
    "approvals",
    "labels",
    "head_versions",
    "effects",
}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/agentflow.db"
    return str(request.getfixturevalue("postgres_url"))


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_on_an_empty_database_creates_every_table(db_url: str) -> None:
    ledger = Ledger(db_url)
    assert ledger.revision() is None
    assert _tables(ledger.engine) == set()
    ledger.setup()
    assert _tables(ledger.engine) == LEDGER_TABLES | {VERSION_TABLE}
    assert current_revision(ledger.engine) == head_revision()
    ledger.close()


def test_the_migrations_build_exactly_the_schema_the_code_uses(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.setup()
    with ledger.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, metadata) == []
    ledger.close()


def test_upgrading_twice_is_a_no_op(db_url: str) -> None:
    ledger = Ledger(db_url)
    ledger.setup()
    with ledger.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO head_versions (role, sha256, path, accepted, created_at) "
                "VALUES ('router', 'aa', '/h', true, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(ledger.engine)
    assert current_revision(ledger.engine) == head_revision()
    assert [h.sha256 for h in ledger.head_versions("router")] == ["aa"]
    with ledger.engine.connect() as conn:
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    assert versions == [(head_revision(),)]
    ledger.close()


def test_downgrade_removes_only_the_ledger_and_upgrade_restores_it(db_url: str) -> None:
    setup_savers(db_url)  # LangGraph's tables share the database and must survive
    ledger = Ledger(db_url)
    ledger.setup()
    checkpoint_tables = _tables(ledger.engine) - LEDGER_TABLES - {VERSION_TABLE}
    assert checkpoint_tables
    downgrade(ledger.engine, "base")
    assert current_revision(ledger.engine) is None
    assert _tables(ledger.engine) & LEDGER_TABLES == set()
    assert checkpoint_tables <= _tables(ledger.engine)
    Ledger(db_url).setup()
    assert _tables(ledger.engine) >= LEDGER_TABLES
    ledger.close()


def test_setup_works_from_any_working_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = f"sqlite:///{tmp_path}/db/agentflow.db"
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from checkpoints import Ledger\n"
        f"Ledger({url!r}).setup()\n"
        f"print(Ledger({url!r}).revision())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == head_revision()
    assert list(elsewhere.iterdir()) == []
