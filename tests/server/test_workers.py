"""Two workers on one Postgres and one Redis: any worker moves any thread, none is needed.

Each worker is a real `agentflow serve` process on its own port (so a test can choose
which one it talks to, and kill one), on the model-free approvals demo, whose payment
provider is made slow (``AGENTFLOW_DEMO_PAYMENT_SECONDS``) so that a worker can be
killed in the middle of a payment. Payments are counted in the demo's own record of
them, never in agentflow's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import setup_savers
from agentflow.server.auth import hash_token

REPO = Path(__file__).resolve().parents[2]
PAYMENT_S = 4.0
LEASE_S = 2.0
CUSTOMER = {"Authorization": "Bearer k1m"}
APPROVER = {"Authorization": "Bearer s4m"}


class Worker:
    """One `agentflow serve` process on its own port."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env, self.name = env, name
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        agentflow = Path(sys.executable).parent / "agentflow"
        args = [str(agentflow), "serve", "--graph", "graphs/approvals_demo.py", "--port", "0"]
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        seen: list[str] = []
        deadline = time.monotonic() + 120
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                pytest.fail(f"worker {self.name} exited ({self.proc.poll()}):\n{''.join(seen)}")
            seen.append(line)
            if match := re.search(r"listening on (http://127\.0\.0\.1:\d+)", line):
                self.url = match.group(1)
                # Keep draining its log so a chatty worker never blocks on a full pipe.
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return
        pytest.fail(f"worker {self.name} printed no address:\n{''.join(seen)}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown, no cleanup, as a crash
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def workers(tmp_path: Path, postgres_url: str, redis_server: Any) -> Iterator[list[Worker]]:
    setup_savers(postgres_url)
    Ledger(postgres_url).setup()
    env = {
        **os.environ,
        "AGENTFLOW_DATA_DIR": str(tmp_path / "af"),
        "AGENTFLOW_DATABASE_URL": postgres_url,
        "AGENTFLOW_REDIS_URL": redis_server.url,
        "AGENTFLOW_NAMESPACE": f"w{time.time_ns()}",  # the session's Redis is shared
        "AGENTFLOW_LEASE_SECONDS": str(LEASE_S),
        "AGENTFLOW_RECOVERY_SECONDS": "0.5",
        "AGENTFLOW_DEMO_PAYMENT_SECONDS": str(PAYMENT_S),
        "AGENTFLOW_TOKENS": json.dumps(
            {
                "sam": {"sha256": hash_token("s4m"), "scopes": ["read", "approve"]},
                "kim": {"sha256": hash_token("k1m"), "scopes": ["run", "read"]},
            }
        ),
        "COLUMNS": "200",
    }
    started = [Worker(env, "a"), Worker(env, "b")]
    for worker in started:
        worker.start()
    yield started
    for worker in started:
        worker.stop()


def _payments(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "af" / "approvals_demo_payments.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def _answer(run: dict[str, Any]) -> dict[str, Any]:
    p = run["pending_approval"]
    return {"approval_id": p["approval_id"], "decision": "approve", "digest": p["digest"]}


def _final(url: str, thread_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """Poll the thread until it is no longer running; the last view."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = httpx.get(f"{url}/runs/{thread_id}", headers=APPROVER, timeout=30).json()
        assert "status" in view, view
        if view["status"] not in ("running",) and not view.get("resumable"):
            return view
        if time.monotonic() > deadline:
            pytest.fail(f"thread {thread_id} never reached a final status: {view}")
        time.sleep(0.25)


def test_any_worker_moves_any_thread_and_a_submission_runs_once(
    workers: list[Worker], tmp_path: Path
) -> None:
    a, b = workers
    body = {"message": "send $5 to kim@example.com"}
    first = httpx.post(
        f"{a.url}/runs", json=body, headers={**CUSTOMER, "Idempotency-Key": "order-1"}, timeout=60
    )
    assert first.status_code == 200 and first.json()["status"] == "waiting_approval", first.text
    run = first.json()
    # The client did not hear the answer and retries through the other worker.
    again = httpx.post(
        f"{b.url}/runs", json=body, headers={**CUSTOMER, "Idempotency-Key": "order-1"}, timeout=60
    )
    assert again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["thread_id"] == run["thread_id"]
    other = httpx.post(
        f"{b.url}/runs",
        json={"message": "send $500 to kim@example.com"},
        headers={**CUSTOMER, "Idempotency-Key": "order-1"},
        timeout=60,
    )
    assert other.status_code == 422, other.text
    # The approval is answered through the worker that did not start the run.
    done = httpx.post(
        f"{b.url}/approvals/{run['thread_id']}", json=_answer(run), headers=APPROVER, timeout=60
    )
    assert done.status_code == 200 and done.json()["status"] == "done", done.text
    assert [p["to"] for p in _payments(tmp_path)] == ["kim@example.com"]
    # Asked to return at once, a worker answers 202 and the status URL works on any worker.
    accepted = httpx.post(
        f"{a.url}/runs",
        json={"message": "send $7 to lee@example.com"},
        headers={**CUSTOMER, "Prefer": "respond-async"},
        timeout=60,
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["location"] == accepted.json()["status_url"]
    view = _final(b.url, accepted.json()["thread_id"])
    assert view["status"] == "waiting_approval", view


def test_a_worker_killed_mid_payment_loses_no_run_and_pays_at_most_once(
    workers: list[Worker], tmp_path: Path
) -> None:
    a, b = workers
    runs = []
    for n in range(2):
        res = httpx.post(
            f"{a.url}/runs",
            json={"message": f"send ${n + 1} to pat{n}@example.com"},
            headers={**CUSTOMER, "Idempotency-Key": f"kill-{n}"},
            timeout=60,
        )
        assert res.json()["status"] == "waiting_approval", res.text
        runs.append(res.json())
    # Both answers go to b, which is killed in the middle of the payments.
    errors: list[BaseException] = []

    def answer(run: dict[str, Any]) -> None:
        try:
            httpx.post(
                f"{b.url}/approvals/{run['thread_id']}",
                json=_answer(run),
                headers=APPROVER,
                timeout=60,
            )
        except httpx.HTTPError as exc:  # the worker died under the request
            errors.append(exc)

    callers = [threading.Thread(target=answer, args=(r,)) for r in runs]
    # The kill lands after the first transfer (half-way through its payment) and before
    # the second one: both kinds of cut-off call, one with its effect and one without.
    callers[0].start()
    time.sleep(PAYMENT_S * 0.375)
    callers[1].start()
    time.sleep(PAYMENT_S * 0.325)
    b.kill()
    for caller in callers:
        caller.join(timeout=60)
    assert errors, "the answers should have been cut off by the kill"
    # a finishes what b left: every run reaches a final status, without b ever coming back.
    views = [_final(a.url, r["thread_id"], timeout_s=90) for r in runs]
    paid = _payments(tmp_path)
    for run, view in zip(runs, views, strict=True):
        to = run["pending_approval"]["args"]["to"]
        count = sum(p["to"] == to for p in paid)
        assert count <= 1, (to, paid)  # one approved action, at most one effect
        if view["status"] == "done":
            assert count == 1, view
        else:  # the transfer may or may not have happened: a person must check, not a retry
            assert view["status"] == "failed" and "human" in (view["outcome"] or ""), view
    # b comes back and everything still holds.
    b.start()
    for run in runs:
        assert httpx.get(f"{b.url}/runs/{run['thread_id']}", headers=APPROVER).json()["status"] in (
            "done",
            "failed",
        )
    assert len(_payments(tmp_path)) == len(paid)
