"""What a head read for one decision, as the ledger records it in ``Decision.input``.

A text-only head records its text. A head that also reads numeric side-features (the
loop evaluator's progress, see :func:`agentflow.nodes.loop_evaluator.loop_features`) records
``{"text": ..., "extra": [...]}``, so that retraining from the ledger gives it the same
features it decided with; review shows the text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["head_input", "input_extra", "input_text"]


def head_input(text: str, extra: Sequence[float] | None) -> str | dict[str, Any]:
    """The ``Decision.input`` of a head that read ``text`` and the side-features ``extra``."""
    return text if extra is None else {"text": text, "extra": [float(v) for v in extra]}


def _is_head_input(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"text", "extra"}
        and isinstance(value["text"], str)
    )


def input_text(value: Any) -> str:
    """The text a head read (any other recorded input as sorted JSON)."""
    if isinstance(value, str):
        return value
    if _is_head_input(value):
        return str(value["text"])
    return json.dumps(value, sort_keys=True, default=str)


def input_extra(value: Any) -> list[float] | None:
    """The side-features recorded with the text, or None (older rows recorded text only)."""
    if not _is_head_input(value):
        return None
    extra = value["extra"]
    if not isinstance(extra, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in extra
    ):
        return None
    return [float(v) for v in extra]
