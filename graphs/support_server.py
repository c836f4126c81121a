"""The support agent for LangGraph Server: ``graph``, compiled when this module is imported.

``langgraph.json`` points here rather than at :mod:`graphs.support` because
langgraph-api reads the graph from the module's ``__dict__`` (a module ``__getattr__``
is never called) and imports the file in a worker thread at startup, where building the
agent (encoder, heads, GGUF) may block. A graph *factory* would instead be called inside
the server's event loop on every run, which ``langgraph dev`` refuses (BlockingError).
Importing :mod:`graphs.support` itself stays cheap; only LangGraph Server imports this.

Decisions, LLM calls, tool calls and approvals go to the same SQL ledger as runs started
by ``agentflow run`` (``AGENTFLOW_DATABASE_URL``), whose schema the server's start-up
creates or migrates: this import is that start-up.
"""

from __future__ import annotations

from agentflow.checkpoints.ledger import Ledger
from agentflow.settings import Settings
from graphs.support import build

__all__ = ["graph"]

_settings = Settings()
_ledger = Ledger.from_settings(_settings)
_ledger.setup()

graph = build(settings=_settings, recorder=_ledger)[0].compile()
"""The compiled support graph (LangGraph Server brings its own checkpointer)."""
