"""Crash harness for the exactly-once guarantee (run as a script by test_crash.py).

The parent loads the models once, then forks one child per trial that runs the support
agent's refund path (run -> approval -> approve -> refund) on its own thread and is
SIGKILLed at a random moment; every third trial instead kills the child right after the
refund row is written and before the executor can store the result. A second forked
child then resumes the thread from its checkpoint until it settles; in every second
trial that recovery process is itself SIGKILLed at a random moment, and a third resumes.
The last ``--retention-trials`` trials run with a 2-second store retention and wait past
it before recovering: the store has forgotten the key, the effects journal has not. The parent counts
refund rows per trial in the back office's own SQLite file and prints one JSON report.

Children open their own database connections after the fork: SQLite, Redis and the
savers are never shared across a fork, only the loaded model weights are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import time
from typing import Any


def _child_run(trial: int, inject: bool, retention: bool) -> None:
    if retention:
        os.environ["AGENTFLOW_RETENTION_SECONDS"] = str(_SHORT_RETENTION_S)
    from agentflow.nodes.approval import ApprovalAnswer
    from agentflow.runtime import AgentRuntime
    from graphs import support
    from graphs.support_store import SupportStore

    support.store.cache_clear()
    if inject:
        original = SupportStore.refund

        def refund_then_die(self: SupportStore, *args: Any, **kwargs: Any) -> dict[str, Any]:
            original(self, *args, **kwargs)  # the irreversible effect is done...
            os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies before storing it
            raise AssertionError("unreachable")

        SupportStore.refund = refund_then_die  # type: ignore[method-assign]
    _log("child opening runtime")
    with AgentRuntime.open("graphs/support.py", llm=_llm()) as rt:
        _log("child running")
        res = rt.run(_message(trial), thread_id=f"crash-{trial}")
        _log(f"child ran: {res.status}")
        if res.pending_approval:
            p = res.pending_approval
            rt.answer(
                res.thread_id,
                ApprovalAnswer(
                    approval_id=p["approval_id"],
                    decision="approve",
                    approver="crash-test",
                    digest=p["digest"],
                ),
            )


def _child_recover(trial: int, out_fd: int) -> None:
    from graphs import support

    support.store.cache_clear()
    thread = f"crash-{trial}"
    try:
        _recover(thread, trial, out_fd)
    except BaseException as exc:  # report it in the trial record, not only on stderr
        os.write(
            out_fd,
            json.dumps({"status": "error", "outcome": f"{type(exc).__name__}: {exc}"}).encode(),
        )


def _recover(thread: str, trial: int, out_fd: int) -> None:
    from agentflow.nodes.approval import ApprovalAnswer
    from agentflow.runtime import AgentRuntime

    with AgentRuntime.open("graphs/support.py", llm=_llm()) as rt:
        res = rt.result(thread)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if res.pending_approval:
                p = res.pending_approval
                res = rt.answer(
                    thread,
                    ApprovalAnswer(
                        approval_id=p["approval_id"],
                        decision="approve",
                        approver="crash-test",
                        digest=p["digest"],
                    ),
                )
            elif res.resumable:  # stopped mid-graph (killed, or the key's lease is still held)
                # First: a thread with a checkpoint to go on from is resumed, even one that
                # stopped before its first decision (a new message there is refused).
                time.sleep(0.3)
                res = rt.retry(thread)
            elif not res.decisions:  # killed before the first checkpoint: nothing ran, start again
                res = rt.run(_message(trial), thread_id=thread)
            else:
                break
        os.write(out_fd, json.dumps({"status": res.status, "outcome": res.outcome}).encode())


_SHORT_RETENTION_S = 2


def _llm() -> Any:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    return FakeListChatModel(responses=["We have escalated this to a colleague."])


def _message(trial: int) -> str:
    return f"Order 58812 arrived broken, please refund ${(100 + trial) / 100:.2f} to my card"


def _log(msg: str) -> None:
    if os.environ.get("CRASH_HARNESS_DEBUG"):
        print(f"[{time.monotonic():.2f} pid {os.getpid()}] {msg}", file=sys.stderr, flush=True)


def _fork(target: Any, *args: Any) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            target(*args)
        except BaseException as exc:  # a child must never return into the parent's code
            print(f"child error: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        finally:
            os._exit(code)
    return pid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=0.8)
    parser.add_argument("--retention-trials", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # no intra-op thread pool exists to be broken by fork()
    from agentflow.runtime import AgentRuntime

    with AgentRuntime.open("graphs/support.py", llm=_llm()):  # load + cache models and heads
        pass
    rng = random.Random(args.seed)
    support_db = os.environ["AGENTFLOW_SUPPORT_DB"]
    trials: list[dict[str, Any]] = []
    for trial in range(args.trials):
        retention = trial >= args.trials - args.retention_trials
        inject = trial % 3 == 0 or retention
        _log(f"trial {trial} start")
        pid = _fork(_child_run, trial, inject, retention)
        delay = None if inject else rng.uniform(0.0, args.max_delay)
        if delay is not None:
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status)
        if retention:
            time.sleep(_SHORT_RETENTION_S + 1.5)  # the store's record of the key is gone
        final: dict[str, Any] = {}
        recovery_crashes = 0
        recovery_kills = 0
        for attempt in range(4):  # a recovery process that dies is one more crash: resume again
            read, write = os.pipe()
            rpid = _fork(_child_recover, trial, write)
            os.close(write)
            if attempt == 0 and trial % 2 == 1 and not retention:
                time.sleep(rng.uniform(0.0, args.max_delay))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rpid, signal.SIGKILL)
            _, rstatus = os.waitpid(rpid, 0)
            if os.WIFSIGNALED(rstatus) and os.WTERMSIG(rstatus) == signal.SIGKILL:
                recovery_kills += 1
            final = json.loads(os.read(read, 65536) or b"{}")
            os.close(read)
            if final:
                break
            recovery_crashes += 1
            _log(f"trial {trial}: recovery process died ({rstatus}); resuming again")
        with sqlite3.connect(support_db) as db:
            effects = db.execute(
                "SELECT COUNT(*) FROM refunds WHERE amount_cents = ?", (100 + trial,)
            ).fetchone()[0]
        trials.append(
            {
                "trial": trial,
                "injected": inject,
                "retention": retention,
                "delay": delay,
                "killed": killed,
                "recovery_kills": recovery_kills,
                "effects": effects,
                "recovery_crashes": recovery_crashes,
                **final,
            }
        )
    report = {
        "runs": len(trials),
        "kills": sum(t["killed"] for t in trials) + sum(t["recovery_kills"] for t in trials),
        "kills_after_effect": sum(t["killed"] and t["injected"] for t in trials),
        "kills_during_recovery": sum(t["recovery_kills"] for t in trials),
        "resumed_after_retention": sum(t["retention"] for t in trials),
        "duplicates": sum(max(0, t["effects"] - 1) for t in trials),
        "completed": sum(t.get("status") == "done" for t in trials),
        "flagged_outcome_unknown": sum(t.get("status") == "failed" for t in trials),
        "lost": sum(t.get("status") not in ("done", "failed") for t in trials),
        "recovery_crashes": sum(t["recovery_crashes"] for t in trials),
        "trials": trials,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
