"""Router evaluation: train a head on one file, measure it on another.

Accuracy is top-1 over in-scope test rows; coverage is the share of in-scope rows the
head handles without the LLM (confidence at or above the threshold, and not far from its
training examples); ``oos_escalation_rate`` is the share of out-of-scope rows that are
escalated, and ``held_out_escalated`` the same for the messages of intents left out of
training whole (``holdout_intents``: out-of-scope data made from in-scope data, to tune
the rule without any). The curve gives the trade-off at other thresholds. Latency is one
message at a time, after warm-up, as a request would see it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agentflow.errors import DataError
from agentflow.examples import Example
from agentflow.models.calibration import expected_calibration_error
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead

__all__ = ["evaluate_router", "percentiles"]

Progress = Callable[[str, int, int], None]
SplitHook = Callable[[EncoderHead, np.ndarray], None]
"""Called with each split's head and its test mask, to measure what the report does not."""


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of latency samples, rounded to 0.01 ms."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p95_ms": round(float(np.percentile(arr, 95)), 2),
    }


def evaluate_router(
    train: Sequence[Example],
    test: Sequence[Example],
    encoder: Encoder,
    *,
    threshold: float = 0.8,
    oos_label: str | None = None,
    holdout_intents: int = 0,
    seed: int = 0,
    latency_samples: int = 300,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train a router head on ``train`` and report accuracy, coverage, ECE and latency.

    ``holdout_intents`` labels (chosen with ``seed``) are removed from training whole;
    their rows, from both files, are messages for intents the router never saw, and the
    report says what share of them is escalated. A message is escalated when the head's
    confidence is below the threshold or the input is far from the training examples.
    """
    note = progress or (lambda _stage, _done, _total: None)
    in_scope_train = [ex for ex in train if ex.label != oos_label]
    held = _held_out_intents(in_scope_train, holdout_intents, seed)
    unseen = [ex for ex in [*in_scope_train, *test] if ex.label in held]
    in_scope_train = [ex for ex in in_scope_train if ex.label not in held]
    test = [ex for ex in test if ex.label not in held]
    note("encode train", 0, len(in_scope_train))
    x_train = encoder.encode([ex.text for ex in in_scope_train])
    note("train head", 0, 1)
    head = EncoderHead.train(in_scope_train, encoder, "router", embeddings=x_train)
    note("encode test", 0, len(test) + len(unseen))
    conf, pred, far = _score(head, encoder, test)
    gold = np.array([ex.label for ex in test])
    in_scope = gold != oos_label if oos_label is not None else np.ones(len(gold), dtype=bool)
    correct = pred == gold
    covered = in_scope & (conf >= threshold) & ~far
    oos = ~in_scope
    unseen_conf, _, unseen_far = _score(head, encoder, unseen)

    # Latency: the full decide() path (embed + head), one message at a time, after warm-up.
    texts = [ex.text for ex in test] or [ex.text for ex in train]
    n = max(200, min(latency_samples, 10_000))
    for text in texts[:10]:
        head.decide(text, encoder)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        head.decide(texts[i % len(texts)], encoder)
        samples.append((time.perf_counter() - start) * 1000)
        if i % 50 == 0:
            note("latency", i, n)

    n_in = int(in_scope.sum())
    has_oos = oos_label is not None and bool(oos.any())
    curve = []
    for t in _CURVE:
        row: dict[str, Any] = {
            "threshold": t,
            **_at(t, conf[in_scope], correct[in_scope], far[in_scope]),
        }
        if has_oos:
            row["oos_escalated"] = _escalated(t, conf[oos], far[oos])
        if held:
            row["held_out_escalated"] = _escalated(t, unseen_conf, unseen_far)
        curve.append(row)
    return {
        "n": len(test),
        "n_in_scope": n_in,
        "n_train": len(in_scope_train),
        "labels": len(head.labels),
        "threshold": threshold,
        "accuracy": round(float(correct[in_scope].mean()), 4) if n_in else None,
        "coverage": round(float(covered.sum() / n_in), 4) if n_in else None,
        "accuracy_on_covered": (
            round(float(correct[covered].mean()), 4) if covered.any() else None
        ),
        "far_in_scope": round(float(far[in_scope].mean()), 4) if n_in else None,
        "oos_escalation_rate": _escalated(threshold, conf[oos], far[oos]) if has_oos else None,
        "oos_escalation_rate_confidence_only": (
            round(float((conf[oos] < threshold).mean()), 4) if has_oos else None
        ),
        "held_out_intents": sorted(held),
        "n_held_out": len(unseen),
        "held_out_escalated": _escalated(threshold, unseen_conf, unseen_far) if held else None,
        "held_out_escalated_confidence_only": (
            round(float((unseen_conf < threshold).mean()), 4) if held else None
        ),
        "curve": curve,
        "ece": round(expected_calibration_error(conf[in_scope], correct[in_scope]), 4),
        "ece_heldout_train": head.metrics.get("ece"),
        "temperature": round(head.temperature, 4),
        **percentiles(samples),
        "latency_samples": n,
        "train_seconds": head.metrics["train_seconds"],
        "cores": os.cpu_count(),
    }


_CURVE = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
"""Confidence thresholds the report's curve is drawn at."""


def _held_out_intents(train: Sequence[Example], k: int, seed: int) -> set[str]:
    """``k`` labels of ``train`` chosen with ``seed``, to be left out of training whole."""
    if k <= 0:
        return set()
    names = sorted({ex.label for ex in train})
    if k > len(names) - 2:
        raise DataError(
            f"cannot hold out {k} of {len(names)} intents: training needs at least two",
            hint=f"pass --holdout-intents between 1 and {len(names) - 2}",
        )
    return {str(x) for x in np.random.default_rng(seed).choice(names, size=k, replace=False)}


def _score(
    head: EncoderHead, encoder: Encoder, rows: Sequence[Example]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence, predicted label and the far flag of each row."""
    if not rows:
        return np.zeros(0), np.array([], dtype=object), np.zeros(0, dtype=bool)
    texts = [ex.text for ex in rows]
    emb = encoder.encode(texts)
    probs = head.probabilities(emb, texts=texts)
    far = head.familiarity(emb) < head.ood_threshold
    return probs.max(axis=1), np.array(head.labels)[probs.argmax(axis=1)], far


def _escalated(threshold: float, conf: np.ndarray, far: np.ndarray) -> float | None:
    """Share of rows escalated: below the threshold, or far from the training examples."""
    return round(float(((conf < threshold) | far).mean()), 4) if len(conf) else None


def _at(threshold: float, conf: np.ndarray, correct: np.ndarray, far: np.ndarray) -> dict[str, Any]:
    covered = (conf >= threshold) & ~far
    return {
        "coverage": round(float(covered.mean()), 4) if len(conf) else None,
        "accuracy_on_covered": round(float(correct[covered].mean()), 4) if covered.any() else None,
    }


def evaluate_grouped(
    role: str,
    examples: Sequence[Example],
    groups: Sequence[str],
    encoder: Encoder,
    *,
    extra: np.ndarray | None = None,
    test_share: float = 0.2,
    threshold: float = 0.8,
    splits: int = 5,
    folds: bool = False,
    on_split: SplitHook | None = None,
) -> dict[str, Any]:
    """Hold out whole groups (tools, goals) so the test rows are truly unseen, then report
    accuracy, coverage at the threshold, accuracy on covered rows, ECE and per-class recall.

    On a few hundred rows one 20% split moves accuracy by ±5 points, so ``splits``
    different splits (seeds 0..splits-1) are averaged and the spread is reported. With
    ``folds`` the groups are dealt into ``splits`` folds instead and each fold is held out
    once, so every row is tested exactly once (``test_share`` is then 1/splits): a figure
    per group (per domain) needs that. ``on_split`` sees each split's head and test rows.
    """
    x = encoder.encode([ex.text for ex in examples])
    names = sorted(set(groups))
    if folds and not 2 <= splits <= len(names):
        raise DataError(
            f"cannot deal {len(names)} groups into {splits} folds",
            hint=f"pass between 2 and {len(names)} splits",
        )
    if folds:
        order = np.random.default_rng(0).permutation(len(names))
        held_out = [{names[int(i)] for i in order[k::splits]} for k in range(splits)]
    else:  # the same draws as before folds existed, so earlier figures stay comparable
        size = max(1, int(len(names) * test_share))
        held_out = [
            set(np.random.default_rng(seed).choice(names, size=size, replace=False).tolist())
            for seed in range(splits)
        ]
    runs = [
        _grouped_split(role, examples, groups, encoder, x, extra, held, threshold, on_split)
        for held in held_out
    ]
    covered = [r["accuracy_on_covered"] for r in runs if r["accuracy_on_covered"] is not None]
    classes = sorted({c for r in runs for c in r["recall"]})
    return {
        "role": role,
        "splits": splits,
        "n_train": round(float(np.mean([r["n_train"] for r in runs])), 1),
        "n_test": round(float(np.mean([r["n_test"] for r in runs])), 1),
        "held_out_groups": runs[0]["held_out_groups"],
        "accuracy": round(float(np.mean([r["accuracy"] for r in runs])), 4),
        "accuracy_sd": round(float(np.std([r["accuracy"] for r in runs])), 4),
        "accuracy_by_split": [r["accuracy"] for r in runs],
        "coverage": round(float(np.mean([r["coverage"] for r in runs])), 4),
        "accuracy_on_covered": round(float(np.mean(covered)), 4) if covered else None,
        "ece": round(float(np.mean([r["ece"] for r in runs])), 4),
        "recall": {
            c: round(float(np.mean([r["recall"][c] for r in runs if c in r["recall"]])), 4)
            for c in classes
        },
    }


def _grouped_split(
    role: str,
    examples: Sequence[Example],
    groups: Sequence[str],
    encoder: Encoder,
    x: np.ndarray,
    extra: np.ndarray | None,
    held: set[str],
    threshold: float,
    on_split: SplitHook | None,
) -> dict[str, Any]:
    test_mask = np.array([g in held for g in groups])
    train = [ex for ex, t in zip(examples, test_mask, strict=True) if not t]
    head = EncoderHead.train(
        train,
        encoder,
        role,
        embeddings=x[~test_mask],
        extra=None if extra is None else extra[~test_mask],
    )
    probs = head.probabilities(
        x[test_mask],
        None if extra is None else extra[test_mask],
        texts=[ex.text for ex, t in zip(examples, test_mask, strict=True) if t],
    )
    pred = np.array(head.labels)[probs.argmax(1)]
    gold = np.array([ex.label for ex, t in zip(examples, test_mask, strict=True) if t])
    conf = probs.max(1)
    correct = pred == gold
    covered = conf >= threshold
    if on_split is not None:
        on_split(head, test_mask)
    return {
        "n_train": len(train),
        "n_test": int(test_mask.sum()),
        "held_out_groups": len(held),
        "accuracy": round(float(correct.mean()), 4),
        "coverage": round(float(covered.mean()), 4),
        "accuracy_on_covered": round(float(correct[covered].mean()), 4) if covered.any() else None,
        "ece": round(expected_calibration_error(conf, correct), 4),
        "recall": {c: round(float(correct[gold == c].mean()), 4) for c in sorted(set(gold))},
    }
