"""The approval page in a real browser (Debian Chromium through Playwright) against uvicorn.

A support-agent refund waits for approval; the approver opens the page, types a token,
and clicks. The run must resume and the refund must be written to the back office
exactly once; a wrong token must be refused on the page with nothing paid.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from agentflow.runtime import AgentRuntime
from agentflow.tracing import trace_id_for
from tests.attacks import record
from tests.server.conftest import TOKENS, TRACE_BASE, SupportEnv, auth, refund_count

ENTRY = "page (Chromium)"


def _refund_waiting(live_url: str, message: str) -> dict[str, Any]:
    run = httpx.post(
        f"{live_url}/runs", json={"message": message}, headers=auth("alex"), timeout=60
    ).json()
    assert run["status"] == "waiting_approval", run
    return run


def _open_page(page: Page, live_url: str, token: str) -> None:
    page.goto(live_url + "/")
    page.fill("#token", token)
    page.click("#use-token")
    expect(page.locator("#status")).to_have_text("Token saved for this tab.")


def test_approving_a_refund_on_the_page_runs_it_once(
    page: Page, live_url: str, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _refund_waiting(live_url, "Order 58812 arrived damaged, I want a refund of $25")
    thread, approval_id = run["thread_id"], run["pending_approval"]["approval_id"]
    before = refund_count(support_env, "58812")

    _open_page(page, live_url, TOKENS["sam"])
    card = page.locator(f'article.approval[data-thread="{thread}"]')
    expect(card.locator(".tool")).to_have_text("issue_refund")
    expect(card.locator(".badge")).to_have_text("irreversible")
    expect(card.locator(".confidence")).to_have_text(re.compile(r"^[01]\.\d\d \(\w"))
    expect(card.locator(".floor")).to_contain_text("declared floor: irreversible")
    expect(card.locator(".validity")).to_contain_text("valid for 24 h once given")
    expect(card.locator(".request")).to_have_text(
        "Order 58812 arrived damaged, I want a refund of $25"
    )
    expect(card.locator("table.decisions tbody tr").first).to_contain_text("router")
    expect(card.locator("a.trace")).to_have_attribute("href", TRACE_BASE + trace_id_for(thread))
    assert json.loads(card.locator("textarea.args").input_value())["amount_cents"] == 2500

    card.locator("button.approve").click()
    expect(page.locator("#status")).to_contain_text(f"approve {approval_id} on {thread}: done")
    expect(card).to_have_count(0)
    assert refund_count(support_env, "58812") == before + 1
    assert runtime.result(thread).status == "done"
    assert [(a.decision, a.approver) for a in runtime.ledger.approvals(thread_id=thread)] == [
        ("requested", None),
        ("approve", "sam"),
    ]
    assert [a.approver for a in runtime.ledger.approvals(thread_id=thread)] == [None, "sam"]


def test_editing_on_the_page_runs_the_edited_arguments(
    page: Page, live_url: str, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _refund_waiting(live_url, "Refund $20 for order A10235 please, it came late")
    thread = run["thread_id"]
    _open_page(page, live_url, TOKENS["eve"])
    card = page.locator(f'article.approval[data-thread="{thread}"]')
    args = json.loads(card.locator("textarea.args").input_value())
    card.locator("textarea.args").fill(json.dumps({**args, "amount_cents": 700}))
    card.locator("button.edit").click()
    expect(page.locator("#status")).to_contain_text(f"on {thread}: done")
    refunds = [
        o["output"] for o in runtime.result(thread).observations if o["tool"] == "issue_refund"
    ]
    assert [r["amount_cents"] for r in refunds] == [700]


def test_a_wrong_token_is_refused_on_the_page_and_nothing_runs(
    page: Page, live_url: str, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _refund_waiting(live_url, "I want my money back for order A10234, $9 please")
    thread = run["thread_id"]
    before = refund_count(support_env)
    page.goto(live_url + "/")
    expect(page.locator("#list")).to_contain_text("Enter your approver token")
    page.fill("#token", "not-anyones-token")
    page.click("#use-token")
    # Without a valid token the page shows nothing that waits: not the request, not the args.
    expect(page.locator("#status")).to_contain_text("401: the bearer token belongs to no one here")
    expect(page.locator("article.approval")).to_have_count(0)
    ok = refund_count(support_env) == before and runtime.pending(thread) is not None
    record("wrong token on the page", ENTRY, ok, "401, nothing shown")
    assert ok
    assert [a.decision for a in runtime.ledger.approvals(thread_id=thread)] == ["requested"]


def test_a_customer_token_on_the_page_sees_only_its_own_thread_and_cannot_approve(
    page: Page, live_url: str, runtime: AgentRuntime, support_env: SupportEnv
) -> None:
    run = _refund_waiting(live_url, "Refund $11 for order A10234, it was late")
    thread = run["thread_id"]
    before = refund_count(support_env)
    _open_page(page, live_url, TOKENS["mallory"])  # another customer: sees none of alex's
    expect(page.locator(f'article.approval[data-thread="{thread}"]')).to_have_count(0)
    record("another customer's approval on the page", ENTRY, True, "not shown")
    _open_page(page, live_url, TOKENS["alex"])  # the owner sees it, may not approve it
    card = page.locator(f'article.approval[data-thread="{thread}"]')
    card.locator("button.approve").click()
    expect(card.locator(".result")).to_contain_text("403: the token of 'alex' does not have")
    ok = refund_count(support_env) == before and runtime.pending(thread) is not None
    record("customer approves own refund on the page", ENTRY, ok, "403")
    assert ok
    refused = [a for a in runtime.ledger.approvals(thread_id=thread) if a.decision == "refused"]
    assert [a.approver for a in refused] == ["alex"]
