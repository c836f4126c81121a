"""Training data for each role's encoder head, and a cache so a head is trained once.

A head is cached under ``<data_dir>/heads/`` by the sha256 of its encoder and examples,
so a CLI call or a worker start reuses it (and verifies it) instead of retraining.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from agentflow.examples import Example
from agentflow.models.encoder import Encoder
from agentflow.models.head import ARTIFACT_FORMAT, CHAR_FEATURES, EncoderHead
from agentflow.settings import Settings

__all__ = ["consequence_examples", "consequence_rows", "head_for", "loop_examples"]


def _data(name: str) -> list[dict[str, object]]:
    text = files("nodes").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def loop_examples() -> tuple[list[Example], NDArray[np.float64]]:
    """The shipped loop-evaluator examples: the text the evaluator reads and its progress features."""
    from nodes.loop_evaluator import describe_step, echo_share, loop_features

    rows = _data("loop_examples.jsonl")
    examples = [
        Example(text=describe_step(str(r["observation"])), label=str(r["label"])) for r in rows
    ]
    extra = np.array(
        [
            loop_features(
                int(r["steps_done"]),  # type: ignore[call-overload]
                int(r["steps_planned"]),  # type: ignore[call-overload]
                echo_share(str(r["step"]), str(r["observation"])),
            )
            for r in rows
        ]
    )
    return examples, extra


def consequence_rows() -> list[dict[str, object]]:
    """The shipped labelled tool calls as stored (id, domain, tool, args, label, ...)."""
    return _data("consequence_tools.jsonl")


def consequence_examples() -> list[Example]:
    """The shipped labelled tool calls, as the text the consequence modeler reads."""
    from nodes.consequence_modeler import describe_call

    return [
        Example(text=describe_call(r["tool"], r.get("args") or {}), label=str(r["label"]))  # type: ignore[arg-type]
        for r in consequence_rows()
    ]


def head_for(
    role: str,
    examples: Sequence[Example],
    encoder: Encoder,
    settings: Settings,
    extra: NDArray[np.float64] | None = None,
) -> EncoderHead:
    """A head for ``role`` trained on ``examples`` (+ side-features), cached by content hash."""
    # The head's kind is in the key: a new format or feature size retrains, never reuses.
    digest = hashlib.sha256(f"{ARTIFACT_FORMAT}\x1f{CHAR_FEATURES}\x1f{encoder.sha256}".encode())
    for ex in examples:
        digest.update(f"{ex.label}\x1f{ex.text}\x1e".encode())
    if extra is not None:
        digest.update(np.ascontiguousarray(extra, dtype=np.float64).tobytes())
    path = Path(settings.data_dir) / "heads" / f"{role}-{digest.hexdigest()[:16]}.json"
    if path.exists():
        return EncoderHead.load(path, encoder)
    head = EncoderHead.train(list(examples), encoder, role, extra=extra)
    head.save(path)
    return head
