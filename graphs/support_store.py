"""The support agent's demo back office: a real SQLite database of customers, orders,
subscriptions and refunds, so tools have real side effects that tests can count.

Refunds are appended, never deduplicated here: exactly-once is the executor's job, and
the crash tests count rows in this table to prove it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from agentflow.settings import Settings

DATA = Path(__file__).resolve().parent / "data"
"""The reference agent's data, beside its module (graphs are loaded by path, not installed)."""

__all__ = ["DEMO_CUSTOMER", "Refusal", "SupportStore", "store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (email TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
  order_id TEXT PRIMARY KEY, email TEXT NOT NULL, status TEXT NOT NULL, carrier TEXT,
  tracking TEXT, eta TEXT, total_cents INTEGER NOT NULL, address TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (
  email TEXT PRIMARY KEY, plan TEXT NOT NULL, status TEXT NOT NULL, renews TEXT NOT NULL,
  cancel_effective TEXT);
CREATE TABLE IF NOT EXISTS refunds (
  id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL,
  reason TEXT, idempotency_key TEXT, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""
_STATUSES = ("processing", "shipped", "in transit", "out for delivery", "delivered")
_PLANS = ("Basic", "Plus", "Pro", "Team")
DEMO_CUSTOMER = "alex@example.com"


def _workload_order_ids() -> list[str]:
    """Order ids mentioned by the shipped workload: they exist in the demo back office."""
    path = DATA / "support_workload.jsonl"
    if not path.is_file():
        return []
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and (oid := json.loads(line).get("order_id")):
            ids.append(str(oid).lstrip("#").upper())
    return ids


class Refusal(ValueError):
    """A business rule said no. The message is written for the customer."""


class SupportStore:
    """A SQLite file with the demo company's data (seeded on first open)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            if db.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == 0:
                self._seed(db)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    def _seed(self, db: sqlite3.Connection) -> None:
        today = date(2026, 11, 23)
        db.execute("BEGIN")
        db.execute("INSERT INTO customers VALUES (?, ?)", (DEMO_CUSTOMER, "Alex Morgan"))
        db.execute(
            "INSERT INTO subscriptions VALUES (?, 'Plus', 'active', ?, NULL)",
            (DEMO_CUSTOMER, str(today + timedelta(days=17))),
        )
        ids = ["A10234", "A10235", "58812", *_workload_order_ids()]
        for order_id in dict.fromkeys(ids):
            h = int(hashlib.sha256(order_id.encode()).hexdigest(), 16)
            status = _STATUSES[h % len(_STATUSES)]
            db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    order_id,
                    DEMO_CUSTOMER,
                    status,
                    ("UPS", "DHL", "USPS")[h % 3],
                    f"1Z{h % 10**10:010d}",
                    str(today + timedelta(days=h % 6)),
                    1500 + h % 20000,
                    "12 Harbour Street, Leeds LS1 4AB",
                    str(today - timedelta(days=h % 20)),
                ),
            )
        db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        with self._lock, self._connect() as db:
            row = db.execute(sql, args).fetchone()
        return dict(row) if row else None

    def order(self, order_id: str) -> dict[str, Any] | None:
        """One order, or None."""
        return self._one("SELECT * FROM orders WHERE order_id = ?", order_id.lstrip("#").upper())

    def latest_order(self, email: str) -> dict[str, Any] | None:
        """The customer's most recent order."""
        return self._one(
            "SELECT * FROM orders WHERE email = ? ORDER BY created DESC, order_id DESC LIMIT 1",
            email,
        )

    def subscription(self, email: str) -> dict[str, Any] | None:
        """The customer's subscription."""
        return self._one("SELECT * FROM subscriptions WHERE email = ?", email)

    def set_address(self, order_id: str, address: str) -> dict[str, Any]:
        """Set (not append) the shipping address: repeating it changes nothing more."""
        with self._lock, self._connect() as db:
            cur = db.execute(
                "UPDATE orders SET address = ? WHERE order_id = ? AND status = 'processing'",
                (address, order_id),
            )
            if cur.rowcount == 0:
                row = db.execute(
                    "SELECT status FROM orders WHERE order_id = ?", (order_id,)
                ).fetchone()
                raise Refusal(
                    f"I could not find order {order_id}"
                    if row is None
                    else f"order {order_id} is already {row['status']}, so its address can no "
                    "longer be changed"
                )
        return {"order_id": order_id, "address": address}

    def cancel(self, email: str, plan: str, effective: str) -> dict[str, Any]:
        """Mark the subscription cancelled (idempotent: cancelling twice is one cancellation)."""
        sub = self.subscription(email)
        if sub is None or sub["plan"].lower() != plan.lower():
            raise Refusal(f"there is no {plan} subscription on {email}")
        when = str(date(2026, 11, 23)) if effective == "now" else sub["renews"]
        with self._lock, self._connect() as db:
            db.execute(
                "UPDATE subscriptions SET status = 'cancelled', cancel_effective = ? WHERE email = ?",
                (when, email),
            )
        return {"email": email, "plan": sub["plan"], "status": "cancelled", "effective": when}

    def refund(
        self, order_id: str, amount_cents: int, reason: str, key: str | None
    ) -> dict[str, Any]:
        """Pay money back. Every call is a new refund: this is the irreversible effect."""
        order = self.order(order_id)
        if order is None:
            raise Refusal(f"I could not find order {order_id}")
        if amount_cents <= 0 or amount_cents > order["total_cents"]:
            raise Refusal(
                f"a refund of ${amount_cents / 100:.2f} is more than order {order_id}'s total "
                f"of ${order['total_cents'] / 100:.2f}"
            )
        with self._lock, self._connect() as db:
            cur = db.execute(
                "INSERT INTO refunds (order_id, amount_cents, reason, idempotency_key) VALUES (?, ?, ?, ?)",
                (order["order_id"], amount_cents, reason, key),
            )
        return {
            "refund_id": f"re_{cur.lastrowid}",
            "order_id": order["order_id"],
            "amount_cents": amount_cents,
        }

    def refunds(self, order_id: str | None = None) -> list[dict[str, Any]]:
        """Refund rows (all, or one order's)."""
        with self._lock, self._connect() as db:
            rows = db.execute(
                "SELECT * FROM refunds" + (" WHERE order_id = ?" if order_id else ""),
                (order_id,) if order_id else (),
            ).fetchall()
        return [dict(r) for r in rows]


@cache
def store() -> SupportStore:
    """The demo back office (``AGENTFLOW_SUPPORT_DB`` or ``<data_dir>/support.db``)."""
    path = os.environ.get("AGENTFLOW_SUPPORT_DB") or Path(Settings().data_dir) / "support.db"
    return SupportStore(path)
