"""Derived keys and canonical JSON: stable, never random, sensitive to every part."""

from __future__ import annotations

import json
import math
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from agentflow.tools.keys import canonical_json, derive_key, fingerprint, key_prefix

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, {"d": None, "c": "é"}]})
        == '{"a":[1,{"c":"é","d":null}],"b":1}'
    )


def test_integral_floats_and_ints_are_one_number() -> None:
    assert canonical_json({"x": 1.0}) == canonical_json({"x": 1}) == '{"x":1}'
    assert canonical_json(0.1) == "0.1"
    assert canonical_json(True) == "true"  # a bool is not the integer 1
    assert fingerprint({"n": 2.0}) == fingerprint({"n": 2})


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})
    with pytest.raises(ValueError):
        canonical_json([math.inf])


def test_rich_values_use_their_json_form() -> None:
    class Item(BaseModel):
        sku: str
        qty: int

    assert canonical_json(
        {"d": date(2024, 1, 2), "i": Item(sku="a", qty=2), "m": Decimal("1.50")}
    ) == ('{"d":"2024-01-02","i":{"qty":2,"sku":"a"},"m":"1.50"}')


def test_colliding_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        canonical_json({1: "a", "1": "b"})


@given(_json)
def test_canonical_json_round_trips_and_is_stable(value: object) -> None:
    text = canonical_json(value)
    assert canonical_json(json.loads(text)) == text


@given(st.dictionaries(st.text(max_size=5), st.integers(), max_size=6))
def test_fingerprint_ignores_key_order(args: dict[str, int]) -> None:
    reordered = dict(reversed(list(args.items())))
    assert fingerprint(reordered) == fingerprint(args)


def test_derived_key_is_deterministic_and_namespaced() -> None:
    key = derive_key("prod", "t1", 3, "refund", {"order": "A1", "amount": 5})
    assert key == derive_key("prod", "t1", 3, "refund", {"amount": 5.0, "order": "A1"})
    assert key.startswith("prod:idem:") and key.startswith(key_prefix("prod"))
    assert len(key.removeprefix("prod:idem:")) == 64


@pytest.mark.parametrize(
    "other",
    [
        ("staging", "t1", 3, "refund", {"order": "A1", "amount": 5}),
        ("prod", "t2", 3, "refund", {"order": "A1", "amount": 5}),
        ("prod", "t1", 4, "refund", {"order": "A1", "amount": 5}),
        ("prod", "t1", 3, "refund2", {"order": "A1", "amount": 5}),
        ("prod", "t1", 3, "refund", {"order": "A1", "amount": 6}),
        # Shifting characters between parts must not give the same key.
        ("prod", "t13", 3, "", {"order": "A1", "amount": 5}),
    ],
)
def test_every_part_changes_the_key(other: tuple) -> None:  # type: ignore[type-arg]
    base = derive_key("prod", "t1", 3, "refund", {"order": "A1", "amount": 5})
    assert derive_key(*other) != base


def test_empty_namespace_is_refused() -> None:
    with pytest.raises(ValueError):
        derive_key("", "t", 0, "x", {})
