"""Invariant: a declared annotation is never lowered, whatever any model says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentflow.consequence import (
    CONSEQUENCE_CLASSES,
    ToolAnnotations,
    apply_floor,
    floor_from_annotations,
    severity,
)

hints = st.one_of(st.none(), st.booleans())
annotations = st.builds(
    lambda r, d, i, irr: ToolAnnotations(
        readOnlyHint=r, destructiveHint=d, idempotentHint=i, irreversible=irr
    ),
    hints,
    hints,
    hints,
    hints,
)


@given(annotations, st.sampled_from(CONSEQUENCE_CLASSES))
def test_floor_is_never_lowered(ann: ToolAnnotations, proposed: str) -> None:
    floor = floor_from_annotations(ann)
    final = apply_floor(floor, proposed)  # type: ignore[arg-type]
    if floor is not None and final != "unknown":
        assert severity(final) >= severity(floor)
    if floor == "irreversible":
        assert final == "irreversible"  # needs approval whatever the model said


@given(st.sampled_from(CONSEQUENCE_CLASSES))
def test_destructive_or_irreversible_declarations_always_need_approval(proposed: str) -> None:
    for ann in (
        ToolAnnotations(destructiveHint=True),
        ToolAnnotations(irreversible=True),
        ToolAnnotations(readOnlyHint=True, destructiveHint=True),
    ):
        assert apply_floor(floor_from_annotations(ann), proposed) == "irreversible"  # type: ignore[arg-type]


def test_unknown_from_a_model_is_never_silently_downgraded() -> None:
    for floor in ("safe", "retry_safe", "retry_unsafe"):
        assert apply_floor(floor, "unknown") == "unknown"  # type: ignore[arg-type]
    assert apply_floor(None, "unknown") == "unknown"


def test_floors_from_annotations() -> None:
    assert floor_from_annotations(None) is None
    assert floor_from_annotations(ToolAnnotations()) is None
    assert floor_from_annotations(ToolAnnotations(readOnlyHint=True)) == "safe"
    assert (
        floor_from_annotations(ToolAnnotations(readOnlyHint=False, idempotentHint=True))
        == "retry_safe"
    )
    assert floor_from_annotations(ToolAnnotations(readOnlyHint=False)) == "retry_unsafe"
