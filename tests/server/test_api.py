"""The HTTP API on the real support agent: runs, state, pending approvals, answers.

Every refused answer (no token, a stranger's token, impersonation, a wrong digest, an
unknown approval, malformed JSON) must get a clear 4xx JSON answer and change nothing:
neither the thread's checkpoint nor the back office's refund table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentflow.runtime import AgentRuntime
from agentflow.server.traces import TraceLinks
from agentflow.settings import Settings
from agentflow.tracing import trace_id_for
from tests.server.conftest import TRACE_BASE, SupportEnv, auth, refund_count

REFUND = "Order 58812 arrived damaged, I want a refund of $25"


def _auth(name: str = "sam") -> dict[str, str]:
    return auth(name)


def _waiting_refund(client: TestClient, message: str = REFUND) -> dict[str, Any]:
    res = client.post("/runs", json={"message": message}, headers=auth("alex"))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["status"] == "waiting_approval", body
    return body


def _fingerprint(runtime: AgentRuntime, env: SupportEnv, thread_id: str) -> tuple[Any, ...]:
    """What a refused answer must not change: the checkpoint, its values, the refunds."""
    snap = runtime.graph.get_state({"configurable": {"thread_id": thread_id}})
    return (snap.config["configurable"]["checkpoint_id"], repr(snap.values), refund_count(env))


def _assert_error(res: Any, status: int, *words: str) -> dict[str, Any]:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) >= {"error", "fix"} and body["error"] and body["fix"], body
    for word in words:
        assert word.lower() in body["error"].lower(), body
    return body


def test_openapi_documents_the_routes_and_the_answer_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/runs", "/runs/{thread_id}", "/approvals", "/approvals/{thread_id}"} <= set(
        spec["paths"]
    )
    answer = spec["paths"]["/approvals/{thread_id}"]["post"]
    schema = answer["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"approval_id", "decision", "digest"}
    assert answer["security"] and "HTTPBearer" in spec["components"]["securitySchemes"]
    assert "ErrorBody" in spec["components"]["schemas"]


def test_order_status_run_and_its_state(client: TestClient) -> None:
    res = client.post(
        "/runs", json={"message": "where is my order A10234? still not here"}, headers=auth("alex")
    )
    assert res.status_code == 200, res.text
    run = res.json()
    assert run["route"] == "order_status" and run["status"] == "done"
    view = client.get(f"/runs/{run['thread_id']}", headers=auth("alex")).json()
    assert view["status"] == "done" and view["graph"] == "support"
    assert view["request"] == "where is my order A10234? still not here"
    assert [d["role"] for d in view["decisions"]] == [d["role"] for d in run["decisions"]]
    assert "router" in {d["role"] for d in view["decisions"]}
    assert view["trace_url"] == TRACE_BASE + trace_id_for(run["thread_id"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        ("get", "/runs/t_doesnotexist", {}, 404, ["no thread"]),
        ("get", "/runs/bad%20id!", {}, 422, ["thread_id"]),
        (
            "post",
            "/runs",
            {"content": b'{"message": "hi",', "headers": {"Content-Type": "application/json"}},
            422,
            ["not valid JSON"],
        ),
        ("post", "/runs", {"json": {"text": "hi"}}, 422, ["message"]),
        ("post", "/runs", {"json": {"message": "hi", "graph": "billing"}}, 404, ["billing"]),
        # Whom a run acts for is the token's business, never the body's.
        (
            "post",
            "/runs",
            {"json": {"message": "hi", "customer": {"email": "x@y.z"}}},
            422,
            ["customer"],
        ),
        ("get", "/nowhere", {}, 404, ["not found"]),
    ],
)
def test_bad_requests_get_clear_json_errors(
    client: TestClient,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    words: list[str],
) -> None:
    headers = {**kwargs.pop("headers", {}), **auth("alex")}
    _assert_error(getattr(client, method)(path, headers=headers, **kwargs), status, *words)


def _answer(pending: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "approval_id": pending["approval_id"],
        "decision": "approve",
        "digest": pending["digest"],
        **changes,
    }


REFUSALS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], int, str]] = [
    ("no token", lambda p: {"json": _answer(p)}, 401, "no authorization"),
    (
        "not bearer",
        lambda p: {"json": _answer(p), "headers": {"Authorization": "Basic c2FtOng="}},
        401,
        "bearer",
    ),
    (
        "unknown token",
        lambda p: {"json": _answer(p), "headers": {"Authorization": "Bearer guess"}},
        401,
        "no one here",
    ),
    (
        "no approve scope",
        lambda p: {"json": _answer(p), "headers": _auth("alex")},
        403,
        "'approve' scope",
    ),
    (
        "impersonation",
        lambda p: {"json": _answer(p, approver="eve"), "headers": _auth("sam")},
        403,
        "eve",
    ),
    (
        "wrong digest",
        lambda p: {"json": _answer(p, digest="0" * 64), "headers": _auth()},
        409,
        "digest",
    ),
    (
        "unknown approval",
        lambda p: {"json": _answer(p, approval_id="apr_nope"), "headers": _auth()},
        404,
        "apr_nope",
    ),
    (
        "malformed json",
        lambda p: {"content": b'{"approval_id": "x", "decision": ', "headers": _auth()},
        422,
        "not valid JSON",
    ),
    (
        "bad decision",
        lambda p: {"json": _answer(p, decision="maybe"), "headers": _auth()},
        422,
        "decision",
    ),
    (
        "edit without args",
        lambda p: {"json": _answer(p, decision="edit"), "headers": _auth()},
        422,
        "arguments",
    ),
]


@pytest.mark.parametrize(
    ("case", "request_kwargs", "status", "word"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_refused_answers_change_nothing(
    client: TestClient,
    runtime: AgentRuntime,
    support_env: SupportEnv,
    case: str,
    request_kwargs: Callable[[dict[str, Any]], dict[str, Any]],
    status: int,
    word: str,
) -> None:
    run = _waiting_refund(client)
    thread, pending = run["thread_id"], run["pending_approval"]
    before = _fingerprint(runtime, support_env, thread)
    res = client.post(f"/approvals/{thread}", **request_kwargs(pending))
    _assert_error(res, status, word)
    if status == 401:
        assert res.headers["www-authenticate"] == "Bearer"
    assert _fingerprint(runtime, support_env, thread) == before
    assert runtime.pending(thread) is not None
    refused = [a for a in runtime.ledger.approvals(thread_id=thread) if a.decision == "refused"]
    if status in (403, 404, 409):  # authenticated answers are on the audit trail, by their name
        assert len(refused) == 1 and refused[0].reason, case
        expected = "alex" if case == "no approve scope" else "sam"
        assert refused[0].approver == expected, refused
    if status == 401:  # nobody proven: nothing written in anybody's name
        assert refused == [], refused


def test_approve_runs_the_refund_once_as_the_tokens_owner(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting_refund(client)
    thread, pending = run["thread_id"], run["pending_approval"]
    assert (
        pending["assessment"]["class"] == "irreversible" and pending["args"]["amount_cents"] == 2500
    )
    listed = {p["thread_id"]: p for p in client.get("/approvals", headers=auth("sam")).json()}
    assert listed[thread]["approval_id"] == pending["approval_id"]
    assert listed[thread]["request"] == REFUND and listed[thread]["route"] == "refund"
    assert listed[thread]["approval_valid_s"] == support_env.settings.approval_ttl_seconds
    assert {"router", "consequence_modeler"} <= {d["role"] for d in listed[thread]["decisions"]}

    before = refund_count(support_env, "58812")
    res = client.post(f"/approvals/{thread}", json=_answer(pending), headers=_auth("sam"))
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "done", res.json()
    assert refund_count(support_env, "58812") == before + 1
    answers = [a for a in runtime.ledger.approvals(thread_id=thread) if a.decision == "approve"]
    assert [a.approver for a in answers] == ["sam"]
    assert thread not in {
        p["thread_id"] for p in client.get("/approvals", headers=auth("sam")).json()
    }

    again = client.post(f"/approvals/{thread}", json=_answer(pending), headers=_auth("sam"))
    _assert_error(again, 404, "no pending approval")
    assert refund_count(support_env, "58812") == before + 1
    view = client.get(f"/runs/{thread}", headers=auth("sam")).json()
    assert {a["decision"] for a in view["approvals"]} >= {"approve"}


def test_an_edit_is_assessed_anew_recorded_as_an_edit_and_runs_once(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting_refund(client, "Refund $20 for order A10235 please, it came late")
    thread, pending = run["thread_id"], run["pending_approval"]
    edited = {**pending["args"], "amount_cents": 3000}  # the approver raises it: their call
    before = refund_count(support_env, "A10235")
    res = client.post(
        f"/approvals/{thread}",
        headers=_auth("eve"),
        json=_answer(pending, decision="edit", args=edited),
    )
    assert res.status_code == 200 and res.json()["status"] == "done", res.text
    assert refund_count(support_env, "A10235") == before + 1
    out = [o for o in res.json()["observations"] if o["tool"] == "issue_refund"]
    assert [o["output"]["amount_cents"] for o in out] == [3000]

    rows = runtime.ledger.approvals(thread_id=thread)
    assert [(r.decision, r.approver) for r in rows] == [
        ("requested", None),
        ("edit", "eve"),
        ("requested", None),  # the edited call is a request of its own ...
        ("approve", "eve"),  # ... that the editor's answer granted
    ]
    original, edit, second, granted = rows
    assert edit.approval_id == original.approval_id == pending["approval_id"]
    assert edit.payload["edited_args"]["amount_cents"] == 3000
    assert edit.payload["edited_digest"] == second.digest != original.digest
    assert second.approval_id != original.approval_id
    assert second.payload["edit_of"] == original.approval_id
    assert second.payload["args"]["amount_cents"] == 3000
    assert granted.reason and "edit" in granted.reason
    # The consequence modeler judged the edited call too: one model decision per call, each
    # followed by the money rule's own (a refund moves money: at least irreversible).
    judged = [
        d for d in runtime.ledger.decisions(thread_id=thread) if d.role == "consequence_modeler"
    ]
    assert [d.source for d in judged] == ["slm:encoder", "rule"] * 2, judged
    assert all("moves money" in (d.rationale or "") for d in judged if d.source == "rule")
    assert second.payload["assessment"]["class"] == "irreversible"


def test_an_edit_that_does_not_validate_is_refused(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting_refund(client, "Refund $20 for order A10235 please, it came late")
    thread, pending = run["thread_id"], run["pending_approval"]
    before = _fingerprint(runtime, support_env, thread)
    bad = {**pending["args"], "amount_cents": "lots"}
    res = client.post(
        f"/approvals/{thread}", headers=_auth(), json=_answer(pending, decision="edit", args=bad)
    )
    _assert_error(res, 422, "do not validate")
    assert _fingerprint(runtime, support_env, thread) == before


def test_reject_never_runs_and_a_waiting_thread_takes_no_new_message(
    client: TestClient, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _waiting_refund(client, "I want my money back for order A10234, $12 please")
    thread = run["thread_id"]
    busy = client.post(
        "/runs", json={"message": "hello again", "thread_id": thread}, headers=auth("alex")
    )
    _assert_error(busy, 409, "waiting for approval")
    before = refund_count(support_env)
    res = client.post(
        f"/approvals/{thread}",
        headers=_auth(),
        json=_answer(run["pending_approval"], decision="reject", message="policy"),
    )
    assert res.status_code == 200 and res.json()["status"] == "done", res.text
    assert refund_count(support_env) == before
    answers = [
        (a.decision, a.approver, a.reason) for a in runtime.ledger.approvals(thread_id=thread)
    ]
    assert answers == [("requested", None, None), ("reject", "sam", "policy")]


def test_trace_links_survive_an_unreachable_langfuse(otlp_receiver: Any) -> None:
    settings = Settings(
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key="sk-lf-test",
        langfuse_base_url=otlp_receiver.base_url,
    )
    links = TraceLinks(settings)
    assert links("t_one") is None  # the stand-in answers 404 to the project lookup
    asked = [r for r in otlp_receiver.other_requests if "/projects" in r]
    assert asked, otlp_receiver.other_requests
    assert links("t_two") is None
    assert len([r for r in otlp_receiver.other_requests if "/projects" in r]) == len(
        asked
    )  # no retry storm
    assert TraceLinks(Settings(langfuse_public_key=None, langfuse_secret_key=None))("t_one") is None


def test_a_foreign_host_header_is_refused_before_any_route(client: TestClient) -> None:
    """DNS rebinding: a page at evil.example resolved to 127.0.0.1 sends its own name."""
    for path in ("/approvals", "/runs/t_000000000000", "/"):
        r = client.get(path, headers={"Host": "evil.example:8000", **auth("sam")})
        assert r.status_code == 400 and "evil.example" in r.json()["error"]
    local = client.get("/approvals", headers={"Host": "localhost:8000", **auth("sam")})
    assert local.status_code == 200


def test_a_huge_body_is_refused_unread(client: TestClient, support_env: SupportEnv) -> None:
    before = refund_count(support_env)
    big = b'{"message": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    r = client.post(
        "/runs", content=big, headers={"Content-Type": "application/json", **auth("alex")}
    )
    assert r.status_code == 413 and "larger than" in r.json()["error"]

    def chunks() -> Any:  # no Content-Length: the stream itself is cut off
        for _ in range(20):
            yield b"a" * (1024 * 1024)

    r = client.post(
        "/runs", content=chunks(), headers={"Content-Type": "application/json", **auth("alex")}
    )
    assert r.status_code == 413
    assert refund_count(support_env) == before
