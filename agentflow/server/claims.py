"""Claims that hold across every worker process: on threads, on run submissions, on recovery.

Workers share nothing but the database and the idempotency store, so nothing correct may
depend on a per-process lock or cache. Three kinds of record live in the store, each an
atomic transition on the server:

- **A thread claim** (:meth:`Claims.thread`): one worker at a time moves a thread (a
  run, an approval answer, a recovery). It is a lease on ``{ns}:idem:thread:…`` taken
  with :meth:`~agentflow.tools.store.IdempotencyStore.begin`, renewed while the worker holds it
  (:func:`agentflow.tools.leases.keep_lease`) and released when it is done; a worker that dies
  stops renewing, and the lease ends after ``lease_seconds``, when another may take it.
- **A submission key** (:meth:`Claims.submission`): ``POST /runs`` with an
  ``Idempotency-Key`` header, with the semantics the tools have (Stripe, IETF draft): the
  first submission holds the key while its run goes on, a retry of it is told where that
  run is, one with another body is refused, and one while the first is still going gets
  "in flight". The key is scoped to the caller's identity.
- **The unfinished runs** (:meth:`Claims.unfinished`): a sorted set of threads whose run
  has not reached a final status, scored by when to look at them next. A run enters it
  before it starts and leaves it when it ends; the recovery loop of every worker
  (:mod:`agentflow.server.recovery`) resumes the ones nobody holds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agentflow.errors import KeyInFlightError
from agentflow.tools.keys import canonical_json, key_prefix
from agentflow.tools.leases import Lease, keep_lease
from agentflow.tools.store import BeginResult, IdempotencyStore

__all__ = ["Claims", "Submission"]

_RELEASED = "released"


@dataclass(frozen=True)
class Submission:
    """What the store knows of one ``Idempotency-Key`` of one caller."""

    begin: BeginResult
    """The store's answer: ``new`` / ``expired`` (this worker now holds the key),
    ``completed`` (``result`` says which thread), ``in_flight``, ``mismatch``."""
    key: str
    """The store key the submission is held under."""

    @property
    def thread_id(self) -> str | None:
        """The thread the first submission ran on, once it is recorded."""
        result = self.begin.result
        return str(result["thread_id"]) if isinstance(result, dict) else None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Claims:
    """Thread claims, submission keys and the unfinished runs, on one idempotency store."""

    def __init__(self, store: IdempotencyStore, *, lease_s: float | None = None) -> None:
        self.store = store
        self.lease_s = lease_s or store.lease_s
        """How long a claim outlives a worker that stopped renewing it."""
        prefix = key_prefix(store.namespace)
        self._thread_prefix = f"{prefix}thread:"
        self._submission_prefix = f"{prefix}submission:"
        self._unfinished = f"{store.namespace}:runs:unfinished"

    # --- threads -----------------------------------------------------------------

    def _thread_key(self, thread_id: str) -> str:
        return self._thread_prefix + _digest(thread_id)

    @contextmanager
    def thread(self, thread_id: str) -> Iterator[None]:
        """Hold ``thread_id`` for the block, or raise :class:`KeyInFlightError` (409).

        A claim left by a worker that died is taken over once its lease has ended.
        """
        key = self._thread_key(thread_id)
        got = self.store.begin(key, "thread", self.lease_s, reclaim=True)
        if not got.holds_lease or got.token is None:
            wait = got.retry_after_s
            raise KeyInFlightError(
                f"thread {thread_id!r} is being moved by another request right now",
                hint="wait for it to finish (GET /runs/{thread}) and try again",
                retry_after_s=wait,
            )
        try:
            with keep_lease(self.store, Lease(key, got.token, self.lease_s)):
                yield
        finally:
            self.store.fail(key, got.token, _RELEASED, retryable=True)

    def thread_busy(self, thread_id: str) -> bool:
        """True while some worker holds ``thread_id`` (its run is in progress)."""
        peeked = self.store.peek(self._thread_key(thread_id))
        return peeked.state == "in_flight" and bool(peeked.lease_left_s)

    # --- submissions -------------------------------------------------------------

    def submission(self, who: str, idempotency_key: str, body: dict[str, Any]) -> Submission:
        """Take (or find) the record of ``who``'s submission under ``idempotency_key``."""
        key = self._submission_prefix + _digest(who, idempotency_key)
        fingerprint = _digest(who, canonical_json(body))
        return Submission(self.store.begin(key, fingerprint, self.lease_s, reclaim=True), key)

    @contextmanager
    def holding(self, submission: Submission) -> Iterator[None]:
        """Keep a held submission key renewed while its run goes on."""
        token = submission.begin.token
        if token is None:
            yield
            return
        with keep_lease(self.store, Lease(submission.key, token, self.lease_s)):
            yield

    def settle_submission(self, submission: Submission, thread_id: str) -> None:
        """Record that the submission's run is on ``thread_id``: its retries are sent there."""
        if submission.begin.token is not None:
            self.store.complete(submission.key, submission.begin.token, {"thread_id": thread_id})

    def release_submission(self, submission: Submission) -> None:
        """Let the key be used again: the submission was refused before anything ran."""
        if submission.begin.token is not None:
            self.store.fail(submission.key, submission.begin.token, _RELEASED, retryable=True)

    # --- unfinished runs ---------------------------------------------------------

    def started(self, thread_id: str, payload: dict[str, Any] | None = None) -> None:
        """Note a run on ``thread_id`` before it starts; ``payload`` is its input, kept so
        that a run whose worker died before its first checkpoint can still be started."""
        pipe = self.store.client.pipeline(transaction=True)
        # Scores are this worker's clock: skew only moves when a run is looked at, never
        # who may move it (thread claims are timed by the server).
        pipe.zadd(self._unfinished, {thread_id: time.time() + self.lease_s})
        input_key = f"{self._unfinished}:input:{_digest(thread_id)}"
        if payload is not None:
            pipe.set(input_key, canonical_json(payload), ex=round(self.store.retention_s))
        else:
            pipe.delete(input_key)
        self.store.call(pipe.execute)

    def pending_input(self, thread_id: str) -> str | None:
        """The input noted by :meth:`started` for a run that may not have begun."""
        found = self.store.call(
            self.store.client.get, f"{self._unfinished}:input:{_digest(thread_id)}"
        )
        return None if found is None else str(found)

    def finished(self, thread_id: str) -> None:
        """The run on ``thread_id`` reached a final status (done, waiting, refused)."""
        pipe = self.store.client.pipeline(transaction=True)
        pipe.zrem(self._unfinished, thread_id)
        pipe.delete(f"{self._unfinished}:input:{_digest(thread_id)}")
        self.store.call(pipe.execute)

    def due(self, limit: int = 20) -> list[str]:
        """Unfinished runs whose time to be looked at has come (oldest first)."""
        found = self.store.call(
            self.store.client.zrangebyscore, self._unfinished, "-inf", time.time(), 0, limit
        )
        return [str(t) for t in found]

    def later(self, thread_id: str, delay_s: float) -> None:
        """Look at ``thread_id`` again in ``delay_s`` (a recovery that failed backs off)."""
        self.store.call(
            self.store.client.zadd, self._unfinished, {thread_id: time.time() + delay_s}, xx=True
        )

    def unfinished(self) -> int:
        """How many runs have not reached a final status (for monitoring)."""
        return int(self.store.call(self.store.client.zcard, self._unfinished))
