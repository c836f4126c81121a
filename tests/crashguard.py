"""Run pytest so that a native crash still ends in a clear failure naming the test.

A segfault in a native library (llama.cpp, torch) kills the pytest process at once: no
report, no summary, only "Segmentation fault". ``python -m tests.crashguard [pytest args]``
runs pytest in a child with this module loaded as a plugin; the plugin writes the test
that is running and the counts so far to a file after every step, and when the child dies
by a signal the parent prints which test it was and a closing ``N passed, N failed`` line,
and exits non-zero. ``make test`` runs the suite this way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

_FILE_VAR = "AGENTFLOW_CRASHGUARD_FILE"
_state: dict[str, Any] = {"current": None, "passed": 0, "failed": 0, "skipped": 0}


def _write() -> None:
    path = os.environ.get(_FILE_VAR)
    if path:
        # Whole or not at all: the process may die at any instruction.
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(_state))
        os.replace(tmp, path)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    """Note the test about to run, before any of its code does."""
    _state["current"] = nodeid
    _write()


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    """The test is over: a crash from now on is not its fault."""
    _state["current"] = None
    _write()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count outcomes the way pytest's summary does (one per test, errors as failures)."""
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _state[{"passed": "passed", "failed": "failed"}.get(report.outcome, "skipped")] += 1
    elif report.when == "teardown" and report.outcome == "failed":
        _state["failed"] += 1
    _write()


_NATIVE_CRASHES = {"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"}


def _read(state: Path) -> dict[str, Any]:
    try:
        seen = json.loads(state.read_text())
    except (OSError, ValueError):
        return {}
    return seen if isinstance(seen, dict) else {}


def _why(name: str) -> str:
    if name in _NATIVE_CRASHES:
        return (
            "a native library crashed (pytest's faulthandler output above has the Python "
            "stack; `.venv/bin/agentflow models smoke` checks llama.cpp)"
        )
    if name == "SIGKILL":
        return "it was killed from outside (out of memory, or a time limit)"
    return "it was stopped from outside"


def main(args: list[str]) -> int:
    """Run pytest with ``args`` in a child; report a death by signal as a named failure."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        env = {**os.environ, _FILE_VAR: str(state)}
        cmd = [sys.executable, "-m", "pytest", "-p", "tests.crashguard", *args]
        try:
            code = subprocess.run(cmd, env=env, check=False).returncode
        except KeyboardInterrupt:
            return 130
        if code >= 0:
            return code
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        seen = _read(state)
        where = seen.get("current") or "(between tests: before the first or after the last)"
        print(
            f"\nFAILED {where} - the test process died with {name}: {_why(name)}; "
            "no later test ran.",
            flush=True,
        )
        print(f"{seen.get('passed', 0)} passed, {seen.get('failed', 0) + 1} failed", flush=True)
        return 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
