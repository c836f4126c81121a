"""Training data for each role's encoder head, and a cache so a head is trained once.

A head is cached under ``<data_dir>/heads/`` by the digests of its encoder and its
examples, so a CLI call or a worker start reuses it instead of retraining. A cached head
is loaded only when the deployment's key signed it for this encoder and these examples.
Anything else found there (an unsigned head from before heads were signed, one signed
with another key, an edited or corrupt file) is not trusted: since the examples are at
hand, the head is trained again from them, and a warning says so. A head that
``agentflow train`` kept is another matter (:mod:`agentflow.retrain`): it cannot be
rebuilt from anything shipped, so it is refused, never replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from agentflow.errors import ArtifactError
from agentflow.examples import Example
from agentflow.models.artifact import training_digest
from agentflow.models.encoder import Encoder
from agentflow.models.head import (
    ARTIFACT_FORMAT,
    CHAR_FEATURES,
    FAR_QUANTILE,
    FAR_QUANTILES,
    EncoderHead,
)
from agentflow.nodes.consequence_modeler import describe_call
from agentflow.nodes.loop_evaluator import describe_step, echo_share, loop_features
from agentflow.settings import Settings
from agentflow.signing import signing_key

__all__ = ["cache_path", "consequence_examples", "consequence_rows", "head_for", "loop_examples"]

_log = logging.getLogger(__name__)


def _data(name: str) -> list[dict[str, object]]:
    text = files("agentflow.nodes").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def loop_examples() -> tuple[list[Example], NDArray[np.float64]]:
    """The shipped loop-evaluator examples: the text the evaluator reads and its progress features."""
    rows = _data("loop_examples.jsonl")
    examples = [
        Example(
            text=describe_step(str(r["observation"])), label=str(r["label"]), group=str(r["goal"])
        )
        for r in rows
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
    return [
        Example(
            text=describe_call(r["tool"], r.get("args") or {}),  # type: ignore[arg-type]
            label=str(r["label"]),
            group=str(r["domain"]),
        )
        for r in consequence_rows()
    ]


def cache_path(
    role: str,
    examples: Sequence[Example],
    encoder_sha256: str,
    settings: Settings,
    extra: NDArray[np.float64] | None = None,
) -> tuple[Path, str]:
    """Where :func:`head_for` keeps ``role``'s head for these examples and this encoder,
    and the training digest that head must be signed with."""
    trained_on = training_digest(examples, extra)
    # The head's kind is in the key: a new format or feature size retrains, never reuses.
    far = FAR_QUANTILES.get(role, FAR_QUANTILE)
    key = f"{ARTIFACT_FORMAT}\x1f{CHAR_FEATURES}\x1f{far}\x1f{encoder_sha256}\x1f{trained_on}"
    name = f"{role}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    return Path(settings.data_dir) / "heads" / name, trained_on


def head_for(
    role: str,
    examples: Sequence[Example],
    encoder: Encoder,
    settings: Settings,
    extra: NDArray[np.float64] | None = None,
) -> EncoderHead:
    """A head for ``role`` trained on ``examples`` (+ side-features), cached and signed.

    A cached file that does not verify with the deployment's key, or that was signed for
    other examples, is trained again from ``examples`` (logged as a warning).
    """
    key = signing_key(settings)
    path, trained_on = cache_path(role, examples, encoder.sha256, settings, extra)
    if path.exists():
        try:
            head = EncoderHead.load(path, encoder, key=key)
        except ArtifactError as exc:
            _log.warning("rebuilding the cached %s head from its examples: %s", role, exc.message)
        else:
            if head.training_sha256 == trained_on and head.role == role:
                return head
            _log.warning(
                "rebuilding the cached %s head %s from its examples: it was signed for "
                "other training data",
                role,
                path,
            )
    head = EncoderHead.train(list(examples), encoder, role, extra=extra)
    head.save(path, key=key)
    return head
