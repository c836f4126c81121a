"""The support agent's extractors: the fields each flow needs, pulled from a message.

Rules for order ids, amounts and addresses (an address must be complete to be written,
and is never allowed to run on into another request); the cancellation flow reads when
to cancel from the message's own words, else from the GGUF's schema extraction. Every
field comes with a decision whose confidence is calibrated on the labelled extractions
in ``data/support_extractions.jsonl``, per kind of evidence (see
:mod:`agentflow.extraction`); a field nobody was confident about is confirmed before a
write runs on it. ``agentflow eval extract`` measures and refits the calibration.
"""

from __future__ import annotations

import hashlib
import logging
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from agentflow import AgentflowError, Decision, FieldCalibration, Settings, probability_bin
from graphs.support_store import DATA, DEMO_CUSTOMER, store

__all__ = [
    "CALIBRATION",
    "LABELLED",
    "CancelRequest",
    "calibration",
    "calibration_key",
    "extract_address",
    "extract_cancel",
    "extract_order",
    "extract_refund",
    "extractors",
    "find_address",
]

_log = logging.getLogger(__name__)

LABELLED = DATA / "support_extractions.jsonl"
"""The labelled extractions the confidences are measured on."""
CALIBRATION = DATA / "support_extract_calibration.json"
"""Where ``agentflow eval extract --write-calibration`` keeps the measured counts."""

_ORDER = re.compile(r"(?<![\w$])#?([A-Z]\d{4,6}|\d{5,6})\b", re.IGNORECASE)
_ORDER_WORD = re.compile(r"order(?:\s+(?:no\.?|number|id))?[\s:]*$", re.I)
_MONEY = re.compile(
    r"(?:[$€£]|\b(?:usd|eur|gbp|cad|aud)\s?)\s?(\d{1,6}(?:[.,]\d{2})?)\b"
    r"|\b(\d{1,6}(?:[.,]\d{2})?)\s?(?:dollars|bucks|usd|eur|euros?|gbp|pounds|€|£)",
    re.I,
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
    r"|\b[A-Z]\d{2} [A-Z\d]{4}\b"
)
# Continental order: street name, then number, then postcode and city
# ("Keizersgracht 221, 1016 DV Amsterdam", "Calle de Alcalá 120, 3º B, 28009 Madrid").
_CONTINENTAL = re.compile(
    r"\b[A-ZÀ-Ý][a-zà-ÿß.'-]+(?:\s[A-Za-zÀ-ÿß.'-]+){0,3}\s\d{1,4}[a-zA-Z]?,\s(?:[^,\n]{1,12},\s)?"
    r"\d{4,5}(?:\s[A-Z]{2})?\s[A-ZÀ-Ý][\wÀ-ÿ-]+(?:\s[A-Z][\wÀ-ÿ-]+)?"
)
_ADDRESS_START = re.compile(
    r"(?:\b(?:Unit|Suite|Apt|Flat|Apartment)\s+\w+,\s+)?"
    r"(?:\bP\.?\s?O\.?\s+Box\s+\d+|(?<![\w#$.,-])\d{1,5}[A-Za-z]?(?=\s+[A-Z]))"
)

# Another request after the address ("... E1 1AA and refund $30 for order 58812") ends it.
_NEXT_REQUEST = (
    r"|(?i:\s+(?:and|also|plus|then|&)\s+(?:also\s+)?(?:please\s+|can you\s+|could you\s+)?"
    r"(?:refund|cancel|change|update|send|check|tell|where|what|when|give|issue|stop|add|"
    r"let|i|i'd|i'm|my|pay|credit|track)\b)"
)
_ADDRESS_END = re.compile(
    r"\.(?:\s|$)|[?!\n;]|\s+(?:not|instead|please|pls|thanks|thank you|thx|asap|before|by"
    r"|now|for|until|till|while)\b"
    r"|,\s+(?!(?:apt|unit|suite|floor|ste|fl)\b)[a-z]|\s+[-–—]\s+" + _NEXT_REQUEST + r"|$"
)
# Words no street address contains: a span holding them has swallowed another request.
_NOT_ADDRESS = re.compile(
    r"\$|\b(?:refund|cancel|subscription|charge|money back|order|tracking|invoice)\b", re.I
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


# When to cancel, in the customer's words. The last phrase written wins: a reply that
# corrects an earlier line ("no, end it right now") comes after it.
_WHEN_NOW = re.compile(
    r"\b(?:right (?:now|away)|immediately|immediate(?:ly)?|effective (?:now|today|immediately)|"
    r"straight away|at once|asap|as soon as possible|today|this (?:minute|instant)|"
    r"(?:cancel|stop|end|terminate|close)\w*(?: (?:it|this|that|my \w+(?: plan| subscription)?))?"
    r" now|now|starting (?:now|today)|from today|from this (?:moment|minute|day)(?: on)?)\b",
    re.I,
)
_WHEN_END = re.compile(
    r"\b(?:(?:at|by|after|until|till|from) the end of (?:the|this|my|each|current|the current)"
    r"(?: \w+)? (?:month|period|cycle|term|year|billing)|end of (?:the |this |my )?(?:month|"
    r"billing|period|cycle|term)|(?:when|once) (?:the|this|my) (?:current )?(?:month|period|"
    r"cycle|term|subscription|plan|billing \w+) (?:ends|is up|runs out|finishes|expires)|"
    r"(?:at|on|before|upon) (?:the )?(?:next )?renewal|(?:don'?t|do not|not|no longer) "
    r"(?:want (?:it )?to )?(?:auto-?)?renew|not to renew|stop (?:the )?auto-?renew\w*|"
    r"(?:before|prior to) (?:the|my) next (?:charge|payment|bill|billing|renewal|invoice)|"
    r"no more (?:charges|payments|bills) after|(?:keep|use) it (?:till|until|through)|"
    r"(?:till|until|through) the end|month is up|"
    r"(?:period|cycle|month|term) (?:is over|ends|is up|runs out|finishes)|"
    r"(?:don'?t|do not|doesn'?t|won'?t|not)\b[\w\s]{0,25}\brenew|(?:switch|turn)\w* off "
    r"(?:the |my )?auto[- ]?renew\w*|(?:from|before|after) (?:the |my )?next (?:billing date|"
    r"renewal|payment|charge|bill)|when it renews|not (?:be )?charged again)\b",
    re.I,
)


@cache
def calibration_key() -> dict[str, str]:
    """What the shipped calibration must have been measured with: these rules and data."""
    rules = Path(__file__).read_bytes()
    data = LABELLED.read_bytes() if LABELLED.is_file() else b""
    return {
        "rules_sha256": hashlib.sha256(rules).hexdigest(),
        "data_sha256": hashlib.sha256(data).hexdigest(),
    }


@cache
def calibration() -> FieldCalibration:
    """The shipped calibration, or an empty one (nothing trusted) when it is stale."""
    measured = FieldCalibration.load(CALIBRATION) if CALIBRATION.is_file() else None
    if measured is not None and measured.matches(calibration_key()):
        return measured
    _log.warning(
        "%s was not measured with these rules and labelled data: every extracted field will "
        "be confirmed with the customer until `agentflow eval extract --write-calibration` "
        "measures them again",
        CALIBRATION,
    )
    return FieldCalibration()


def _rule(field: str, value: Any, why: str, text: str) -> Decision[Any]:
    """A fact the message does not decide (the account's plan, the customer's email)."""
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
    that the message does not name as the old one ("instead of ...", "not ..."), and that
    holds nothing an address never holds (an amount, "refund", "order")."""
    for start in _ADDRESS_START.finditer(text):
        if _OLD_ADDRESS.search(text[max(0, start.start() - 20) : start.start()]):
            continue
        end = _ADDRESS_END.search(text, start.end())
        span = text[start.start() : end.start() if end else len(text)]
        # Nothing after a word no address holds is part of the address.
        span = _NOT_ADDRESS.split(span, maxsplit=1)[0].strip(" ,:-–—")
        street = _STREET_WORD.search(span)
        if street and len(span.split()) >= 3 and _POSTCODE.search(span, street.end()):
            return span
    for match in _CONTINENTAL.finditer(text):
        if not _OLD_ADDRESS.search(text[max(0, match.start() - 20) : match.start()]):
            return match.group(0)
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
    if marked or ids:
        oid = (marked or ids)[0].group(1).upper()
        return oid, calibration().decide("order_id", oid, "marked" if marked else "bare", text)
    latest = store().latest_order(customer.get("email", DEMO_CUSTOMER))
    oid = latest["order_id"] if latest else None
    return oid, calibration().decide("order_id", oid, "default:latest-order", text)


def extract_order(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    """The order a message is about: the id it names, else the customer's latest order."""
    oid, decision = _order_id(text, customer)
    return {"order_id": oid}, [decision]


def extract_address(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    """The order and its complete new address (None: the flow asks for it)."""
    address = find_address(text)
    oid, decision = _order_id(text, customer, skip=address)
    evidence = "street+postcode" if address else "default:none"
    return {"order_id": oid, "address": address}, [
        decision,
        calibration().decide("address", address, evidence, text),
    ]


def extract_refund(
    text: str, customer: dict[str, Any]
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    """The order and the amount asked back (none named: the order's total)."""
    fields, decisions = extract_order(text, customer)
    # Of several amounts, the last is the one asked back ("I paid $89 ... so $20 please").
    money = ([None, *_MONEY.finditer(text)])[-1]
    amount: int | None
    if money:
        amount = round(float((money.group(1) or money.group(2)).replace(",", ".")) * 100)
    else:
        order = store().order(fields["order_id"]) if fields["order_id"] else None
        amount = order["total_cents"] if order else None
    fields.update(amount_cents=amount, reason=text[:200])
    evidence = "money" if money else "default:order-total"
    decisions.append(calibration().decide("amount_cents", amount, evidence, text))
    return fields, decisions


def _when_phrase(text: str) -> Literal["now", "end_of_period"] | None:
    found = [(m.start(), "now") for m in _WHEN_NOW.finditer(text)]
    found += [
        (m.start(), "end_of_period")
        for m in _WHEN_END.finditer(text)
        # "Not at the end of the month, NOW" rules the end out.
        if not re.search(r"\bnot\s+$", text[max(0, m.start() - 5) : m.start()], re.I)
    ]
    return max(found)[1] if found else None  # type: ignore[return-value]


def _when(text: str, gguf: Decision[Any] | None, req: CancelRequest) -> Decision[Any]:
    """When to cancel: the message's own phrase, else the GGUF's reading of it.

    The GGUF's evidence names the model and how sure it was, so a calibration measured
    with another model, or never measured at that probability, is not trusted.
    """
    phrase = _when_phrase(text)
    if phrase is not None:
        return calibration().decide("effective", phrase, f"phrase:{phrase}", text)
    if gguf is None:
        return calibration().decide("effective", req.when, "default:unstated", text)
    p = gguf.scores.get("when", gguf.confidence)
    sha = (gguf.model.sha256 or "")[:12] if gguf.model else ""
    evidence = f"gguf:{sha}:{probability_bin(p)}"
    return calibration().decide(
        "effective", req.when, evidence, text, source="slm:gguf", model=gguf.model
    )


def extract_cancel(
    text: str, customer: dict[str, Any], settings: Settings | None = None
) -> tuple[dict[str, Any], list[Decision[Any]]]:
    """The customer's plan (from the account) and when to cancel it (from the message)."""
    from agentflow.models.gguf import load_gguf

    email = customer.get("email", DEMO_CUSTOMER)
    gguf: Decision[Any] | None = None
    try:
        gguf = load_gguf(settings or Settings()).extract(
            "extractor", _CANCEL_PREFIX, text, CancelRequest
        )
        req = CancelRequest.model_validate(gguf.value)
        decisions: list[Decision[Any]] = [gguf]
    except AgentflowError as exc:
        req, decisions = CancelRequest(), [_rule("cancel", None, f"extraction failed: {exc}", text)]
    sub = store().subscription(email)
    # The account is the source of truth for which plan is active; the message only says when.
    plan = sub["plan"] if sub else req.plan
    if req.plan and sub and req.plan != sub["plan"]:
        decisions.append(_rule("plan", plan, f"message says {req.plan}, account has {plan}", text))
    when = _when(text, gguf, req)
    decisions.append(when)
    fields = {"email": email, "plan": plan, "effective": when.value["effective"]}
    return {**fields, "reason": req.reason}, decisions


def extractors(settings: Settings | None = None) -> dict[str, Any]:
    """Each flow's extractor, for ``agentflow eval extract``."""
    return {
        "order_status": extract_order,
        "change_address": extract_address,
        "refund": extract_refund,
        "cancel_subscription": lambda text, customer: extract_cancel(text, customer, settings),
    }
