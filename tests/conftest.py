"""Shared test set-up: every real service has exactly one fixture module in tests/fixtures/.

Each module there is loaded as a pytest plugin, so a service fixture is defined once and
used by every test that needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# Models are never fetched from a hub, in tests least of all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Decode with the GGUF in a child process before any test: a llama.cpp build that
    crashes on this CPU stops the run here with the fix, not halfway with a segfault."""
    from agentflow.errors import AgentflowError, NativeLibraryError
    from agentflow.models.native import smoke_check

    try:
        smoke_check()
    except NativeLibraryError as exc:
        pytest.exit(f"llama.cpp smoke check failed: {exc}", returncode=3)
    except AgentflowError:
        pass  # no model to decode with: the tests that need one say so themselves


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run browser tests last: pytest-playwright keeps a sync event loop running for the
    rest of the session once a browser starts, and asyncio tests cannot run after that."""
    items.sort(key=lambda item: "browser_type_launch_args" in getattr(item, "fixturenames", ()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the adversarial suite's table and the invariant suites' counts (tests/attacks.py)."""
    from tests.attacks import SUMMARIES, injection_table, table

    lines = table()
    if lines:
        terminalreporter.section("approval attacks")
        for line in lines:
            terminalreporter.write_line(line)
    injected = injection_table()
    if injected:
        terminalreporter.section("prompt injection (real local models)")
        for line in injected:
            terminalreporter.write_line(line)
    if SUMMARIES:
        terminalreporter.section("invariants")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
