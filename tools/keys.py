"""Derived idempotency keys: the same call always gets the same key, never a random one.

A key is the sha256 of the canonical JSON of (thread id, turn, plan step, tool name,
canonical arguments), prefixed by the deployment's namespace: ``{namespace}:idem:{hex}``.

The *turn* names the user message the plan answers (the id LangGraph gave that message
when it entered the thread's state, kept in the checkpoint). So:

- a replay of the same turn (a resume, a retry after a crash, LangGraph re-running a
  node) derives the same key, and the store recognises the call: it never runs twice;
- a new request in the same thread, even word for word the same ("refund $25 for order
  58812" again, a day later) is a new turn: a new key, and a new approval, so a
  deliberate repeat is done, not silently swallowed as a replay.

Without a turn (``turn=""``: a call outside a conversation) the key is that of
(thread, step, tool, arguments).

Canonical JSON: keys sorted, no whitespace, UTF-8 kept as is, integral floats written as
integers (``1.0`` and ``1`` are the same JSON number, as in RFC 8785), NaN and infinities
refused, and non-JSON values (pydantic models, dates, decimals, UUIDs) converted the way
pydantic serialises them.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from pydantic_core import to_jsonable_python

__all__ = [
    "action_digest",
    "answer_key",
    "assessment_key",
    "canonical_json",
    "derive_key",
    "fingerprint",
    "grant_key",
    "key_prefix",
]

# Above 2**53 a float no longer holds every integer exactly; leave such floats as floats.
_EXACT_INT_LIMIT = 2**53


def _normalize(obj: Any) -> Any:
    """Turn ``obj`` into plain JSON values with one representation per number."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"canonical JSON has no representation for {obj!r}")
        if obj.is_integer() and abs(obj) < _EXACT_INT_LIMIT:
            return int(obj)
        return obj
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise TypeError(f"canonical JSON needs string keys, got {k!r}")
            key = str(k)
            if key in out:
                raise ValueError(f"two keys map to the same JSON key {key!r}")
            out[key] = _normalize(v)
        return out
    if isinstance(obj, list | tuple):
        return [_normalize(v) for v in obj]
    return _normalize(to_jsonable_python(obj))


def canonical_json(obj: Any) -> str:
    """One stable JSON text for ``obj``: sorted keys, no whitespace, integral floats as ints."""
    return json.dumps(
        _normalize(obj),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def fingerprint(args: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``args``."""
    return hashlib.sha256(canonical_json(args).encode("utf-8")).hexdigest()


def key_prefix(namespace: str) -> str:
    """The prefix every key of ``namespace`` starts with."""
    if not namespace:
        raise ValueError("the idempotency namespace must not be empty")
    return f"{namespace}:idem:"


def derive_key(
    namespace: str, thread_id: str, step: int, tool: str, args: Any, *, turn: str = ""
) -> str:
    """The idempotency key of one call: ``{namespace}:idem:{sha256 hex}`` (see above).

    The hashed text is a JSON array of the parts, so no two different calls can produce
    the same text by shifting characters between parts.
    """
    parts: list[Any] = (
        [thread_id, turn, step, tool, args] if turn else [thread_id, step, tool, args]
    )
    material = canonical_json(parts)
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()
    return f"{key_prefix(namespace)}{digest}"


def action_digest(tool: str, args: Any) -> str:
    """What an approval approves: the sha256 of canonical ``{tool, args}``.

    It is also the fingerprint the executor stores with the call's key, so a grant and a
    call are compared by the same text.
    """
    return fingerprint({"tool": tool, "args": args})


def grant_key(namespace: str, thread_id: str, digest: str) -> str:
    """Where the approval grant for action ``digest`` on ``thread_id`` is kept."""
    material = canonical_json([thread_id, digest])
    return f"{namespace}:grant:{hashlib.sha256(material.encode('utf-8')).hexdigest()}"


def answer_key(namespace: str, approval_id: str) -> str:
    """Where the one accepted answer to ``approval_id`` is kept."""
    return f"{namespace}:answer:{hashlib.sha256(approval_id.encode('utf-8')).hexdigest()}"


def assessment_key(namespace: str, thread_id: str, digest: str) -> str:
    """Where the assessed consequence class of action ``digest`` on ``thread_id`` is kept."""
    material = canonical_json([thread_id, digest])
    return f"{namespace}:assessed:{hashlib.sha256(material.encode('utf-8')).hexdigest()}"
