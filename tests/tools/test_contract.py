"""The tool contract: schemas, annotations, the ctx rule, LangChain tools, the registry."""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool as lc_tool
from pydantic import BaseModel

from agentflow.errors import ToolError, ToolRegistrationError
from agentflow.tools.contract import ToolContext, ToolRegistry, ToolSpec, from_langchain, tool


@tool(read_only=True)
def lookup(order_id: str, verbose: bool = False) -> dict[str, object]:
    """Look an order up."""
    return {"order_id": order_id, "verbose": verbose}


@tool(irreversible=True, open_world=True, forwards_key=True, name="refund_order")
def refund(
    order_id: str, amount: float, ctx: ToolContext, currency: Literal["EUR", "USD"] = "EUR"
) -> str:
    """Refund an order."""
    return f"{order_id}:{amount}:{currency}:{ctx.idempotency_key}"


def test_decorator_builds_the_mcp_definition() -> None:
    d = refund.definition()
    assert d["name"] == "refund_order"
    assert d["description"] == "Refund an order."
    assert d["annotations"] == {"openWorldHint": True, "irreversible": True}
    schema = d["inputSchema"]
    assert set(schema["properties"]) == {"order_id", "amount", "currency"}  # no ctx
    assert set(schema["required"]) == {"order_id", "amount"}
    assert schema["properties"]["currency"]["enum"] == ["EUR", "USD"]
    assert lookup.definition()["annotations"] == {"readOnlyHint": True}
    assert refund.accepts_context and refund.forwards_key and not lookup.accepts_context


def test_bare_decorator_needs_ctx() -> None:
    @tool
    def note(text: str, ctx: ToolContext) -> str:
        """Write a note."""
        return text

    assert isinstance(note, ToolSpec) and note.annotations is None and note.accepts_context


def test_side_effect_tool_without_ctx_is_rejected_with_the_fix() -> None:
    with pytest.raises(ToolRegistrationError) as err:

        @tool(idempotent=True)
        def send(to: str) -> None:
            """Send."""

    assert "ctx: ToolContext" in str(err.value) and "send()" in str(err.value)


def test_undeclared_tool_without_ctx_is_rejected() -> None:
    with pytest.raises(ToolRegistrationError):

        @tool
        def anything(x: int) -> int:
            return x


def test_contradicting_hints_are_rejected() -> None:
    with pytest.raises(ToolRegistrationError):

        @tool(read_only=True, destructive=True)
        def wipe(ctx: ToolContext) -> None:
            """Wipe."""


def test_forwards_key_without_ctx_is_rejected() -> None:
    with pytest.raises(ToolRegistrationError):

        @tool(read_only=True, forwards_key=True)
        def peek(x: int) -> int:
            return x


def test_var_kwargs_are_rejected() -> None:
    with pytest.raises(ToolRegistrationError):

        @tool(read_only=True)
        def loose(**kwargs: int) -> None:
            """Loose."""


def test_validate_args_coerces_and_rejects() -> None:
    assert refund.validate_args({"order_id": "A1", "amount": "12.5"}) == {
        "order_id": "A1",
        "amount": 12.5,
        "currency": "EUR",
    }
    for bad in (
        {"order_id": "A1"},
        {"order_id": "A1", "amount": 1, "extra": 2},
        {"order_id": "A", "amount": 1, "currency": "GBP"},
    ):
        with pytest.raises(ToolError) as err:
            refund.validate_args(bad)
        assert "refund_order" in str(err.value)


def test_nested_models_validate_and_serialise() -> None:
    class Line(BaseModel):
        sku: str
        qty: int

    @tool(read_only=True)
    def price(lines: list[Line]) -> int:
        """Price lines."""
        return sum(line.qty for line in lines)

    kwargs, as_json = price.parse_args({"lines": [{"sku": "a", "qty": "2"}]})
    assert isinstance(kwargs["lines"][0], Line)
    assert as_json == {"lines": [{"sku": "a", "qty": 2}]}
    assert price(**kwargs) == 2


def test_langchain_tool_gets_the_key_in_its_config() -> None:
    seen: dict[str, object] = {}

    @lc_tool
    def charge(amount: int, config: RunnableConfig) -> str:
        """Charge a card."""
        seen.update(config.get("metadata", {}))
        return f"charged {amount}"

    spec = from_langchain(charge, idempotent=True)
    assert spec.accepts_context and not spec.forwards_key
    assert spec.definition()["inputSchema"]["properties"].keys() == {"amount"}
    ctx = ToolContext(idempotency_key="ns:idem:abc", thread_id="t", attempt=1, step=2)
    assert spec.fn(**spec.bind(spec.validate_args({"amount": 3}), ctx)) == "charged 3"
    assert seen["idempotency_key"] == "ns:idem:abc" and seen["step"] == 2


def test_from_langchain_refuses_other_objects() -> None:
    with pytest.raises(ToolRegistrationError):
        from_langchain(lambda x: x)


def test_registry_refuses_duplicates_and_lists_definitions() -> None:
    reg = ToolRegistry([lookup, refund])
    assert reg.get("refund_order") is refund and "lookup" in reg and len(reg) == 2
    assert [d["name"] for d in reg.definitions()] == ["lookup", "refund_order"]
    assert list(reg) == [lookup, refund]
    with pytest.raises(ToolRegistrationError):
        reg.add(lookup)
    with pytest.raises(ToolError) as err:
        reg.get("nope")
    assert "lookup" in str(err.value)
