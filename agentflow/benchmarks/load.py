"""`agentflow bench load`: many workers on one Postgres and one Redis, under kills.

For each worker count, fresh state: a new database on the Postgres, a new namespace on
the Redis, a new data folder (the heads cache and signing key are shared with the
caller's, so nothing is retrained). N workers start as separate `agentflow serve`
processes on their own ports, so the driver chooses whom it talks to. C client threads
then send R submissions of the graph's workload (``load_workload()`` of the graph
module) over loopback, each with an ``Idempotency-Key``:

- a run that stops for approval is approved through a different worker than the one
  that answered its submission;
- 10% of submissions are sent again with the same key (to another worker) once their
  run has ended: the answer must be the first run, and nothing may run again;
- a killer SIGKILLs a random worker at random moments and restarts it on its port;
  clients whose request dies with it retry on another worker, as a real client would.

Then the back office is read through the graph module's ``effects(data_dir)``: every
effect carries the key it ran under, so ``duplicates`` counts effects beyond one per
key plus effects beyond one per approved action. A submission not at a final status
(done, a question for the user, or an outcome a human must check) within its time bound
is ``late``; once the kills stop it is sent again with its key (so it carries on its
first run), and ``lost`` counts the ones that still never get there. Progress goes to
stderr.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import psycopg

from agentflow.benchmarks._servers import free_port, local_postgres, local_redis
from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import setup_savers
from agentflow.errors import ConfigurationError
from agentflow.graph_module import load_graph_module
from agentflow.server.auth import hash_token
from agentflow.settings import Settings

__all__ = ["run"]

_REPEAT_SHARE = 0.10
_JOB_TIMEOUT_S = 120.0
_GRACE_S = 90.0
_CUSTOMER, _APPROVER = "load-customer", "load-approver"


class _Worker:
    """One `agentflow serve` process on a fixed port, restartable after a kill."""

    def __init__(self, graph: str, env: dict[str, str]) -> None:
        self.graph, self.env, self.port = graph, env, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 300) -> None:
        agentflow = Path(sys.executable).parent / "agentflow"
        args = [str(agentflow), "serve", "--graph", self.graph, "--port", str(self.port)]
        # Each start appends to the worker's log in the round's data folder (kept).
        log = Path(self.env["AGENTFLOW_DATA_DIR"]) / f"worker-{self.port}.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, env=self.env, stdout=subprocess.DEVNULL, stderr=out)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigurationError(f"a worker exited at start ({self.proc.returncode})")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise ConfigurationError(f"a worker did not answer on {self.url} in {timeout_s:.0f} s")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _Driver:
    """The clients: submissions, approvals through another worker, repeats, retries."""

    def __init__(self, workers: list[_Worker], tokens: dict[str, str]) -> None:
        self.workers = workers
        self.customer = {"Authorization": f"Bearer {tokens[_CUSTOMER]}"}
        self.approver = {"Authorization": f"Bearer {tokens[_APPROVER]}"}
        self.approved: set[str] = set()
        self.replays_wrong = 0
        self.last: dict[str, dict[str, Any]] = {}
        """Per submission key, the last view of its run (what a lost one was stuck at)."""
        self._lock = threading.Lock()

    def _call(
        self, method: str, start: int, path: str, deadline: float, **kw: Any
    ) -> tuple[int, httpx.Response]:
        """Send to worker ``start``, moving to the next on a dead connection or a 5xx."""
        i = start
        while True:
            worker = self.workers[i % len(self.workers)]
            try:
                res = httpx.request(method, worker.url + path, timeout=120, **kw)
                if res.status_code < 500 and res.status_code != 409:
                    return i % len(self.workers), res
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(path)
            i += 1
            time.sleep(0.2 + random.random() * 0.3)

    def _final(self, start: int, thread_id: str, deadline: float, key: str) -> dict[str, Any]:
        while True:
            _, res = self._call("GET", start, f"/runs/{thread_id}", deadline, headers=self.approver)
            view = res.json()
            self.last[key] = {
                "thread_id": thread_id,
                **{k: view.get(k) for k in ("status", "resumable", "outcome", "error")},
            }
            if view.get("status") not in (None, "running") and not view.get("resumable"):
                return dict(view)
            if time.monotonic() > deadline:
                raise TimeoutError(thread_id)
            time.sleep(0.2)

    def job(self, n: int, message: str, repeat: bool, key: str, timeout_s: float) -> float:
        """One submission (under ``key``) to its final status; its latency in ms.

        Raises TimeoutError when it got there in ``timeout_s``; sent again with the same
        key, it carries on the same run.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        headers = {**self.customer, "Idempotency-Key": key}
        body = {"message": message}
        at, res = self._call("POST", n, "/runs", deadline, json=body, headers=headers)
        view = res.json()
        self.last[key] = {"submitted": res.status_code, "body": str(view)[:300]}
        thread_id = view["thread_id"]
        while view.get("status") == "waiting_approval":
            pending = view["pending_approval"]
            answer = {
                "approval_id": pending["approval_id"],
                "decision": "approve",
                "digest": pending["digest"],
            }
            with self._lock:  # approved once sent: a worker may die before it says so
                self.approved.add(pending["approval_id"])
            # Through the worker that did not answer the submission.
            self._call(
                "POST", at + 1, f"/approvals/{thread_id}", deadline,
                json=answer, headers=self.approver,
            )  # fmt: skip
            view = self._final(at + 1, thread_id, deadline, key)
            if view.get("status") == "waiting_approval" and view["pending_approval"] == pending:
                time.sleep(0.3)  # our answer was cut off with its worker: answer again
        view = self._final(at, thread_id, deadline, key)
        latency = (time.monotonic() - started) * 1000
        if repeat:
            _, again = self._call("POST", at + 1, "/runs", deadline, json=body, headers=headers)
            if again.json().get("thread_id") != thread_id:
                with self._lock:
                    self.replays_wrong += 1
        return latency


def _killer(
    workers: list[_Worker],
    stop: threading.Event,
    kills: list[float],
    note: Callable[[str], None],
    every_s: tuple[float, float],
) -> None:
    """SIGKILL a random worker after a random pause in ``every_s`` (the first after a
    third of one), and start it again on its port; until ``stop``."""
    wait = random.uniform(*every_s) / 3
    while not stop.wait(wait):
        wait = random.uniform(*every_s)
        victim = random.choice(workers)
        victim.kill()
        kills.append(time.monotonic())
        note(f"killed worker on port {victim.port}")
        victim.start()
        note(f"worker on port {victim.port} is back")


def _duplicates(effects: list[dict[str, Any]], approved: int) -> int:
    keys = Counter(str(e.get("idempotency_key")) for e in effects)
    return sum(c - 1 for c in keys.values()) + max(0, len(keys) - approved)


def _round(
    graph: str,
    module: Any,
    db_url: str,
    redis_url: str,
    workers: int,
    clients: int,
    requests: int,
    base: Settings,
    note: Callable[[str], None],
    kill_every_s: tuple[float, float],
) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="agentflow-load-"))
    for shared in ("heads", "signing"):
        if (base.data_dir / shared).exists():  # the caller's trained heads and their key
            (data / shared).symlink_to((base.data_dir / shared).resolve())
    tokens = {_CUSTOMER: uuid.uuid4().hex, _APPROVER: uuid.uuid4().hex}
    env = {
        **os.environ,
        "AGENTFLOW_DATA_DIR": str(data),
        "AGENTFLOW_DATABASE_URL": db_url,
        "AGENTFLOW_REDIS_URL": redis_url,
        "AGENTFLOW_NAMESPACE": f"load{uuid.uuid4().hex[:8]}",
        "AGENTFLOW_LEASE_SECONDS": "5",
        "AGENTFLOW_RECOVERY_SECONDS": "1",
        "AGENTFLOW_N_THREADS": "1",  # one core per worker: the workers are the parallelism
        "AGENTFLOW_TOKENS": json.dumps(
            {
                _CUSTOMER: {"sha256": hash_token(tokens[_CUSTOMER]), "scopes": ["run", "read"]},
                _APPROVER: {"sha256": hash_token(tokens[_APPROVER]), "scopes": ["read", "approve"]},
            }
        ),
    }
    pool = [_Worker(graph, env) for _ in range(workers)]
    messages = list(module.load_workload())
    rng = random.Random(workers * 1000 + clients)
    tag = uuid.uuid4().hex[:8]
    jobs = [
        (n, messages[n % len(messages)], rng.random() < _REPEAT_SHARE, f"load-{tag}-{n}")
        for n in range(requests)
    ]
    driver = _Driver(pool, tokens)
    latencies: list[float] = []
    lost: list[str] = []
    kills: list[float] = []
    stop = threading.Event()
    try:
        for worker in pool:
            worker.start()
        note(f"{workers} worker(s) up; {clients} clients, {requests} submissions")
        killer = threading.Thread(
            target=_killer, args=(pool, stop, kills, note, kill_every_s), daemon=True
        )
        started = time.monotonic()
        killer.start()
        late = []
        with ThreadPoolExecutor(clients) as ex:
            futures = [ex.submit(driver.job, *job, _JOB_TIMEOUT_S) for job in jobs]
            for (job, future), done in zip(zip(jobs, futures, strict=True), count(1)):
                try:
                    latencies.append(future.result())
                except Exception:  # not final in time: looked at again once kills stop
                    late.append(job)
                if done % 20 == 0:
                    note(f"{done}/{requests} done, {len(late)} late, {len(kills)} kills")
        elapsed = time.monotonic() - started
        stop.set()
        killer.join(timeout=400)
        # Lost is what never gets there: the late ones are sent again (same key, so the
        # same run) with no more kills, and given time for leases to end and recovery.
        for n, message, _repeat, key in late:
            try:
                driver.job(n, message, False, key, _GRACE_S)
            except Exception:
                lost.append(key)
    finally:
        stop.set()
        for worker in pool:
            worker.stop()
    effects = module.effects(data)
    return {
        "workers": workers,
        "clients": clients,
        "submissions": requests,
        "runs_per_s": round(len(latencies) / elapsed, 3),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(statistics.quantiles(latencies, n=20)[-1], 1)
        if len(latencies) > 1
        else None,
        "approved": len(driver.approved),
        "effects": len(effects),
        "duplicates": _duplicates(effects, len(driver.approved)),
        "replays_not_the_first_run": driver.replays_wrong,
        "late": len(late),
        "lost": len(lost),
        "lost_at": [driver.last.get(key, {}) for key in lost[:5]],
        "kills": len(kills),
        "seconds": round(elapsed, 1),
        "data_dir": str(data),
    }


def run(
    graph: str = "graphs/support.py",
    *,
    workers: tuple[int, ...] = (1, 2),
    clients: tuple[int, ...] = (4,),
    requests: int = 100,
    database_url: str | None = None,
    redis_url: str | None = None,
    kill_every_s: tuple[float, float] = (8.0, 20.0),
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Drive ``graph`` with every (workers, clients) pair; a JSON-ready report.

    A worker is killed after a pause drawn from ``kill_every_s`` (the first after a third
    of one), again and again until the round ends.
    """
    say = note or (lambda msg: print(msg, file=sys.stderr, flush=True))
    module = load_graph_module(graph)
    if not (hasattr(module, "load_workload") and hasattr(module, "effects")):
        raise ConfigurationError(
            f"{graph} has no load_workload() and effects(data_dir)",
            hint="define both in the graph module (see graphs/support.py)",
        )
    base = Settings()
    rounds = []
    with ExitStack() as stack:
        pg = database_url or stack.enter_context(local_postgres())
        redis = redis_url or stack.enter_context(local_redis())
        for n in workers:
            for c in clients:
                name = f"load_{n}w_{c}c_{uuid.uuid4().hex[:6]}"
                with psycopg.connect(pg, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                db = pg.rsplit("/", 1)[0] + f"/{name}"
                setup_savers(db)
                Ledger(db).setup()
                say(f"round: {n} worker(s), {c} clients")
                rounds.append(
                    _round(graph, module, db, redis, n, c, requests, base, say, kill_every_s)
                )
    by = {(r["workers"], r["clients"]): r["runs_per_s"] for r in rounds}
    scaling = {
        f"{c}_clients": round(by[(2, c)] / by[(1, c)], 3)
        for c in clients
        if (1, c) in by and (2, c) in by and by[(1, c)]
    }
    return {
        "graph": graph,
        "cores": os.cpu_count(),
        "rounds": rounds,
        "scaling_1_to_2_workers": scaling,
        "duplicates": sum(r["duplicates"] for r in rounds),
        "lost": sum(r["lost"] for r in rounds),
        "kills": sum(r["kills"] for r in rounds),
    }
