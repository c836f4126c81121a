"""`agentflow serve`: prints where it listens, serves the API, and makes approver tokens.

The server runs as a real subprocess on the model-free approvals demo graph, so this
costs seconds; the support agent behind the same app is covered by test_api.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from agentflow.cli import app
from agentflow.server.auth import hash_token
from checkpoints.ledger import Ledger
from checkpoints.savers import setup_savers

REPO = Path(__file__).resolve().parents[2]


def test_new_token_prints_a_token_and_only_its_hash_for_the_settings() -> None:
    result = CliRunner().invoke(
        app, ["serve", "--new-token", "sam"], env={"AGENTFLOW_APPROVER_TOKENS": "{}"}
    )
    assert result.exit_code == 0, result.output
    token = re.search(r"token for sam \(shown once, give it to them\): (\S+)", result.output)
    assert token is not None, result.output
    line = re.search(r"AGENTFLOW_APPROVER_TOKENS='(.+)'", result.output)
    assert line is not None and json.loads(line.group(1)) == {"sam": hash_token(token.group(1))}
    assert result.output.count(token.group(1)) == 1


def _wait_for_url(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[str, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            pytest.fail(f"agentflow serve exited ({proc.poll()}):\n{''.join(seen)}")
        seen.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1), seen
    pytest.fail(f"agentflow serve printed no address in {timeout:.0f} s:\n{''.join(seen)}")


def test_serve_prints_its_address_and_answers(tmp_path: Path, valkey_server: Any) -> None:
    db = f"sqlite:///{tmp_path}/agentflow.db"
    setup_savers(db)
    Ledger(db).setup()
    env = {
        **os.environ,
        "AGENTFLOW_DATA_DIR": str(tmp_path / "af"),
        "AGENTFLOW_DATABASE_URL": db,
        "AGENTFLOW_REDIS_URL": valkey_server.url,
        "AGENTFLOW_APPROVER_TOKENS": json.dumps({"sam": hash_token("t0ken")}),
        "COLUMNS": "200",  # one line per message, whatever the terminal
    }
    agentflow = Path(sys.executable).parent / "agentflow"
    proc = subprocess.Popen(
        [str(agentflow), "serve", "--graph", "graphs/approvals_demo.py", "--port", "0"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url, _ = _wait_for_url(proc)
        assert httpx.get(f"{url}/health").json() == {"ok": True, "graph": "approvals_demo"}
        assert "Pending approvals" in httpx.get(f"{url}/").text
        run = httpx.post(
            f"{url}/runs", json={"message": "send $5 to kim@example.com"}, timeout=30
        ).json()
        assert run["status"] == "waiting_approval", run
        p = run["pending_approval"]
        answer = {"approval_id": p["approval_id"], "decision": "approve", "digest": p["digest"]}
        done = httpx.post(
            f"{url}/approvals/{run['thread_id']}",
            json=answer,
            headers={"Authorization": "Bearer t0ken"},
            timeout=30,
        ).json()
        assert done["status"] == "done", done
        payments = (tmp_path / "af" / "approvals_demo_payments.jsonl").read_text().splitlines()
        assert [json.loads(line)["to"] for line in payments] == ["kim@example.com"]
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal
        proc.wait(timeout=20)
