"""Graph modules: the Python files that define agents, loaded by path or dotted name.

A graph module is the user's, not the framework's: the runtime, the CLI, the benchmarks
and retraining reach it only through this loader and the functions it may define
(``build``, ``routes``, ``load_workload``, ``reset``, ``effects``; see the README).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from agentflow.errors import ConfigurationError

__all__ = ["load_graph_module"]


def load_graph_module(spec: str) -> ModuleType:
    """Import a graph module from a path (``graphs/support.py``) or a dotted name.

    A file in a package folder (one with ``__init__.py``) is imported under its package's
    name with the package's parent on ``sys.path`` (``graphs/support.py`` ->
    ``graphs.support``), so its absolute imports of its siblings work and a second load
    finds the same module; a loose file is executed afresh under its own name.
    """
    path = Path(spec)
    if path.suffix != ".py":
        return importlib.import_module(spec)
    if not path.is_file():
        raise ConfigurationError(f"graph module {spec} does not exist", hint="check the path")
    resolved = path.resolve()
    folder = resolved.parent
    if not (folder / "__init__.py").is_file():
        module_spec = importlib.util.spec_from_file_location(resolved.stem, resolved)
        if module_spec is None or module_spec.loader is None:
            raise ConfigurationError(f"cannot import {spec}", hint="check that it is a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[resolved.stem] = module
        module_spec.loader.exec_module(module)
        return module
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    name = f"{folder.name}.{resolved.stem}"
    module = importlib.import_module(name)
    if Path(module.__file__ or "").resolve() != resolved:
        raise ConfigurationError(
            f"graph module {spec} is shadowed: {name} is {module.__file__}",
            hint="rename the graph's folder so that it does not clash with an installed package",
        )
    return module
