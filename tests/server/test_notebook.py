"""``notebooks/walkthrough.ipynb`` runs top to bottom, offline, in a fresh kernel.

The kernel (python3 from the venv) starts in a temporary folder with the database, data
folder and idempotency store pointed there (trained heads linked from pytest's cache),
so the run touches nothing of the developer's. nbclient raises on the first cell that
errors; the outputs are then checked for what each section promises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fixtures.heads import data_dir_with_heads

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"


def _text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_walkthrough_runs_offline_top_to_bottom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, valkey_server: Any, heads_cache: Path
) -> None:
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(data_dir_with_heads(tmp_path / "af", heads_cache)))
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/agentflow.db")
    monkeypatch.setenv("AGENTFLOW_REDIS_URL", valkey_server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(o.get("output_type") != "error" for c in code for o in c.get("outputs", []))
    text = "\n".join(_text(c) for c in code)
    assert "agent module:" in text and "bookshop.py" in text
    assert "order_status" in text and "gift_card" in text and "waiting_approval" in text
    assert "refused: digest" in text
    assert "gift cards sent before approving: 0" in text
    assert "status: done" in text and "gift cards sent after approving: 1" in text
    assert "approval apr_" in text and "approve  by notebook" in text
    assert "handled without the LLM:" in text and "router" in text
    images = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1
