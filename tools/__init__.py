"""Exactly-once tools: the tool contract, the idempotency store and the guarded executor.

Declare a tool with :func:`tool` (or adapt a LangChain tool with :func:`from_langchain`);
a tool with a side effect takes ``ctx: ToolContext`` and forwards ``ctx.idempotency_key``
downstream. :class:`GuardedExecutor` runs each :class:`ToolCall` by its consequence
class under a key derived from (thread, step, tool, arguments), against an
:class:`IdempotencyStore` on Redis/Valkey — by default the embedded Valkey from
:func:`ensure_embedded_valkey`::

    store = IdempotencyStore.from_settings(get_settings())
    executor = GuardedExecutor(ToolRegistry([refund]), store)
    call = ToolCall(tool="refund", args={...}, step=2)
    executor.grant(call, thread_id=thread_id, approver="alice")  # alice is authenticated
    result = executor.execute(call, "irreversible", thread_id=thread_id)

This package imports only agentflow's core (errors, settings, consequence, recording).
"""

from agentflow.tools.contract import ToolContext, ToolRegistry, ToolSpec, from_langchain, tool
from agentflow.tools.embedded import (
    embedded_valkey_url,
    ensure_embedded_valkey,
    stop_embedded_valkey,
)
from agentflow.tools.executor import ExecutionResult, GuardedExecutor, ToolCall
from agentflow.tools.keys import canonical_json, derive_key, fingerprint, key_prefix
from agentflow.tools.store import (
    AsyncIdempotencyStore,
    BeginResult,
    BeginStatus,
    IdempotencyStore,
    RetryPolicy,
)

__all__ = [
    "AsyncIdempotencyStore",
    "BeginResult",
    "BeginStatus",
    "ExecutionResult",
    "GuardedExecutor",
    "IdempotencyStore",
    "RetryPolicy",
    "ToolCall",
    "ToolContext",
    "ToolRegistry",
    "ToolSpec",
    "canonical_json",
    "derive_key",
    "embedded_valkey_url",
    "ensure_embedded_valkey",
    "fingerprint",
    "from_langchain",
    "key_prefix",
    "stop_embedded_valkey",
    "tool",
]
