"""Leases that follow their holder: renewed while the holder works, ended when it dies.

A lease in the idempotency store (:meth:`agentflow.tools.store.IdempotencyStore.begin`) has a
deadline; :func:`keep_lease` pushes it on every third of its length for as long as the
block runs, from one keeper thread per process. A slow holder is never taken for a lost
one, and a holder that dies stops renewing, so its lease ends on time and another
process may take over. Guarded tool calls and the server's thread claims both use it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentflow.tools.store import IdempotencyStore

__all__ = ["Lease", "keep_lease"]


@dataclass(frozen=True)
class Lease:
    """The lease a running call holds, renewed while it runs (the lease follows the call)."""

    key: str
    """The idempotency key."""
    token: str
    """The holder's token."""
    seconds: float
    """Lease length; renewed every third of it."""


class _LeaseKeeper:
    """One thread per process renewing every held lease when a third of it has passed.

    A thread per call would cost more than the rest of the guarded call; registering a
    lease here is a dict insert. A lost lease is dropped; a store error is tried again at
    the next beat (what the call does next is decided when it completes).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[int, tuple[IdempotencyStore, Lease, float]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._wakes_at = float("inf")

    def hold(self, store: IdempotencyStore, lease: Lease) -> int:
        with self._cond:
            self._next += 1
            due = time.monotonic() + lease.seconds / 3
            self._held[self._next] = (store, lease, due)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="lease keeper", daemon=True)
                self._thread.start()
            if due < self._wakes_at:
                # Waking the keeper costs a thread switch per call; it is needed only when
                # this lease falls due before the keeper would wake anyway.
                self._cond.notify()
            return self._next

    def release(self, ticket: int) -> None:
        with self._cond:
            self._held.pop(ticket, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [(t, s, lease) for t, (s, lease, at) in self._held.items() if at <= now]
                if not due:
                    soonest = min((at for _, _, at in self._held.values()), default=None)
                    self._wakes_at = float("inf") if soonest is None else soonest
                    self._cond.wait(None if soonest is None else soonest - now)
                    self._wakes_at = 0.0  # awake: a new lease is seen on the next pass
                    continue
                for ticket, store, lease in due:
                    self._held[ticket] = (store, lease, now + lease.seconds / 3)
            for ticket, store, lease in due:
                try:
                    if not store.renew(lease.key, lease.token, lease.seconds):
                        self.release(ticket)  # the lease is lost: nothing left to keep
                except Exception:
                    continue

    def _after_fork(self) -> None:
        # A forked child has no keeper thread (threads do not survive fork): start afresh.
        self._cond = threading.Condition()
        self._held.clear()
        self._thread = None
        self._wakes_at = float("inf")


_KEEPER = _LeaseKeeper()
os.register_at_fork(after_in_child=_KEEPER._after_fork)


@contextmanager
def keep_lease(store: IdempotencyStore, lease: Lease) -> Iterator[None]:
    """Keep ``lease`` renewed while the block runs (a slow call is never taken for a lost
    one); a holder that dies stops renewing, and its lease ends as before."""
    ticket = _KEEPER.hold(store, lease)
    try:
        yield
    finally:
        _KEEPER.release(ticket)
