"""Claims in the store, without HTTP: what lets any worker take any thread, and no two at once.

A real Valkey and the model-free approvals demo; the "other worker" is a second
:class:`AgentService` on the same database and store, as a second process would be.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentflow.checkpoints import Ledger, setup_savers
from agentflow.errors import KeyInFlightError, KeyMismatchError
from agentflow.runtime import AgentRuntime
from agentflow.server.auth import Identity
from agentflow.server.claims import Claims
from agentflow.server.recovery import RecoveryLoop
from agentflow.server.schemas import RunRequest
from agentflow.server.service import AgentService
from agentflow.settings import Settings

KIM = Identity(name="kim", scopes=frozenset({"run", "read"}), customer={})
SAM = Identity(name="sam", scopes=frozenset({"read", "approve"}), customer={})


@pytest.fixture
def services(tmp_path: Path, valkey_server: Any) -> Iterator[tuple[AgentService, AgentService]]:
    settings = Settings(
        data_dir=tmp_path / "af",
        database_url=f"sqlite:///{tmp_path}/agentflow.db",
        redis_url=valkey_server.url,
        namespace=f"c{time.time_ns()}",
        lease_seconds=1.0,
    )
    setup_savers(settings.resolved_database_url)
    Ledger.from_settings(settings).setup()
    with (
        AgentRuntime.open("graphs/approvals_demo.py", settings=settings) as one,
        AgentRuntime.open("graphs/approvals_demo.py", settings=settings) as two,
    ):
        yield (
            AgentService(one, "approvals_demo", lambda _t: None),
            AgentService(two, "approvals_demo", lambda _t: None),
        )


def test_one_worker_at_a_time_moves_a_thread_and_a_dead_ones_claim_ends(
    services: tuple[AgentService, AgentService],
) -> None:
    a, b = services
    with a.claims.thread("t_shared"):
        assert b.claims.thread_busy("t_shared")
        with pytest.raises(KeyInFlightError) as refused, b.claims.thread("t_shared"):
            pass
        assert refused.value.retry_after_s is not None
    with b.claims.thread("t_shared"):  # released: the other may take it now
        pass
    # A worker that dies holds its claim only until its lease ends (nobody renews it).
    dead = a.claims.store.begin(a.claims._thread_key("t_dead"), "thread", 0.3, reclaim=True)
    assert dead.holds_lease
    with pytest.raises(KeyInFlightError), b.claims.thread("t_dead"):
        pass
    time.sleep(0.4)
    with b.claims.thread("t_dead"):
        pass


def test_a_submission_runs_once_whichever_worker_gets_its_retries(
    services: tuple[AgentService, AgentService],
) -> None:
    a, b = services
    body = RunRequest(message="send $5 to kim@example.com")
    first, replayed = a.submit(body, KIM, key="k-1")
    assert first.status == "waiting_approval" and not replayed
    again, replayed = b.submit(body, KIM, key="k-1")
    assert replayed and again.thread_id == first.thread_id
    assert again.decisions == first.decisions  # nothing ran again
    with pytest.raises(KeyMismatchError):
        b.submit(RunRequest(message="send $6 to kim@example.com"), KIM, key="k-1")
    # The same key from someone else is their own submission.
    other, replayed = b.submit(body, Identity(name="lee", scopes=frozenset({"run"})), key="k-1")
    assert not replayed and other.thread_id != first.thread_id
    # A submission refused before it ran frees its key.
    with pytest.raises(Exception, match="waiting for approval"):
        a.submit(RunRequest(message="send $1 to a@b.c", thread_id=first.thread_id), KIM, key="k-2")
    fresh, replayed = a.submit(RunRequest(message="send $1 to a@b.c"), KIM, key="k-2")
    assert not replayed and fresh.status == "waiting_approval"


def test_an_accepted_run_is_visible_at_once_and_finished_by_another_worker(
    services: tuple[AgentService, AgentService],
) -> None:
    a, b = services
    # Worker a noted the run and died before its first checkpoint.
    a.claims.started(
        "t_orphan",
        {"message": "send $3 to pat@example.com", "customer": KIM.principal, "message_id": "m_1"},
    )
    view = b.thread("t_orphan", KIM)
    assert view.status == "running" and view.request == "send $3 to pat@example.com"
    with pytest.raises(Exception, match="no thread"):
        b.thread("t_orphan", Identity(name="lee", scopes=frozenset({"read"})))
    b.claims.later("t_orphan", 0)
    assert RecoveryLoop(b).sweep() == 1
    done = b.thread("t_orphan", SAM)
    assert done.status == "waiting_approval", done
    assert b.claims.unfinished() == 0
    # Swept again, nothing runs twice: the turn is on the thread.
    a.claims.started("t_orphan", {"message": "send $3 to pat@example.com", "message_id": "m_1"})
    a.claims.later("t_orphan", 0)
    RecoveryLoop(a).sweep()
    assert a.runtime.result("t_orphan").decisions == done.decisions


def test_claims_live_in_the_deployments_namespace(
    services: tuple[AgentService, AgentService],
) -> None:
    claims: Claims = services[0].claims
    assert claims._thread_key("t").startswith(f"{claims.store.namespace}:idem:")
