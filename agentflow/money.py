"""The money rule: a call that moves money or cancels a booking is never routine.

Measured on recorded sessions against an airline back office (tools never seen), the
head called 57% of the calls that charge a card, cancel a reservation or pay for bags
``retry_safe``: names like ``update_reservation_flights`` look like edits, and the fare
difference is in the arguments (a payment method beside a reservation id), not in the
name. :func:`money_signals` reads those signals from the name, the arguments and the
description; :func:`money_floor` turns them into a floor of ``irreversible`` that the
modeler applies like the declared one: it only ever raises a class, never lowers it.

A call moves money when

- its action (the first verb of the name, or one joined by and/then) is a paying verb
  (pay, refund, charge, purchase, settle, ...), or a verb like transfer, credit, book,
  issue or send acting on money (an amount, a currency, a payment method, a money noun);
- it is a write acting on money by name (``issue_refund``, ``create_payout``), commits a
  booking (``confirm_reservation``, ``place_order``) or cancels one (``cancel_pnr``);
- it is a write whose arguments pay with something (a payment method, card or wallet
  id) or send an amount to an account (a payee, an IBAN), whatever it is called;
- its description says so as a verb ("charges the card", "is refunded to the original
  payment method", "the fare difference").

Reads are left alone however much money they mention (``get_refund_status``,
``list_charges``, ``search_flights(max_price=...)``, ``quote_fare_change``): a reading
verb as the action keeps the rule silent, and the head judges those calls alone. So does
a dry run the tool's schema offers, set to true. Drafts, quotes and intents that name a
card or a payee are not payments either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from agentflow import _money_words as w
from agentflow.consequence import ConsequenceClass

__all__ = ["MoneySignals", "money_floor", "money_signals", "name_tokens"]

_KNOWN_VERBS = w.READ_VERBS | w.MONEY_VERBS | w.CONTEXT_VERBS | w.OTHER_VERBS


def name_tokens(name: str) -> list[str]:
    """Lower-case words of a snake, kebab, dotted or camel-cased name."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    out: list[str] = []
    for word in (x.lower() for x in re.split(r"[^A-Za-z0-9]+", spaced) if x):
        if out and (out[-1], word) in w.COMPOUNDS:
            out[-1] = w.COMPOUNDS[(out[-1], word)]
        else:
            out.append(word)
    return out


@dataclass(frozen=True)
class MoneySignals:
    """What a call shows about money, read from its definition and arguments."""

    action: str
    """The first verb of the name ('' when none is known)."""
    reads: bool
    """The action is a reading verb (get, list, search, quote, ...)."""
    amount: bool
    """An amount, price, total or fee is passed."""
    currency: bool
    """A currency is passed."""
    instrument: bool
    """A payment method, card, wallet or bank account is passed to pay with."""
    booking: bool
    """A reservation, booking, order, ticket, passenger or seat is referred to."""
    reasons: tuple[str, ...]
    """Why the call moves money (empty: it does not, as far as the rule can tell)."""

    def moves_money(self) -> bool:
        """True when the call charges, refunds, pays, books or cancels a booking."""
        return bool(self.reasons)

    def tags(self) -> list[str]:
        """Short words for the text the head reads: what the call carries."""
        if self.reads:
            return ["reads"]
        named = {
            "amount": self.amount,
            "currency": self.currency,
            "payment method": self.instrument,
            "booking": self.booking,
        }
        return [k for k, v in named.items() if v] + (["moves money"] if self.reasons else [])


def money_signals(definition: Mapping[str, Any], args: Mapping[str, Any]) -> MoneySignals:
    """The money signals of one call of ``definition`` (MCP-style) with ``args``."""
    tokens = name_tokens(str(definition.get("name", "")))
    verbs = _verbs(tokens)
    reads = bool(verbs) and all(v in w.READ_VERBS for v in verbs)
    keys = _keys(definition, args)
    amount = any(_is_amount_key(k) and _is_amount(v) for k, v in keys.items())
    # [{"payment_id": "gift_card_1", "amount": 120}]: the amount sits with the instrument
    amount = amount or any(_is_amount(v) for k, v in keys.items() if _is_instrument(k, v))
    currency = any(set(name_tokens(k)) & w.CURRENCY_WORDS for k in keys)
    # Adding or replacing a card is no payment: the name is about the instrument itself.
    manages = any(t in w.INSTRUMENT_NAME for t in tokens) or any(
        a == "payment" and b in w.INSTRUMENT_OF for a, b in pairwise(tokens)
    )
    instrument = not manages and any(_is_instrument(k, v) for k, v in keys.items())
    booking = any(_is_booking(k) for k in keys)
    declared = (definition.get("inputSchema") or {}).get("properties") or {}
    # A dry run the schema offers is the tool's own promise that nothing moves.
    dry = any(args.get(k) is True for k in w.DRY_RUN_KEYS if k in declared)
    reasons: list[str] = []
    if not reads and not dry:
        paid = amount or currency or instrument
        reasons += _name_reasons(tokens, verbs, paid, booking)
        # A draft or a quote that names a card or a payee still moves nothing.
        hedged = any(t in w.HEDGES for t in tokens)
        if instrument and not hedged:
            reasons.append("pays with a payment method" + (" for a booking" if booking else ""))
        if amount and not hedged and any(_is_payee(k) for k in keys):
            reasons.append("sends an amount to an account")
        reasons += _description_reasons(
            str(definition.get("description", "")), amount or instrument
        )
    return MoneySignals(
        action=verbs[0] if verbs else "",
        reads=reads,
        amount=amount,
        currency=currency,
        instrument=instrument,
        booking=booking,
        reasons=tuple(dict.fromkeys(reasons)),
    )


def money_floor(signals: MoneySignals) -> ConsequenceClass | None:
    """``irreversible`` for a call that moves money, else None (no floor from money)."""
    return "irreversible" if signals.moves_money() else None


def _verbs(tokens: list[str]) -> list[str]:
    """The action and any verb joined to it by and/then.

    The action is the first word when it is a known verb; otherwise (``flight_search``,
    ``v2_cancel_booking``) the first later word that can only be a verb.
    """
    if tokens and tokens[0] in _KNOWN_VERBS:
        action = tokens[0]
    else:
        action = next((t for t in tokens[1:] if t in _KNOWN_VERBS - w.AMBIGUOUS), "")
    joined = [b for a, b in pairwise(tokens) if a in w.CONJUNCTIONS]
    return [v for v in [action, *joined] if v]


def _name_reasons(tokens: list[str], verbs: list[str], paid: bool, booking: bool) -> Iterable[str]:
    objects = [t for t in tokens if t not in verbs]
    nouns = _money_nouns(objects)
    for verb in verbs:
        if verb in w.MONEY_VERBS and not (verb == "charge" and set(objects) & w.ENERGY):
            yield f"verb {verb!r}"
        elif verb in ("book", "reserve", "order", "upgrade"):
            travel = any(t in w.TRAVEL for t in objects)
            if paid or travel or nouns or (verb == "book" and booking):
                yield f"verb {verb!r} on a paid booking"
        elif verb in ("add", "apply"):  # add_note, apply_label: only money nouns count
            if any(n in w.STRONG_NOUNS or paid for n in nouns):
                yield f"verb {verb!r} on money"
        elif verb in w.CONTEXT_VERBS and (paid or nouns):
            yield f"verb {verb!r} on money"
        if verb in w.COMMIT_VERBS:
            committed = [
                t
                for t in map(_singular, objects)
                if t in w.COMMITTED or (t in w.COMMITTED_IF_PAID and (paid or verb == "place"))
            ]
            if committed:
                yield f"commits {committed[0]}"
        if verb in w.CANCEL_VERBS:
            cancelled = [t for t in map(_singular, objects) if t in w.CANCELLED]
            if cancelled or (booking and not objects):  # cancel(reservation_id=...)
                yield f"cancels {cancelled[0] if cancelled else 'booking'}"
    if not any(t in w.HEDGES for t in tokens):
        for noun in nouns:
            if noun in w.STRONG_NOUNS or paid:
                yield f"moves {noun}"


def _money_nouns(tokens: list[str]) -> list[str]:
    """Money nouns in ``tokens`` that are not qualified into something else."""
    found = []
    for i, token in enumerate(tokens):
        qualified = i + 1 < len(tokens) and tokens[i + 1] in w.QUALIFIERS
        if _singular(token) in w.STRONG_NOUNS | w.WEAK_NOUNS and not qualified:
            found.append(_singular(token))
    return found


def _description_reasons(description: str, paid: bool) -> list[str]:
    text = description.lower()
    found = [m.group(0).strip(" .;:") for p in w.DESCRIPTION if (m := p.search(text))]
    booked = w.BOOKS.search(text)
    if booked and paid:
        found.append(booked.group(0).strip(" .;:"))
    return [f"description: {f!r}" for f in found]


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _keys(definition: Mapping[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
    """Argument names the call uses (its own and the schema's required ones), with values.

    A required parameter the call leaves out is still what the tool is built to take;
    its value is then the schema of the parameter.
    """
    schema = definition.get("inputSchema") or {}
    props = schema.get("properties") or {}
    keys: dict[str, Any] = {str(k): args[k] for k in args}
    for k in schema.get("required") or []:
        keys.setdefault(str(k), props.get(k, {}))
    return keys


def _is_amount(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):  # "50.00", "EUR 120", "1,250.00 usd"; not "price_basic"
        return bool(
            re.fullmatch(r"[^\d\s-]{0,3}\s?-?\d[\d,]*(\.\d+)?\s?[A-Za-z]{0,3}", value.strip())
        )
    if isinstance(value, Mapping):  # a schema property, or {"amount": .., "currency": ..}
        return value.get("type") in ("number", "integer") or any(
            _is_amount_key(str(k)) and _is_amount(v) for k, v in value.items()
        )
    if isinstance(value, list):  # [{"payment_id": .., "amount": 120}]
        return any(_is_amount(v) for v in value if isinstance(v, Mapping))
    return False


def _is_amount_key(key: str) -> bool:
    words = set(name_tokens(key))
    return bool(words & w.AMOUNT_WORDS) and not words & w.COUNT_WORDS


def _is_instrument(key: str, value: Any) -> bool:
    words = name_tokens(key)
    if value in (None, "", []):
        return False
    if set(words) & w.INSTRUMENT_WORDS or any(p in w.INSTRUMENT_PAIRS for p in pairwise(words)):
        return True
    if words[:1] == ["payment"] or words[-1:] == ["payment"]:  # payment_id, payment
        return isinstance(value, str) and bool(w.INSTRUMENT_VALUE.search(value.lower()))
    return False


def _is_payee(key: str) -> bool:
    words = name_tokens(key)
    return bool(set(words) & w.PAYEE_WORDS) or any(p in w.PAYEE_PAIRS for p in pairwise(words))


def _is_booking(key: str) -> bool:
    words = set(name_tokens(key))
    return bool(words & w.BOOKING_WORDS) and not {"sort", "by"} & words
