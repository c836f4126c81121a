"""Review recorded decisions: list them with their outcome, label them, measure each role.

A decision is reviewed as an :class:`~agentflow.checkpoints.rows.Episode`: the small model's
answer together with the LLM verdict or safe default that replaced it when it was not
trusted. Labels attach to the small model's decision (its id is what a reviewer types).

Per role, :func:`build_review` reports how many decisions there were, the escalation
rate (share acted on through the LLM or a safe default), accuracy on human-labelled
decisions (label == the small model's value; ``outcome_accuracy``: label == the value
acted on), how often the LLM agreed with an overridden small model, and drift: the share
of inputs the role's head counts as far from its training examples (``is_far``), per
time bucket.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.rows import Episode, LabelRow
from agentflow.errors import DataError
from agentflow.inputs import input_extra, input_text
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead

__all__ = [
    "Bucket",
    "DriftBucket",
    "ReviewReport",
    "ReviewedDecision",
    "RoleStats",
    "apply_labels",
    "build_review",
    "drift",
    "excerpt",
    "interpret_answer",
    "label_interactively",
    "parse_label",
    "parse_value",
    "sample_unlabelled",
]

Bucket = Literal["hour", "day", "week"]
"""Width of a drift time bucket."""

_BUCKET_FORMAT: dict[Bucket, str] = {"hour": "%Y-%m-%dT%H:00", "day": "%Y-%m-%d", "week": "%G-W%V"}


class ReviewedDecision(BaseModel):
    """One decision as a reviewer sees it."""

    model_config = ConfigDict(frozen=True)

    id: int
    """Decision id (what ``--label ID=VALUE`` names)."""
    created_at: datetime
    """When it was taken (UTC)."""
    role: str
    """Role that decided."""
    value: Any
    """What the first decider (normally the small model) said."""
    confidence: float
    """Its confidence."""
    source: str
    """Who decided first: slm:encoder, slm:gguf, llm, rule, ..."""
    escalated: bool
    """Whether the graph acted on an escalated decision instead."""
    input: str
    """Excerpt of the input."""
    outcome: Any
    """The value the graph acted on."""
    outcome_source: str
    """Who produced it."""
    human_label: Any = None
    """Latest human label, if any."""
    llm_label: Any = None
    """The LLM's verdict on it, if it was overridden (or labelled by the LLM)."""


class DriftBucket(BaseModel):
    """Far-from-training inputs in one time bucket."""

    start: str
    """Bucket (UTC): ``2026-03-01``, ``2026-03-01T14:00`` or ``2026-W09``."""
    n: int
    """Inputs in the bucket."""
    far: int
    """Inputs the head counts as far from its training examples."""
    share: float
    """``far / n``."""


class RoleStats(BaseModel):
    """How one role did over the period."""

    role: str
    """The role."""
    n: int
    """Decisions (episodes) taken."""
    escalated: int
    """Acted on through the LLM or a safe default."""
    escalation_rate: float
    """``escalated / n``."""
    n_labelled: int
    """Decisions with a human label."""
    accuracy: float | None
    """Human label == the first decider's value, over labelled decisions."""
    outcome_accuracy: float | None
    """Human label == the value acted on, over labelled decisions."""
    llm_agreement: float | None
    """Share of overridden small-model decisions the LLM agreed with."""
    drift: list[DriftBucket] | None = None
    """Share of inputs far from the training examples, per bucket (None: no head)."""
    drift_share: float | None = None
    """Same over the whole period."""
    drift_note: str | None = None
    """Why drift is missing, when it is."""


class ReviewReport(BaseModel):
    """Everything ``agentflow review`` shows."""

    since: datetime | None
    """Start of the period (inclusive)."""
    until: datetime | None
    """End of the period (exclusive)."""
    roles: dict[str, RoleStats]
    """Per-role measures."""
    decisions: list[ReviewedDecision]
    """The decisions listed (newest ones, or the sample)."""
    labelled: list[int] = Field(default_factory=list)
    """Decision ids labelled by this review."""


def excerpt(value: Any, width: int = 80) -> str:
    """One line of at most ``width`` characters showing ``value``."""
    # A head's recorded input shows its text (the loop evaluator's features are not read).
    text = (
        input_text(value)
        if isinstance(value, str) or input_extra(value) is not None
        else json.dumps(value, default=str, ensure_ascii=False)
    )
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def parse_value(text: str) -> Any:
    """A label value as typed: text, or JSON when it is an object, a list or quoted."""
    stripped = text.strip()
    if stripped[:1] in '{["':
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"label value {stripped!r} looks like JSON but is not: {exc}") from exc
    return stripped


def parse_label(spec: str) -> tuple[int, Any]:
    """``"ID=VALUE"`` as ``(id, value)``."""
    ident, sep, value = spec.partition("=")
    if not sep or not ident.strip().isdigit() or not value.strip():
        raise DataError(
            f"--label {spec!r} is not ID=VALUE",
            hint="e.g. --label 42=refund (ids are listed by `agentflow review`)",
        )
    return int(ident), parse_value(value)


def apply_labels(
    ledger: Ledger,
    labels: Sequence[tuple[int, Any]],
    by: str,
    allowed: Mapping[str, Collection[str]] | None = None,
) -> list[int]:
    """Record human labels; all are checked before any is written. Returns their ids.

    ``allowed`` maps a role to the values it can take (a router's route names); a label
    outside them would teach the head a value the graph cannot act on, and is refused.
    """
    rows = ledger.decisions_by_id(i for i, _ in labels)
    for ident, value in labels:
        row = rows.get(ident)
        if row is None:
            raise DataError(
                f"there is no decision {ident} to label", hint="list ids with `agentflow review`"
            )
        choices = (allowed or {}).get(row.role)
        if choices is not None and value not in choices:
            raise DataError(
                f"{value!r} is not a value the {row.role} can take",
                hint="use one of: " + ", ".join(sorted(choices)),
            )
    return [ledger.add_label(ident, value, by, source="human") for ident, value in labels]


def sample_unlabelled(
    episodes: Sequence[Episode], labels: Iterable[LabelRow], n: int, seed: int = 0
) -> list[Episode]:
    """A uniform random sample (seeded) of ``n`` decisions no person labelled yet, in order.

    Uniform, not lowest-confidence first, so that accuracy measured on the labels is an
    unbiased estimate for the whole period.
    """
    human = {lbl.decision_id for lbl in labels if lbl.source == "human"}
    pool = [ep for ep in episodes if ep.id not in human]
    chosen = random.Random(seed).sample(pool, min(n, len(pool)))
    return sorted(chosen, key=lambda ep: ep.id)


AnswerKind = Literal["label", "skip", "quit"]


def interpret_answer(answer: str, episode: Episode) -> tuple[AnswerKind, Any]:
    """A reviewer's answer: Enter keeps the model's value, ``s`` skips, ``q`` quits,
    anything else is the right value (quote it as JSON to label the text "s" or "q")."""
    text = answer.strip()
    if text == "":
        return "label", episode.first.value
    if text.lower() in ("s", "q"):
        return ("skip" if text.lower() == "s" else "quit"), None
    return "label", parse_value(text)


def label_interactively(
    ledger: Ledger,
    episodes: Sequence[Episode],
    ask: Callable[[Episode], str | None],
    by: str,
    allowed: Mapping[str, Collection[str]] | None = None,
    tell: Callable[[str], None] = lambda _msg: None,
) -> list[int]:
    """Ask about each decision in turn and record the answers; ``ask`` returning None
    (end of input) stops like ``q``. An invalid value is told and asked again."""
    labelled: list[int] = []
    for episode in episodes:
        while True:
            answer = ask(episode)
            if answer is None:
                return labelled
            try:
                kind, value = interpret_answer(answer, episode)
                if kind == "quit":
                    return labelled
                if kind == "label":
                    apply_labels(ledger, [(episode.id, value)], by, allowed)
                    labelled.append(episode.id)
                break
            except DataError as exc:
                tell(str(exc))
    return labelled


def drift(
    episodes: Sequence[Episode], head: EncoderHead, encoder: Encoder, bucket: Bucket = "day"
) -> list[DriftBucket]:
    """Per time bucket, the share of inputs ``head`` counts as far from its training data."""
    usable = [ep for ep in episodes if ep.first.input is not None]
    if not usable:
        return []
    embeddings = encoder.encode([input_text(ep.first.input) for ep in usable])
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for ep, emb in zip(usable, embeddings, strict=True):
        key = ep.first.created_at.strftime(_BUCKET_FORMAT[bucket])
        counts[key][0] += 1
        counts[key][1] += int(head.is_far(emb))
    return [
        DriftBucket(start=k, n=n, far=far, share=round(far / n, 4))
        for k, (n, far) in sorted(counts.items())
    ]


def _share(hits: Sequence[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def _role_stats(role: str, episodes: Sequence[Episode], human: Mapping[int, Any]) -> RoleStats:
    labelled = [ep for ep in episodes if ep.id in human]
    verdicts = [ep for ep in episodes if ep.verdict is not None]
    escalated = sum(ep.escalated for ep in episodes)
    return RoleStats(
        role=role,
        n=len(episodes),
        escalated=escalated,
        escalation_rate=round(escalated / len(episodes), 4) if episodes else 0.0,
        n_labelled=len(labelled),
        accuracy=_share([human[ep.id] == ep.first.value for ep in labelled]),
        outcome_accuracy=_share([human[ep.id] == ep.final.value for ep in labelled]),
        llm_agreement=_share([ep.verdict.value == ep.first.value for ep in verdicts if ep.verdict]),
    )


def _reviewed(ep: Episode, human: Mapping[int, Any], llm: Mapping[int, Any]) -> ReviewedDecision:
    verdict = ep.verdict
    return ReviewedDecision(
        id=ep.id,
        created_at=ep.first.created_at,
        role=ep.first.role,
        value=ep.first.value,
        confidence=ep.first.confidence,
        source=ep.first.source,
        escalated=ep.escalated,
        input=excerpt(ep.first.input, 60),
        outcome=ep.final.value,
        outcome_source=ep.final.source,
        human_label=human.get(ep.id),
        llm_label=verdict.value if verdict else llm.get(ep.id),
    )


def build_review(
    ledger: Ledger,
    *,
    role: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    heads: Mapping[str, EncoderHead] | None = None,
    encoder: Encoder | None = None,
    bucket: Bucket = "day",
    listed: Sequence[Episode] | None = None,
    limit: int = 50,
    labelled: Sequence[int] = (),
    notes: Mapping[str, str] | None = None,
) -> ReviewReport:
    """Measure every role over the period and list ``listed`` (default: the newest
    ``limit`` decisions). Drift needs the role's head in ``heads`` and the ``encoder``;
    ``notes`` says why a role has no head."""
    episodes = ledger.episodes(role, since, until)
    human: dict[int, Any] = {}
    llm: dict[int, Any] = {}
    for lbl in ledger.labels(role=role):  # oldest first: the newest label wins
        (human if lbl.source == "human" else llm)[lbl.decision_id] = lbl.value
    by_role: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        by_role[ep.first.role].append(ep)
    stats: dict[str, RoleStats] = {}
    for name, group in sorted(by_role.items()):
        result = _role_stats(name, group, human)
        head = (heads or {}).get(name)
        if head is not None and encoder is not None:
            buckets = drift(group, head, encoder, bucket)
            total = sum(b.n for b in buckets)
            share = round(sum(b.far for b in buckets) / total, 4) if total else None
            result = result.model_copy(update={"drift": buckets, "drift_share": share})
        else:
            note = (notes or {}).get(name, "no head for this role")
            result = result.model_copy(update={"drift_note": note})
        stats[name] = result
    shown = list(listed) if listed is not None else episodes[-limit:] if limit > 0 else []
    return ReviewReport(
        since=since,
        until=until,
        roles=stats,
        decisions=[_reviewed(ep, human, llm) for ep in shown],
        labelled=list(labelled),
    )
