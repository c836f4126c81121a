"""The idempotency store: begin / complete / fail on any Redis-protocol server.

Semantics follow Stripe and the IETF Idempotency-Key draft. Each key is one hash::

    state     in_flight | completed | failed
    fp        sha256 of the canonical arguments (same key, other fp -> "mismatch")
    token     lease token of the current holder (only its complete/fail count)
    deadline  server time (ms) the lease ends; past it, an in_flight record is "expired"
    attempt   how many leases were granted on the key
    via       how the current lease was granted: new | expired
    result    JSON result (completed)      error  error text (failed)

The record keeps the retention TTL (default 24 h) from the first ``begin`` on, so a lease
that ended without a result stays visible as ``expired`` (outcome unknown) instead of
vanishing. ``fail(retryable=True)`` deletes the record, so the call may be begun again;
``fail(retryable=False)`` keeps it as ``failed`` and every later ``begin`` answers
``failed`` with the stored error: a failure that must not be retried is never silently
re-run (a human may ``forget`` or ``settle`` it).

Every transition is one Lua script run with EVALSHA (redis-py loads it again after a
server restart), so two workers can never both get ``new``. Time comes from the server
(``TIME``), so workers' clocks do not matter. Connection errors are retried by a
:class:`RetryPolicy`, then raised as :class:`~agentflow.errors.StoreUnavailableError`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio as aredis
from pydantic_core import to_jsonable_python
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from agentflow.consequence import ConsequenceClass, severity
from agentflow.errors import IdempotencyError, StoreUnavailableError
from agentflow.settings import Settings
from agentflow.tools._store_scripts import ANSWER as _ANSWER
from agentflow.tools._store_scripts import ASSESS as _ASSESS
from agentflow.tools._store_scripts import BEGIN as _BEGIN
from agentflow.tools._store_scripts import COMPLETE as _COMPLETE
from agentflow.tools._store_scripts import FAIL as _FAIL
from agentflow.tools._store_scripts import PEEK as _PEEK
from agentflow.tools._store_scripts import RENEW as _RENEW
from agentflow.tools._store_scripts import SETTLE as _SETTLE
from agentflow.tools.durability import Durability, aread_durability, read_durability
from agentflow.tools.embedded import ensure_embedded_valkey
from agentflow.tools.keys import answer_key, assessment_key, grant_key, key_prefix

__all__ = [
    "AnswerResult",
    "AsyncIdempotencyStore",
    "BeginResult",
    "BeginStatus",
    "Grant",
    "GrantRefusal",
    "IdempotencyStore",
    "Peeked",
    "RetryPolicy",
]

BeginStatus = Literal["new", "in_flight", "completed", "mismatch", "expired", "failed", "no_grant"]
"""What ``begin`` found: see :class:`BeginResult`."""

GrantRefusal = Literal["missing", "other", "expired", "used"]
"""Why a grant did not count: none, another call's, past its expiry, used already."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff, like redis-py's ``Retry(ExponentialBackoff(...))``."""

    attempts: int = 3
    """Tries in total (1 = no retry)."""
    base_s: float = 0.02
    """Delay before the first retry."""
    cap_s: float = 0.25
    """Longest delay between two tries."""

    def delays(self) -> Iterator[float]:
        """The sleeps between tries: ``attempts - 1`` of them."""
        for i in range(max(0, self.attempts - 1)):
            yield min(self.cap_s, self.base_s * (2**i))


@dataclass(frozen=True)
class BeginResult:
    """The answer to ``begin``.

    - ``new``: you hold the lease (``token``); run the tool, then ``complete`` or ``fail``.
    - ``in_flight``: another holder's lease is live (409-like); ``retry_after_s`` says when
      it ends.
    - ``completed``: ``result`` is the stored result; the tool must not run.
    - ``mismatch``: the key was used with other arguments (422-like).
    - ``expired``: a lease ended without a result, the outcome is unknown. With
      ``reclaim=True`` you now hold a new lease (``token`` set); otherwise nothing changed.
    - ``failed``: a non-retryable failure is stored (``error``); do not run again.
    - ``no_grant``: the call needs an approval grant and there is no usable one
      (``error`` says why: none, another call's, expired, used); nothing changed.
    """

    status: BeginStatus
    """What the store found."""
    key: str
    """The key asked about."""
    token: str | None = None
    """Lease token when the caller now holds the lease."""
    result: Any = None
    """Stored result (``completed``)."""
    error: str | None = None
    """Stored error (``failed``) or why the grant did not count (``no_grant``)."""
    attempt: int = 0
    """Leases granted on this key so far (this one included)."""
    retry_after_s: float | None = None
    """Time left on another holder's lease (``in_flight``)."""
    grant_refusal: GrantRefusal | None = None
    """Why the grant did not count (``no_grant``)."""

    @property
    def holds_lease(self) -> bool:
        """True when the caller may run the tool now."""
        return self.token is not None


@dataclass(frozen=True)
class AnswerResult:
    """What :meth:`IdempotencyStore.answer` found: the first answer to an approval wins.

    - ``recorded``: this answer is the approval's answer (and its grant, if any, exists);
    - ``same``: this very answer was recorded before (a replay): nothing changed;
    - ``answered``: another answer won; ``decision`` and ``approver`` are that answer's.
    """

    status: Literal["recorded", "same", "answered"]
    """See above."""
    decision: str
    """The winning answer's decision."""
    approver: str
    """Who gave the winning answer."""


@dataclass(frozen=True)
class Grant:
    """An approval grant as the store keeps it (:meth:`IdempotencyStore.granted`)."""

    approval_id: str
    """The approval whose answer wrote it."""
    approver: str
    """Who approved."""
    edit: bool
    """True when the approver wrote these arguments (an ``edit`` answer)."""
    expires_at: float
    """When it stops counting (epoch seconds, the store's clock)."""
    used: bool
    """True once a call began under it (it never counts again)."""


def _parse_grant(fields: list[Any]) -> Grant | None:
    approval_id, approver, edit, expires, used_by = fields
    if approval_id is None:
        return None
    return Grant(
        approval_id=str(approval_id),
        approver=str(approver or ""),
        edit=edit == "1",
        expires_at=int(expires or 0) / 1000,
        used=bool(used_by),
    )


@dataclass(frozen=True)
class Peeked:
    """A key's record as :meth:`IdempotencyStore.peek` sees it."""

    state: str
    """``in_flight``, ``completed``, ``failed``, or ``""`` (no record)."""
    lease_left_s: float
    """Time left on a live lease (0 when none is live)."""
    result: Any = None
    """The stored result (``completed``)."""


def _parse_peek(reply: list[Any]) -> Peeked:
    state, left, result = (str(x) if x is not None else "" for x in reply)
    return Peeked(
        state=state,
        lease_left_s=int(left or 0) / 1000,
        result=json.loads(result) if state == "completed" and result else None,
    )


_GRANT_FIELDS = ("approval_id", "approver", "edit", "expires", "used_by")

_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError, OSError)
_CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 1.0,
    "socket_timeout": 2.0,
}


def _redacted(url: str) -> str:
    """``url`` without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def _encode_result(result: Any) -> str:
    """JSON text of a tool result; unknown objects fall back to their repr."""
    return json.dumps(to_jsonable_python(result, fallback=repr), separators=(",", ":"))


def _parse_begin(key: str, reply: list[Any]) -> BeginResult:
    """Turn the BEGIN script's reply into a :class:`BeginResult`."""
    status, attempt, payload, token = (str(x) if x is not None else "" for x in reply)
    refused = status == "no_grant"
    return BeginResult(
        status=status,  # type: ignore[arg-type]
        key=key,
        token=None if refused else token or None,
        grant_refusal=cast(GrantRefusal, token) if refused else None,
        attempt=int(attempt or 0),
        result=json.loads(payload) if status == "completed" else None,
        error=payload if status in ("failed", "no_grant") else None,
        retry_after_s=float(payload) / 1000 if status == "in_flight" else None,
    )


class _StoreBase:
    """What the sync and async stores share: key checks, encoding, error mapping."""

    def __init__(
        self, where: str, *, namespace: str, lease_s: float, retention_s: float, retry: RetryPolicy
    ) -> None:
        if lease_s <= 0 or retention_s <= 0:
            raise ValueError("lease_s and retention_s must be positive")
        self.where = where
        """Redacted URL of the server, for messages."""
        self.namespace = namespace
        """Every key this store touches starts with ``{namespace}:idem:``."""
        self.lease_s = lease_s
        """Default lease length for ``begin``."""
        self.retention_s = retention_s
        """How long records (completed, failed, or with an ended lease) are kept."""
        self.retry = retry
        """Retries of transient connection errors."""
        self._prefix = key_prefix(namespace)

    def _check(self, key: str) -> None:
        if not key.startswith(self._prefix):
            raise IdempotencyError(
                f"key {key!r} is outside this store's namespace {self.namespace!r}",
                hint="derive keys with agentflow.tools.keys.derive_key(store.namespace, ...)",
            )

    def _begin_args(self, fp: str, token: str, lease_s: float | None, reclaim: bool) -> list[str]:
        lease_ms = round((self.lease_s if lease_s is None else lease_s) * 1000)
        return [fp, token, str(max(1, lease_ms)), str(self._retention_ms), "1" if reclaim else "0"]

    def _begin_keys(self, key: str, grant: str | None) -> list[str]:
        self._check(key)
        if grant is not None and not grant.startswith(f"{self.namespace}:grant:"):
            raise IdempotencyError(f"grant key {grant!r} is outside namespace {self.namespace!r}")
        return [key] if grant is None else [key, grant]

    def _answer_call(
        self,
        approval_id: str,
        thread_id: str,
        answer_fp: str,
        decision: str,
        approver: str,
        grant_digest: str | None,
        grant_ttl_s: float,
        edit: bool,
    ) -> tuple[list[str], list[str]]:
        keys = [answer_key(self.namespace, approval_id)]
        if grant_digest is not None:
            keys.append(grant_key(self.namespace, thread_id, grant_digest))
        args = [
            answer_fp,
            str(self._retention_ms),
            decision,
            approver,
            grant_digest or "",
            str(max(1, round(grant_ttl_s * 1000))),
            approval_id,
            "1" if edit else "0",
        ]
        return keys, args

    @property
    def _retention_ms(self) -> int:
        return max(1, round(self.retention_s * 1000))

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"idempotency store at {self.where} is unavailable ({type(exc).__name__}: {exc})"
        )


class IdempotencyStore(_StoreBase):
    """Synchronous store on a redis-py client (thread-safe: one pool, many threads)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "agentflow",
        lease_s: float = 30.0,
        retention_s: float = 24 * 3600,
        retry: RetryPolicy | None = None,
        where: str = "redis",
        require_durable: bool = False,
    ) -> None:
        super().__init__(
            where,
            namespace=namespace,
            lease_s=lease_s,
            retention_s=retention_s,
            retry=retry or RetryPolicy(),
        )
        self.client = client
        """The redis-py client (``decode_responses=True``)."""
        self.require_durable = require_durable
        """Refuse non-safe calls on a server that can lose writes (:mod:`agentflow.tools.durability`)."""
        self._durability: Durability | None = None
        self._begin = client.register_script(_BEGIN)
        self._complete = client.register_script(_COMPLETE)
        self._fail = client.register_script(_FAIL)
        self._settle = client.register_script(_SETTLE)
        self._answer = client.register_script(_ANSWER)
        self._assess = client.register_script(_ASSESS)
        self._renew = client.register_script(_RENEW)
        self._peek = client.register_script(_PEEK)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> IdempotencyStore:
        """A store on the server at ``url`` (``redis://``, ``rediss://``, ``unix://``)."""
        # redis-py's own retry is off: RetryPolicy decides, the same way for every call.
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **_CLIENT_OPTIONS)
        return cls(client, where=_redacted(url), **kwargs)

    @classmethod
    def from_settings(cls, settings: Settings) -> IdempotencyStore:
        """``settings.redis_url`` if set, else the embedded Valkey under ``data_dir``."""

        url = settings.redis_url or ensure_embedded_valkey(settings.data_dir)
        return cls.from_url(
            url,
            namespace=settings.namespace,
            lease_s=settings.lease_seconds,
            retention_s=settings.retention_seconds,
            # The embedded Valkey is configured durable; an external one is checked.
            require_durable=bool(settings.redis_url) and not settings.allow_volatile_redis,
        )

    def durability_problem(self) -> str | None:
        """Why this server can lose writes, if it can (read once, on first use)."""
        if not self.require_durable:
            return None
        if self._durability is None:
            self._durability = self._run(read_durability, self.client)
        return self._durability.problem

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one redis-py command of ``client`` under the store's retry policy; a server
        that stays unreachable raises :class:`StoreUnavailableError`."""
        return self._run(fn, *args, **kwargs)

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        delays = self.retry.delays()
        while True:
            try:
                return fn(*args, **kwargs)
            except _TRANSIENT as exc:
                delay = next(delays, None)
                if delay is None:
                    raise self._unavailable(exc) from exc
                time.sleep(delay)
            except redis.RedisError as exc:
                raise self._unavailable(exc) from exc

    def begin(
        self,
        key: str,
        fingerprint: str,
        lease_s: float | None = None,
        *,
        reclaim: bool = False,
        grant: str | None = None,
    ) -> BeginResult:
        """Try to take the lease on ``key``; see :class:`BeginResult` for the answers.

        ``grant`` (a :func:`agentflow.tools.keys.grant_key`) makes a new lease need an unexpired
        approval grant for ``fingerprint`` not used by another key; it is consumed in the
        same atomic step.
        """
        keys = self._begin_keys(key, grant)
        args = self._begin_args(fingerprint, uuid.uuid4().hex, lease_s, reclaim)
        reply = self._run(self._begin, keys=keys, args=args)
        return _parse_begin(key, reply)

    def answer(
        self,
        *,
        approval_id: str,
        thread_id: str,
        answer_fp: str,
        decision: str,
        approver: str,
        grant_digest: str | None = None,
        grant_ttl_s: float = 24 * 3600,
        edit: bool = False,
    ) -> AnswerResult:
        """Record the one answer to ``approval_id``; with ``grant_digest``, grant that action.

        The first answer wins across every process; see :class:`AnswerResult`.
        """
        keys, args = self._answer_call(
            approval_id, thread_id, answer_fp, decision, approver, grant_digest, grant_ttl_s, edit
        )
        status, won, by = self._run(self._answer, keys=keys, args=args)
        return AnswerResult(status=status, decision=str(won), approver=str(by))

    def assess(self, thread_id: str, digest: str, cls: ConsequenceClass) -> ConsequenceClass:
        """Keep ``cls`` as the assessed class of action ``digest`` unless a higher one is kept.

        Returns the class now kept. The executor raises a call's class to it, so a lower
        class written into graph state later cannot lower the call.
        """
        args = [str(severity(cls)), cls, str(self._retention_ms)]
        key = assessment_key(self.namespace, thread_id, digest)
        return str(self._run(self._assess, keys=[key], args=args))  # type: ignore[return-value]

    def assessed(self, thread_id: str, digest: str) -> ConsequenceClass | None:
        """The class kept by :meth:`assess` for action ``digest`` on ``thread_id``, if any."""
        key = assessment_key(self.namespace, thread_id, digest)
        found = self._run(self.client.hget, key, "class")
        return None if found is None else found  # type: ignore[no-any-return]

    def answered(self, approval_id: str) -> tuple[str, str, str] | None:
        """The accepted answer to ``approval_id``: (fingerprint, decision, approver), or None."""
        fields = ("fp", "decision", "approver")
        got = self._run(self.client.hmget, answer_key(self.namespace, approval_id), fields)
        return None if not got or got[0] is None else (str(got[0]), str(got[1]), str(got[2]))

    def granted(self, thread_id: str, digest: str) -> Grant | None:
        """The grant kept for action ``digest`` on ``thread_id``, if any (reading uses none)."""
        key = grant_key(self.namespace, thread_id, digest)
        return _parse_grant(self._run(self.client.hmget, key, _GRANT_FIELDS))

    def complete(self, key: str, token: str, result: Any) -> bool:
        """Store ``result`` if ``token`` still holds the lease; False when it does not."""
        self._check(key)
        args = [token, _encode_result(result), str(self._retention_ms)]
        stored = bool(self._run(self._complete, keys=[key], args=args) == "stored")
        if stored and self._durability is not None and self._durability.replicas:
            # A failover to a replica that never got the result would forget it.
            self._run(self.client.wait, self._durability.replicas, 1000)
        return stored

    def peek(self, key: str) -> Peeked:
        """What the store holds for ``key``, taking no lease (see :class:`Peeked`)."""
        self._check(key)
        return _parse_peek(self._run(self._peek, keys=[key], args=[]))

    def renew(self, key: str, token: str, lease_s: float) -> bool:
        """Push the lease's deadline to ``lease_s`` from now; False when ``token`` lost it."""
        self._check(key)
        args = [token, str(max(1, round(lease_s * 1000)))]
        return bool(self._run(self._renew, keys=[key], args=args))

    def fail(self, key: str, token: str, error: str, *, retryable: bool) -> bool:
        """Release (retryable) or keep as failed; False when ``token`` lost the lease."""
        self._check(key)
        args = [token, error, "1" if retryable else "0", str(self._retention_ms)]
        return bool(self._run(self._fail, keys=[key], args=args) in ("released", "kept"))

    def settle(self, key: str, result: Any) -> bool:
        """A human marks an unknown or failed outcome as done with ``result``."""
        self._check(key)
        args = [_encode_result(result), str(self._retention_ms)]
        return bool(self._run(self._settle, keys=[key], args=args))

    def forget(self, key: str) -> bool:
        """A human allows a re-run: delete the record. True when there was one."""
        self._check(key)
        return bool(self._run(self.client.delete, key))

    def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` unless the server answers."""
        self._run(self.client.ping)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class AsyncIdempotencyStore(_StoreBase):
    """The same store on ``redis.asyncio``; same scripts, same answers."""

    def __init__(
        self,
        client: aredis.Redis,
        *,
        namespace: str = "agentflow",
        lease_s: float = 30.0,
        retention_s: float = 24 * 3600,
        retry: RetryPolicy | None = None,
        where: str = "redis",
        require_durable: bool = False,
    ) -> None:
        super().__init__(
            where,
            namespace=namespace,
            lease_s=lease_s,
            retention_s=retention_s,
            retry=retry or RetryPolicy(),
        )
        self.client = client
        """The ``redis.asyncio`` client (``decode_responses=True``)."""
        self.require_durable = require_durable
        """Refuse non-safe calls on a server that can lose writes (:mod:`agentflow.tools.durability`)."""
        self._durability: Durability | None = None
        self._begin = client.register_script(_BEGIN)
        self._complete = client.register_script(_COMPLETE)
        self._fail = client.register_script(_FAIL)
        self._settle = client.register_script(_SETTLE)
        self._answer = client.register_script(_ANSWER)
        self._assess = client.register_script(_ASSESS)
        self._renew = client.register_script(_RENEW)
        self._peek = client.register_script(_PEEK)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncIdempotencyStore:
        """An async store on the server at ``url``."""
        client = aredis.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **_CLIENT_OPTIONS)
        return cls(client, where=_redacted(url), **kwargs)

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncIdempotencyStore:
        """``settings.redis_url`` if set, else the embedded Valkey under ``data_dir``."""

        url = settings.redis_url or ensure_embedded_valkey(settings.data_dir)
        return cls.from_url(
            url,
            namespace=settings.namespace,
            lease_s=settings.lease_seconds,
            retention_s=settings.retention_seconds,
            require_durable=bool(settings.redis_url) and not settings.allow_volatile_redis,
        )

    async def durability_problem(self) -> str | None:
        """Why this server can lose writes, if it can (read once, on first use)."""
        if not self.require_durable:
            return None
        if self._durability is None:
            self._durability = await self._run(aread_durability, self.client)
        return self._durability.problem

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        delays = self.retry.delays()
        while True:
            try:
                return await fn(*args, **kwargs)
            except _TRANSIENT as exc:
                delay = next(delays, None)
                if delay is None:
                    raise self._unavailable(exc) from exc
                await asyncio.sleep(delay)
            except redis.RedisError as exc:
                raise self._unavailable(exc) from exc

    async def begin(
        self,
        key: str,
        fingerprint: str,
        lease_s: float | None = None,
        *,
        reclaim: bool = False,
        grant: str | None = None,
    ) -> BeginResult:
        """Try to take the lease on ``key``; see :class:`BeginResult` for the answers.

        ``grant`` (a :func:`agentflow.tools.keys.grant_key`) makes a new lease need an unexpired
        approval grant for ``fingerprint`` not used by another key; it is consumed in the
        same atomic step.
        """
        keys = self._begin_keys(key, grant)
        args = self._begin_args(fingerprint, uuid.uuid4().hex, lease_s, reclaim)
        reply = await self._run(self._begin, keys=keys, args=args)
        return _parse_begin(key, reply)

    async def answer(
        self,
        *,
        approval_id: str,
        thread_id: str,
        answer_fp: str,
        decision: str,
        approver: str,
        grant_digest: str | None = None,
        grant_ttl_s: float = 24 * 3600,
        edit: bool = False,
    ) -> AnswerResult:
        """Record the one answer to ``approval_id``; with ``grant_digest``, grant that action.

        The first answer wins across every process; see :class:`AnswerResult`.
        """
        keys, args = self._answer_call(
            approval_id, thread_id, answer_fp, decision, approver, grant_digest, grant_ttl_s, edit
        )
        status, won, by = await self._run(self._answer, keys=keys, args=args)
        return AnswerResult(status=status, decision=str(won), approver=str(by))

    async def assess(self, thread_id: str, digest: str, cls: ConsequenceClass) -> ConsequenceClass:
        """Keep ``cls`` as the assessed class of action ``digest`` unless a higher one is kept.

        Returns the class now kept. The executor raises a call's class to it, so a lower
        class written into graph state later cannot lower the call.
        """
        args = [str(severity(cls)), cls, str(self._retention_ms)]
        key = assessment_key(self.namespace, thread_id, digest)
        return str(await self._run(self._assess, keys=[key], args=args))  # type: ignore[return-value]

    async def assessed(self, thread_id: str, digest: str) -> ConsequenceClass | None:
        """The class kept by :meth:`assess` for action ``digest`` on ``thread_id``, if any."""
        key = assessment_key(self.namespace, thread_id, digest)
        found = await self._run(self.client.hget, key, "class")
        return None if found is None else found  # type: ignore[no-any-return]

    async def answered(self, approval_id: str) -> tuple[str, str, str] | None:
        """The accepted answer to ``approval_id``: (fingerprint, decision, approver), or None."""
        fields = ("fp", "decision", "approver")
        got = await self._run(self.client.hmget, answer_key(self.namespace, approval_id), fields)
        return None if not got or got[0] is None else (str(got[0]), str(got[1]), str(got[2]))

    async def complete(self, key: str, token: str, result: Any) -> bool:
        """Store ``result`` if ``token`` still holds the lease; False when it does not."""
        self._check(key)
        args = [token, _encode_result(result), str(self._retention_ms)]
        return bool(await self._run(self._complete, keys=[key], args=args) == "stored")

    async def peek(self, key: str) -> Peeked:
        """What the store holds for ``key``, taking no lease (see :class:`Peeked`)."""
        self._check(key)
        return _parse_peek(await self._run(self._peek, keys=[key], args=[]))

    async def renew(self, key: str, token: str, lease_s: float) -> bool:
        """Push the lease's deadline to ``lease_s`` from now; False when ``token`` lost it."""
        self._check(key)
        args = [token, str(max(1, round(lease_s * 1000)))]
        return bool(await self._run(self._renew, keys=[key], args=args))

    async def fail(self, key: str, token: str, error: str, *, retryable: bool) -> bool:
        """Release (retryable) or keep as failed; False when ``token`` lost the lease."""
        self._check(key)
        args = [token, error, "1" if retryable else "0", str(self._retention_ms)]
        return bool(await self._run(self._fail, keys=[key], args=args) in ("released", "kept"))

    async def settle(self, key: str, result: Any) -> bool:
        """A human marks an unknown or failed outcome as done with ``result``."""
        self._check(key)
        args = [_encode_result(result), str(self._retention_ms)]
        return bool(await self._run(self._settle, keys=[key], args=args))

    async def forget(self, key: str) -> bool:
        """A human allows a re-run: delete the record. True when there was one."""
        self._check(key)
        return bool(await self._run(self.client.delete, key))

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` unless the server answers."""
        await self._run(self.client.ping)

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
