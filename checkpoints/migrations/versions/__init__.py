"""Ledger revisions, applied in order by Alembic; append-only: never edit a released one."""
