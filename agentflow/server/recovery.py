"""Every worker finishes the runs of workers that died.

A run is noted in the store's unfinished runs before it starts and leaves them when it
reaches a final status (:mod:`agentflow.server.claims`). A worker killed mid-run leaves
its note behind, and its thread claim ends with its lease. Each worker's
:class:`RecoveryLoop` looks at the notes that are due, claims each thread nobody holds
and carries it on from its last checkpoint (:meth:`AgentService.recover`): the tools it
had begun replay from their keys, so nothing runs twice. A run that keeps failing is
looked at again later and later (capped), never dropped: it shows as failed until it
can go on.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentflow.server.service import AgentService

__all__ = ["RecoveryLoop"]

_log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 300.0


class RecoveryLoop:
    """A daemon thread that sweeps the unfinished runs every ``every_s`` seconds."""

    def __init__(self, service: AgentService, *, every_s: float = 2.0) -> None:
        self.service = service
        self.every_s = every_s
        """Pause between two sweeps."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures: dict[str, int] = {}

    def start(self) -> None:
        """Start sweeping in the background."""
        self._thread = threading.Thread(target=self._loop, name="recovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the sweep in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sweep()
            except Exception:  # the store or database is down: try again at the next beat
                _log.exception("recovery sweep failed")

    def sweep(self) -> int:
        """Carry on every due run nobody holds; how many were moved."""
        claims = self.service.claims
        moved = 0
        for thread_id in claims.due():
            if self._stop.is_set():
                break
            try:
                result = self.service.recover(thread_id)
            except Exception:
                _log.exception("recovering thread %s failed", thread_id)
                result = None
                self._failures[thread_id] = self._failures.get(thread_id, 0) + 1
            if result is None:  # held by a live worker, or failed: look again later
                tries = self._failures.get(thread_id, 0)
                claims.later(thread_id, min(_MAX_BACKOFF_S, claims.lease_s * 2**tries))
                continue
            moved += 1
            if result.resumable:  # stopped again (the store down?): back off
                tries = self._failures[thread_id] = self._failures.get(thread_id, 0) + 1
                claims.later(thread_id, min(_MAX_BACKOFF_S, self.every_s * 2**tries))
                _log.warning(
                    "thread %s stopped again while recovered: %s", thread_id, result.outcome
                )
            else:
                self._failures.pop(thread_id, None)
                _log.info("recovered thread %s: %s", thread_id, result.status)
        return moved
