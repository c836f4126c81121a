"""Retrain a role's encoder head from its own traffic, and keep it only if it is not worse.

The training set is the role's examples (a graph's route examples for the router, the
shipped files for the consequence modeler and the loop evaluator) plus every labelled
decision in the ledger:
human labels, and LLM verdicts on escalated decisions (distillation). :func:`distill`
turns each verdict into a ``source="llm"`` label on the small-model decision it
overrode, so the training data is in the ledger for audit and a reviewer's label on
the same decision wins. For one input, a human label beats an LLM verdict, which beats
an example. The loop evaluator's head also reads progress features; its decisions record
them with the text (:mod:`agentflow.inputs`), and older decisions that recorded the text
alone are dropped from its training.

:func:`train` holds out a stratified slice of the rows the current head never trained on
(a head scored on its own training rows looks perfect), trains a candidate on the rest
and scores both heads on that slice; the candidate is kept only if it is not worse (see
:class:`agentflow.acceptance.AcceptancePolicy`). A kept head is refit on all the data.
Every head trained, kept or not, is saved signed with the deployment's key
(:mod:`agentflow.signing`) and recorded with its sha256 and label watermark in
``head_versions``; :func:`active_head` is how the builder finds the last kept one, and it
refuses that head (rather than fall back to the examples' head) when its signature does
not verify: a kept head holds what reviewers taught it and is never replaced silently.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from agentflow._training_rows import (
    TrainingRow,
    TrainingSource,
    fit_rows,
    input_key,
    score_rows,
    training_rows,
)
from agentflow.acceptance import AcceptancePolicy, HeadScore
from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.rows import HeadVersionRow
from agentflow.checkpoints.savers import parse_database_url
from agentflow.errors import ArtifactError, ConfigurationError, DataError, SignatureError
from agentflow.examples import Example, stratified_split
from agentflow.graph_module import load_graph_module
from agentflow.heads import consequence_examples, head_for, loop_examples
from agentflow.models.encoder import Encoder, load_encoder
from agentflow.models.head import EncoderHead
from agentflow.settings import Settings
from agentflow.signing import signing_key

__all__ = [
    "TrainResult",
    "TrainingRow",
    "TrainingSource",
    "active_head",
    "current_head",
    "distill",
    "head_in_use",
    "kept_version",
    "role_examples",
    "threshold_for",
    "train",
    "training_rows",
]

_log = logging.getLogger(__name__)

_THRESHOLDS = {
    "router": "router_threshold",
    "consequence_modeler": "consequence_threshold",
    "loop_evaluator": "loop_threshold",
}


class TrainResult(BaseModel):
    """What one retraining did."""

    role: str
    """Role retrained."""
    accepted: bool
    """Whether the new head replaced the current one."""
    reason: str
    """Why it was kept or not."""
    version_id: int
    """Id of its ``head_versions`` row."""
    path: str
    """Where the artifact was saved."""
    sha256: str
    """sha256 of the artifact."""
    old_sha256: str | None
    """sha256 of the head it was compared with."""
    old: HeadScore | None
    """The current head on the held-out rows."""
    new: HeadScore
    """The candidate on the held-out rows."""
    n_train: int
    """Rows the candidate was trained on."""
    n_heldout: int
    """Rows held out for the comparison."""
    sources: dict[str, int] = Field(default_factory=dict)
    """Training rows by source: example, llm, human."""
    distilled: int = 0
    """LLM verdicts turned into labels by this run."""
    dropped: int = 0
    """Labelled rows left out: a value the role cannot take, or (loop evaluator) a
    decision recorded before its side-features were."""
    labels: list[str] = Field(default_factory=list)
    """Classes of the new head."""
    threshold: float = 0.8
    """Escalation threshold the heads were scored under."""
    label_watermark: int = 0
    """Highest label id when it was trained: labels after it are new to this head."""


def threshold_for(role: str, settings: Settings) -> float:
    """The role's escalation threshold from the settings (0.8 for roles without one)."""
    name = _THRESHOLDS.get(role)
    return float(getattr(settings, name)) if name else 0.8


def role_examples(role: str, graph: str | None = None) -> tuple[list[Example], frozenset[str]]:
    """A role's examples and the values it may take (a router's come from ``graph``)."""
    examples, allowed, _ = role_data(role, graph)
    return examples, allowed


def role_data(
    role: str, graph: str | None = None
) -> tuple[list[Example], frozenset[str], NDArray[np.float64] | None]:
    """:func:`role_examples` and the examples' side-features (None for a text-only head)."""
    if role == "router":
        if not graph:
            raise ConfigurationError(
                "the router's examples are the routes of a graph", hint="pass --graph PATH"
            )
        routes_fn = getattr(load_graph_module(graph), "routes", None)
        if not callable(routes_fn):
            raise ConfigurationError(
                f"graph module {graph} has no routes() function",
                hint="expose routes() -> list[agentflow.nodes.router.Route] in the graph module",
            )
        try:
            routes = list(routes_fn())
        except OSError as exc:  # a route file of the graph is missing or unreadable
            raise DataError(f"cannot read the routes of {graph}: {exc}") from exc
        examples = [Example(text=t, label=r.name) for r in routes for t in r.examples]
        return examples, frozenset(r.name for r in routes), None
    if role == "consequence_modeler":
        examples = consequence_examples()
        return examples, frozenset(ex.label for ex in examples), None
    if role == "loop_evaluator":
        examples, extra = loop_examples()
        return examples, frozenset(ex.label for ex in examples), extra
    raise ConfigurationError(
        f"the {role} cannot be retrained from the ledger: it has no encoder head",
        hint="retrain the router, the consequence_modeler or the loop_evaluator",
    )


def distill(ledger: Ledger, role: str) -> int:
    """Label each small-model decision the LLM overrode with the LLM's verdict.

    Idempotent: a decision that already has an LLM label is skipped. Returns how many
    labels were added.
    """
    done = {lbl.decision_id for lbl in ledger.labels(role=role) if lbl.source == "llm"}
    added = 0
    for episode in ledger.episodes(role):
        verdict = episode.verdict
        if verdict is None or episode.id in done:
            continue
        ledger.add_label(episode.id, verdict.value, verdict.model_name or "llm", source="llm")
        added += 1
    return added


def _artifact(path: str, settings: Settings) -> Path:
    recorded = Path(path)
    # A data folder moved with its database still finds its heads.
    moved = Path(settings.data_dir) / "heads" / recorded.name
    return moved if not recorded.exists() and moved.exists() else recorded


def kept_version(
    role: str, settings: Settings, ledger: Ledger | None = None
) -> HeadVersionRow | None:
    """The ledger's record of the last head `agentflow train` kept for ``role`` (its
    ``path`` resolved as :func:`active_head` reads it); None when there is none, or no
    database (which is never created just to find that out)."""
    db = parse_database_url(settings.resolved_database_url)
    if db.kind == "sqlite" and not (db.sqlite_path and Path(db.sqlite_path).exists()):
        return None
    own = ledger is None
    ledger = ledger or Ledger.from_settings(settings)
    try:
        if ledger.revision() is None:
            return None
        kept = [v for v in ledger.head_versions(role) if v.accepted]
    finally:
        if own:
            ledger.close()
    if not kept:
        return None
    return kept[-1].model_copy(update={"path": str(_artifact(kept[-1].path, settings))})


def active_head(
    role: str,
    settings: Settings,
    encoder: Encoder,
    *,
    labels: Collection[str] | None = None,
    ledger: Ledger | None = None,
) -> EncoderHead | None:
    """The last head ``agentflow train`` kept for ``role``, verified by its recorded sha256.

    None when nothing was retrained yet (or the database does not exist). With
    ``labels`` (a graph's route names), a head that decides values outside them is
    stale (routes changed since) and ignored. A missing, modified or other-encoder
    artifact raises :class:`~agentflow.errors.ArtifactError`, and one whose signature
    does not verify with the deployment's key :class:`~agentflow.errors.SignatureError`.
    """
    version = kept_version(role, settings, ledger)
    if version is None:
        return None
    try:
        head = EncoderHead.load(
            version.path, encoder, key=signing_key(settings), expected_sha256=version.sha256
        )
    except SignatureError as exc:
        command = f"agentflow train --role {role}" + (" --graph GRAPH" if role == "router" else "")
        raise SignatureError(
            f"the {role} head `agentflow train` kept is refused: {exc.message}",
            hint=f"retrain it with `{command}` (a kept head is never "
            "rebuilt from the examples behind your back); if AGENTFLOW_SIGNING_KEY was "
            "rotated, every head signed with the old key must be retrained",
        ) from exc
    if labels is not None and not set(head.labels) <= set(labels):
        _log.warning(
            "ignoring retrained %s head %s: it decides %s, not among %s (retrain it)",
            role,
            head.sha256[:12],
            sorted(set(head.labels) - set(labels)),
            sorted(labels),
        )
        return None
    return head


def current_head(
    role: str,
    settings: Settings,
    encoder: Encoder,
    graph: str | None = None,
    ledger: Ledger | None = None,
) -> EncoderHead:
    """The head the builder would use: the last kept retrained one, else the examples' head."""
    examples, allowed, extra = role_data(role, graph)
    return head_in_use(role, examples, allowed, encoder, settings, ledger, extra=extra)


def head_in_use(
    role: str,
    examples: Sequence[Example],
    labels: Collection[str],
    encoder: Encoder,
    settings: Settings,
    ledger: Ledger | None = None,
    *,
    extra: NDArray[np.float64] | None = None,
) -> EncoderHead:
    """The last head `agentflow train` kept for ``role`` when it decides only ``labels``,
    else the head trained on ``examples`` (with their side-features ``extra``): the one
    path by which every role's head is found, so that what is trained is what runs."""
    head = active_head(role, settings, encoder, labels=labels, ledger=ledger)
    return head or head_for(role, examples, encoder, settings, extra)


def _seen_keys(
    ledger: Ledger, role: str, old: EncoderHead, examples: Sequence[TrainingRow]
) -> set[str]:
    """Inputs (:attr:`TrainingRow.key`) the current head was trained on: the examples,
    plus, for a retrained head, every labelled input up to the label watermark it recorded."""
    seen = {ex.key for ex in examples}
    kept = [v for v in ledger.head_versions(role) if v.accepted]
    if not kept or kept[-1].sha256 != old.sha256:
        return seen  # the examples' head: it saw no ledger label
    mark = int((kept[-1].metrics or {}).get("label_watermark") or 0)
    ids = {lbl.decision_id for lbl in ledger.labels(role=role) if lbl.id <= mark}
    with_extra = old.n_extra > 0
    rows = [r for r in ledger.decisions_by_id(ids).values() if r.input is not None]
    keys = (input_key(r.input, with_extra) for r in rows)
    return seen | {k for k in keys if k is not None}


def train(
    role: str,
    settings: Settings,
    *,
    graph: str | None = None,
    encoder: Encoder | None = None,
    ledger: Ledger | None = None,
    policy: AcceptancePolicy = AcceptancePolicy(),
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainResult:
    """Distill, retrain, compare on held-out new rows, save and record the new head.

    The held-out slice is drawn only from labelled rows the current head never trained
    on, so that both heads are scored on data new to them; with none, there is nothing
    to learn from and :class:`~agentflow.errors.DataError` says so.
    """
    note = progress or (lambda _stage, _done, _total: None)
    examples, allowed, example_extra = role_data(role, graph)
    own = ledger is None
    ledger = ledger or Ledger.from_settings(settings)
    try:
        note("distill", 0, 1)
        distilled = distill(ledger, role)  # first: a ledger that is not set up fails fast
        encoder = encoder or load_encoder(settings)
        watermark = max((lbl.id for lbl in ledger.labels(role=role)), default=0)
        rows, dropped = training_rows(examples, ledger.labels_for(role), allowed, example_extra)
        if dropped:
            _log.info("%d labelled %s decisions left out of training", dropped, role)
        try:
            old: EncoderHead | None = current_head(role, settings, encoder, graph, ledger)
        except ArtifactError as exc:  # e.g. trained on another encoder: nothing to compare with
            _log.warning("not comparing with the current %s head: %s", role, exc)
            old = None
        shipped = [r for r in rows if r.source == "example"]
        seen = _seen_keys(ledger, role, old, shipped) if old is not None else set()
        by_key = {r.key: r for r in rows}
        # Split on keys: one text with other side-features is another input.
        new = [Example(text=r.key, label=r.label) for r in rows if r.key not in seen]
        if not new:
            raise DataError(
                f"no labelled {role} decision the current head has not trained on",
                hint="label decisions with `agentflow review`, or let escalations accumulate",
            )
        new_fit, new_held = stratified_split(new, policy.test_size, policy.seed)
        fit = [r for r in rows if r.key in seen] + [by_key[e.text] for e in new_fit]
        held = [by_key[e.text] for e in new_held]
        texts = sorted({r.text for r in rows})
        note("encode", 0, len(texts))
        x_all = encoder.encode(texts)
        index = {t: i for i, t in enumerate(texts)}
        note("train", 0, 2)
        candidate = fit_rows(fit, encoder, role, x_all, index)
        threshold = threshold_for(role, settings)
        new_score = score_rows(candidate, held, x_all, index, threshold)
        old_score = score_rows(old, held, x_all, index, threshold) if old is not None else None
        accepted, reason = policy.accepts(old_score, new_score)
        note("train", 1, 2)
        head = fit_rows(rows, encoder, role, x_all, index) if accepted else candidate
        path = (Path(settings.data_dir) / "heads" / f"{role}-{time.time_ns()}.json").resolve()
        result = TrainResult(
            role=role,
            accepted=accepted,
            reason=reason,
            version_id=0,
            path=str(path),
            sha256=head.save(path, key=signing_key(settings)),
            old_sha256=old.sha256 if old else None,
            old=old_score,
            new=new_score,
            n_train=len(fit),
            n_heldout=len(held),
            distilled=distilled,
            sources=dict(Counter(r.source for r in rows)),
            dropped=dropped,
            labels=head.labels,
            threshold=threshold,
            label_watermark=watermark,
        )
        metrics = {
            **result.model_dump(mode="json", exclude={"role", "accepted", "version_id", "path"}),
            **{"graph": graph, "seed": policy.seed, "tolerance": policy.tolerance},
            "artifact": "refit on all rows" if accepted else "the candidate scored above",
        }
        version_id = ledger.record_head_version(role, result.sha256, str(path), metrics, accepted)
        note("train", 2, 2)
    finally:
        if own:
            ledger.close()
    return result.model_copy(update={"version_id": version_id})
