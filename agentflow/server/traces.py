"""Links from the approval page to a thread's trace in Langfuse.

A thread's trace id is derived from its id (:func:`agentflow.tracing.trace_id_for`), so
the link needs no lookup per thread; the Langfuse project id in the URL is fetched once
from the server. Tracing is observability: if Langfuse cannot be reached the page shows
no link, and the server asks again only after a pause instead of on every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agentflow.settings import Settings
from agentflow.tracing import trace_id_for

__all__ = ["TraceLinker", "TraceLinks"]

TraceLinker = Callable[[str], str | None]
"""thread id -> URL of its trace (None when there is none to link to)."""

_RETRY_AFTER_S = 300.0
"""How long to wait before asking an unreachable Langfuse for its project again."""

_log = logging.getLogger(__name__)


class TraceLinks:
    """The default :data:`TraceLinker`: Langfuse trace URLs when tracing is configured."""

    def __init__(self, settings: Settings) -> None:
        """Link into the Langfuse server of ``settings`` (no link when tracing is off)."""
        self.settings = settings
        self._client: Any = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def _langfuse(self) -> Any:
        if self._client is None:
            from langfuse import Langfuse

            secret = self.settings.langfuse_secret_key
            self._client = Langfuse(
                public_key=self.settings.langfuse_public_key,
                secret_key=secret.get_secret_value() if secret else None,
                base_url=self.settings.langfuse_base_url,
            )
        return self._client

    def __call__(self, thread_id: str) -> str | None:
        """The URL of ``thread_id``'s trace, or None."""
        if not self.settings.tracing_enabled:
            return None
        with self._lock:
            if self._failed_at is not None and time.monotonic() - self._failed_at < _RETRY_AFTER_S:
                return None
            try:
                url: str | None = self._langfuse().get_trace_url(trace_id=trace_id_for(thread_id))
            except Exception:
                # A link is a convenience: an unreachable Langfuse must not break the page.
                _log.warning("cannot build a Langfuse trace link (will retry later)", exc_info=True)
                self._failed_at = time.monotonic()
                return None
            self._failed_at = None
            return url
