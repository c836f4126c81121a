"""Is the Redis behind the idempotency store one that keeps what it is told?

A lease or a completed result that the server loses on restart (no append-only file), or
that reaches disk only when the OS feels like it (``appendfsync no``), lets a call run
twice. The embedded Valkey is configured for it (``appendonly yes``, ``appendfsync
always``); an external ``REDIS_URL`` is checked the first time a non-safe call needs it,
and non-safe calls are refused on one that can silently lose writes, with this fix and
the override ``AGENTFLOW_ALLOW_VOLATILE_REDIS=1`` (for a Redis whose durability you
ensure otherwise, e.g. a managed service that forbids ``CONFIG``). With replicas, a
stored result also waits (``WAIT``) until the replicas have it, so a failover does not
forget it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis

__all__ = ["DURABILITY_FIX", "Durability", "aread_durability", "read_durability"]

DURABILITY_FIX = (
    "configure the Redis with `appendonly yes` and `appendfsync always` (or `everysec`), "
    "or set AGENTFLOW_ALLOW_VOLATILE_REDIS=1 if its durability is ensured another way"
)


@dataclass(frozen=True)
class Durability:
    """What the server said about its persistence."""

    problem: str | None
    """Why it can lose writes (None: it keeps them)."""
    replicas: int
    """Connected replicas (writes wait for them)."""


def _first(reply: Any, name: str) -> str:
    return str(reply.get(name, "")).lower()


def read_durability(client: redis.Redis) -> Durability:
    """Read ``appendonly``, ``appendfsync`` and the replica count (connection errors raise)."""
    try:
        appendonly = _first(client.config_get("appendonly"), "appendonly")
        fsync = _first(client.config_get("appendfsync"), "appendfsync")
    except redis.ResponseError:
        return Durability(_NO_CONFIG, 0)
    return _judge(appendonly, fsync, client.info("replication"))


async def aread_durability(client: aredis.Redis) -> Durability:
    """:func:`read_durability` on ``redis.asyncio``."""
    try:
        appendonly = _first(await client.config_get("appendonly"), "appendonly")
        fsync = _first(await client.config_get("appendfsync"), "appendfsync")
    except redis.ResponseError:
        return Durability(_NO_CONFIG, 0)
    return _judge(appendonly, fsync, await client.info("replication"))


_NO_CONFIG = "it does not let agentflow read its persistence settings (CONFIG)"


def _judge(appendonly: str, fsync: str, replication: Any) -> Durability:
    replicas = int(replication.get("connected_slaves", 0) or 0)
    if appendonly != "yes":
        return Durability("appendonly is off: a restart loses every lease and result", replicas)
    if fsync == "no":
        return Durability(
            "appendfsync is 'no': writes reach the disk when the OS decides", replicas
        )
    return Durability(None, replicas)
