"""The support agent's extractors: the fields each flow needs, pulled from a message.

Rules for order ids, amounts and addresses (an address must be complete to be written);
the cancellation flow uses the GGUF's schema extraction. Every extractor returns the
fields and the decisions that produced them, for the ledger.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel

from agentflow.decision import Decision
from agentflow.errors import AgentflowError
from agentflow.settings import Settings
from graphs.support_store import DEMO_CUSTOMER, store

__all__ = [
    "CancelRequest",
    "extract_address",
    "extract_cancel",
    "extract_order",
    "extract_refund",
    "find_address",
]

_ORDER = re.compile(r"(?<![\w$])#?([A-Z]\d{4,6}|\d{5,6})\b", re.IGNORECASE)
_ORDER_WORD = re.compile(r"order(?:\s+(?:no\.?|number|id))?[\s:]*$", re.I)
_MONEY = re.compile(
    r"\$\s?(\d{1,6}(?:[.,]\d{2})?)|(\d{1,6}(?:[.,]\d{2})?)\s?(?:dollars|usd|eur|€|£)", re.I
)
# An address the flow may write must be complete: a street (or PO box) and a postcode.
# Anything less ("it's 12C not 21C") is a correction the flow asks the customer to spell out.
_STREET_WORD = re.compile(
    r"\b(?:st|street|ave|avenue|rd|road|dr|drive|ln|lane|ct|court|blvd|boulevard|pkwy|"
    r"parkway|way|row|pl|place|cir|circle|ter|terrace|hwy|highway|sq|square|cres|crescent|"
    r"close|grove|walk|rue|jalan|calle|via|strasse|straße|box)\b",
    re.I,
)
_POSTCODE = re.compile(
    r"\b\d{4,5}(?:-\d{4})?\b|\b[A-Z]\d[A-Z] ?\d[A-Z]\d\b|\b[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}\b"
)
_ADDRESS_START = re.compile(
    r"(?:\b(?:Unit|Suite|Apt|Flat|Apartment)\s+\w+,\s+)?"
    r"(?:\bP\.?\s?O\.?\s+Box\s+\d+|(?<![\w#$.,-])\d{1,5}[A-Za-z]?(?=\s+[A-Z]))"
)
_ADDRESS_END = re.compile(
    r"\.(?:\s|$)|[?!\n;]|\s+(?:not|instead|please|pls|thanks|thank you|thx|asap|before|by)\b"
    r"|,\s+(?!(?:apt|unit|suite|floor|ste|fl)\b)[a-z]|\s+-\s+|$"
)
_OLD_ADDRESS = re.compile(
    r"(?:instead of|not|from|old(?: address| one)?(?: is| was)?|wrote|typed|(?:still )?shows"
    r"|currently(?: is| says)?|on file(?: is)?)\s*:?\s*$",
    re.I,
)


class CancelRequest(BaseModel):
    """What the cancellation flow extracts from a message."""

    plan: Literal["Basic", "Plus", "Pro", "Team"] | None = None
    """Plan named in the message, if any."""
    when: Literal["now", "end_of_period"] = "end_of_period"
    """Whether the customer wants it to stop now or at renewal."""
    reason: str | None = None
    """Why they leave, in their words."""


_CANCEL_PREFIX = (
    "Extract the cancellation request as JSON.\n"
    "Message: Please cancel my Pro plan right away, too expensive.\n"
    '{"plan": "Pro", "when": "now", "reason": "too expensive"}\n'
    "Message: I'd like to stop my membership when the month ends.\n"
    '{"plan": null, "when": "end_of_period", "reason": null}\n'
)


def _rule(field: str, value: Any, why: str, text: str) -> Decision[Any]:
    return Decision[Any](
        role="extractor",
        value={field: value},
        confidence=1.0,
        source="rule",
        latency_ms=0.0,
        rationale=why,
        input=text,
    )


def find_address(text: str) -> str | None:
    """The new address in a message: the first street address or PO box with a postcode
    that the message does not name as the old one ("instead of ...", "not ...")."""
    for start in _ADDRESS_START.finditer(text):
        if _OLD_ADDRESS.search(text[max(0, start.start() - 20) : start.start()]):
            continue
        end = _ADDRESS_END.search(text, start.end())
        span = text[start.start() : end.start() if end else len(text)].strip(" ,:-")
        street = _STREET_WORD.search(span)
        if street and len(span.split()) >= 3 and _POSTCODE.search(span, street.end()):
            return span
    return None


def _order_id(
    text: str, customer: dict[str, Any], skip: str | None = None
) -> tuple[str | None, Decision[Any]]:
    scan = text.replace(skip, " ") if skip else text  # numbers inside the address are not ids
    ids = list(_ORDER.finditer(scan))
    # An id written "#62590" or right after "order" beats a bare number (a zip code, say).
    marked = [
        m
        for m in ids
        if not m.group(1).isdigit()
        or m.group(0).startswith("#")
        or _ORDER_WORD.search(scan[max(0, m.start() - 12) : m.start()])
    ]
    found = marked or ids
    if found:
        oid = found[0].group(1).upper()
        return oid, _rule("order_id", oid, "order id in message", text)
    latest = store().latest_order(customer.get("email", DEMO_CUSTOMER))
    oid = latest["order_id"] if latest else None
    return oid, _rule("order_id", oid, "no id in message: customer's latest order", text)


def extract_order(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    oid, decision = _order_id(text, customer)
    return {"order_id": oid}, [decision]


def extract_address(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    address = find_address(text)
    oid, decision = _order_id(text, customer, skip=address)
    why = "street and postcode in the message" if address else "no complete address in message"
    return {"order_id": oid, "address": address}, [decision, _rule("address", address, why, text)]


def extract_refund(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    fields, decisions = extract_order(text, customer)
    money = _MONEY.search(text)
    amount: int | None
    if money:
        amount = round(float((money.group(1) or money.group(2)).replace(",", ".")) * 100)
    else:
        order = store().order(fields["order_id"]) if fields["order_id"] else None
        amount = order["total_cents"] if order else None
    fields.update(amount_cents=amount, reason=text[:200])
    decisions.append(_rule("amount_cents", amount, "amount in message, else the order total", text))
    return fields, decisions


def extract_cancel(
    text: str, customer: dict[str, Any], settings: Settings | None = None
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    from agentflow.models.gguf import load_gguf

    email = customer.get("email", DEMO_CUSTOMER)
    try:
        decision = load_gguf(settings or Settings()).extract(
            "extractor", _CANCEL_PREFIX, text, CancelRequest
        )
        req = CancelRequest.model_validate(decision.value)
        decisions: list[Decision[Any]] = [decision]
    except AgentflowError as exc:
        req, decisions = CancelRequest(), [_rule("cancel", None, f"extraction failed: {exc}", text)]
    sub = store().subscription(email)
    # The account is the source of truth for which plan is active; the message only says when.
    plan = sub["plan"] if sub else req.plan
    if req.plan and sub and req.plan != sub["plan"]:
        decisions.append(_rule("plan", plan, f"message says {req.plan}, account has {plan}", text))
    return {"email": email, "plan": plan, "effective": req.when, "reason": req.reason}, decisions
