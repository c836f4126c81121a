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

from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import setup_savers
from agentflow.cli import app
from agentflow.server.auth import hash_token
from agentflow.settings import Settings
from tests.attacks import record

REPO = Path(__file__).resolve().parents[2]


def test_new_token_prints_a_token_and_only_its_hash_for_the_settings() -> None:
    args = ["serve", "--new-token", "kim", "--scopes", "run,read"]
    args += ["--customer", '{"email": "kim@example.com"}']
    result = CliRunner().invoke(app, args, env={"AGENTFLOW_TOKENS": "{}"})
    assert result.exit_code == 0, result.output
    token = re.search(r"token for kim \(shown once, give it to them\): (\S+)", result.output)
    assert token is not None, result.output
    line = re.search(r"AGENTFLOW_TOKENS='(.+)'", result.output)
    assert line is not None, result.output
    entry = json.loads(line.group(1))["kim"]
    assert entry["sha256"] == hash_token(token.group(1))
    assert sorted(entry["scopes"]) == ["read", "run"]
    assert entry["customer"] == {"email": "kim@example.com"}
    assert result.output.count(token.group(1)) == 1
    assert Settings(tokens=json.loads(line.group(1))).tokens["kim"].scopes == {"run", "read"}


def test_new_token_refuses_an_unknown_scope() -> None:
    result = CliRunner().invoke(app, ["serve", "--new-token", "kim", "--scopes", "run,admin"])
    assert result.exit_code == 1 and "--scopes" in result.output, result.output


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


ENTRY = "agentflow serve"


def _attacks(url: str, body: dict[str, Any], token: dict[str, str]) -> None:
    """The network-facing refusals, on the real process (what a browser or script can do)."""
    anonymous = httpx.post(f"{url}/runs", json=body, timeout=30)
    record("no token: POST /runs", ENTRY, anonymous.status_code == 401, "401")
    assert anonymous.status_code == 401, anonymous.text
    listing = httpx.get(f"{url}/approvals", timeout=30)
    record("no token: GET /approvals", ENTRY, listing.status_code == 401, "401")
    assert listing.status_code == 401
    rebound = httpx.get(f"{url}/approvals", headers={"Host": "attacker.example", **token})
    record("DNS-rebinding Host header", ENTRY, rebound.status_code == 400, "400")
    assert rebound.status_code == 400
    big = b'{"message": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    huge = httpx.post(
        f"{url}/runs", content=big, headers={"Content-Type": "application/json", **token}
    )
    record("10 MB body", ENTRY, huge.status_code == 413, "413")
    assert huge.status_code == 413


def test_serve_prints_its_address_and_answers(tmp_path: Path, valkey_server: Any) -> None:
    db = f"sqlite:///{tmp_path}/agentflow.db"
    setup_savers(db)
    Ledger(db).setup()
    env = {
        **os.environ,
        "AGENTFLOW_DATA_DIR": str(tmp_path / "af"),
        "AGENTFLOW_DATABASE_URL": db,
        "AGENTFLOW_REDIS_URL": valkey_server.url,
        "AGENTFLOW_TOKENS": json.dumps(
            {
                "sam": hash_token("t0ken"),  # shorthand: an approver (read, approve)
                "kim": {"sha256": hash_token("k1m"), "scopes": ["run", "read"]},
            }
        ),
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
        body = {"message": "send $5 to kim@example.com"}
        kim = {"Authorization": "Bearer k1m"}
        _attacks(url, body, kim)
        run = httpx.post(f"{url}/runs", json=body, headers=kim, timeout=30).json()
        assert run["status"] == "waiting_approval", run
        p = run["pending_approval"]
        answer = {"approval_id": p["approval_id"], "decision": "approve", "digest": p["digest"]}
        own = httpx.post(f"{url}/approvals/{run['thread_id']}", json=answer, headers=kim)
        record("customer approves own payment", ENTRY, own.status_code == 403, "403")
        assert own.status_code == 403, own.text
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
