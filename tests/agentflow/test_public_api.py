"""Pin the public interface: every exported name resolves, is documented, and the
documented module boundaries hold (the core never imports the rooms above it)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import agentflow


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in agentflow.__all__:
        obj = getattr(agentflow, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (getattr(obj, "__doc__", None) or "").strip(), f"{name} has no docstring"


def test_core_imports_nothing_from_the_rooms_above() -> None:
    code = (
        "import sys, agentflow, agentflow.models.registry, agentflow.models.head\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('nodes', 'tools', 'checkpoints', 'graphs')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_error_tree_has_one_root_and_every_error_says_what_to_do() -> None:
    import agentflow.errors as errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, agentflow.AgentflowError)
    assert "fix:" in str(agentflow.StoreUnavailableError("redis down"))
