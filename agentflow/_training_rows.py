"""The rows a head is retrained on: a role's examples merged with the ledger's labels.

Split out of :mod:`agentflow.retrain` (which re-exports the public names). A row is what
the head reads, its text and, for a head with side-features (the loop evaluator), those
features, so that one text seen at different points of a plan stays two rows; and a
head fitted or scored on such rows, features included.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from agentflow.acceptance import HeadScore, score_head
from agentflow.checkpoints.rows import LabeledInput
from agentflow.examples import Example
from agentflow.inputs import input_extra, input_text
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead

__all__ = [
    "TrainingRow",
    "TrainingSource",
    "fit_rows",
    "input_key",
    "score_rows",
    "training_rows",
]

TrainingSource = Literal["example", "llm", "human"]
"""Where a training row came from, weakest first."""

_PRIORITY: dict[TrainingSource, int] = {"example": 0, "llm": 1, "human": 2}


class TrainingRow(NamedTuple):
    """One input (text, plus side-features for heads that read them) with its label."""

    text: str
    """What the head reads."""
    label: str
    """What it should decide."""
    source: TrainingSource
    """example, llm (a distilled verdict) or human (a reviewer's label)."""
    extra: tuple[float, ...] | None = None
    """Side-features read beside the text (None for a text-only head)."""

    @property
    def key(self) -> str:
        """What identifies the input: its text, with the side-features when it has them."""
        return _key(self.text, self.extra)


def _key(text: str, extra: Sequence[float] | None) -> str:
    if extra is None:
        return text
    return json.dumps({"extra": [float(v) for v in extra], "text": text}, sort_keys=True)


def input_key(value: Any, with_extra: bool) -> str | None:
    """The :attr:`TrainingRow.key` of a recorded ``Decision.input`` (None: not usable)."""
    if not with_extra:
        return input_text(value)
    extra = input_extra(value)
    return None if extra is None else _key(input_text(value), extra)


def training_rows(
    examples: Sequence[Example],
    labelled: Sequence[LabeledInput],
    allowed: Collection[str],
    extra: NDArray[np.float64] | None = None,
) -> tuple[list[TrainingRow], int]:
    """Merge examples and ledger labels, one row per input; returns the rows and how many
    labels were dropped.

    ``extra`` holds the examples' side-features, one row each, for a head that reads
    them; a label is then dropped when its decision did not record features of that
    size (a ledger row from before they were recorded). A label is also dropped for
    naming a value the role cannot take.
    """
    rows: dict[str, TrainingRow] = {}
    dropped = 0
    width = None if extra is None else int(np.asarray(extra).shape[1])

    def put(row: TrainingRow) -> None:
        held = rows.get(row.key)
        if held is None or _PRIORITY[row.source] >= _PRIORITY[held.source]:
            rows[row.key] = row

    for i, ex in enumerate(examples):
        side = None if extra is None else tuple(float(v) for v in extra[i])
        put(TrainingRow(ex.text, ex.label, "example", side))
    for item in labelled:
        if not isinstance(item.value, str) or item.value not in allowed or item.input is None:
            dropped += 1
            continue
        side_in = input_extra(item.input) if width is not None else None
        if width is not None and (side_in is None or len(side_in) != width):
            dropped += 1
            continue
        put(
            TrainingRow(
                input_text(item.input),
                item.value,
                item.source,
                None if side_in is None else tuple(side_in),
            )
        )
    return list(rows.values()), dropped


def _extra(rows: Sequence[TrainingRow]) -> NDArray[np.float64] | None:
    """The rows' side-features as an (n, k) array, None for a text-only head's rows."""
    if not rows or rows[0].extra is None:
        return None
    return np.array([r.extra for r in rows], dtype=np.float64)


def fit_rows(
    rows: Sequence[TrainingRow],
    encoder: Encoder,
    role: str,
    x_all: NDArray[np.float32],
    index: dict[str, int],
) -> EncoderHead:
    """A head for ``role`` fitted on ``rows`` (their embeddings: ``x_all`` rows by text)."""
    examples = [Example(text=r.text, label=r.label) for r in rows]
    embeddings = x_all[[index[r.text] for r in rows]]
    return EncoderHead.train(examples, encoder, role, embeddings=embeddings, extra=_extra(rows))


def score_rows(
    head: EncoderHead,
    rows: Sequence[TrainingRow],
    x_all: NDArray[np.float32],
    index: dict[str, int],
    threshold: float,
) -> HeadScore:
    """``head`` scored on held-out ``rows`` under the role's escalation ``threshold``."""
    x = x_all[[index[r.text] for r in rows]]
    texts = [r.text for r in rows]
    gold = [r.label for r in rows]
    return score_head(head, x, gold, threshold, texts, _extra(rows))
