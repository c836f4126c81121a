"""Temperature scaling and expected calibration error.

A small model's raw scores are not probabilities. Temperature scaling (Guo et al.,
2017) fits one scalar ``T`` on held-out logits so that ``softmax(logits / T)`` minimises
negative log-likelihood; it never changes the argmax, only how sure the model claims to
be. ECE (15 equal-width bins) says how far claimed confidence is from accuracy.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

__all__ = ["expected_calibration_error", "fit_temperature", "softmax"]

FloatArray = NDArray[np.floating]


def softmax(logits: FloatArray, temperature: float = 1.0) -> NDArray[np.float64]:
    """Row-wise softmax of ``logits / temperature``, numerically stable."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def fit_temperature(logits: FloatArray, labels: NDArray[np.integer]) -> float:
    """The temperature minimising NLL of ``labels`` under ``softmax(logits / T)``."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError("fit_temperature needs a 2-D logits array and one label per row")

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.mean(np.log(p[np.arange(len(labels)), labels] + 1e-12)))

    # Bounded in log space. The lower bound matters: with few, perfectly predicted held-out
    # rows the NLL keeps falling as T -> 0 and the model would claim certainty it never earned.
    result = minimize_scalar(nll, bounds=(np.log(0.25), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def expected_calibration_error(
    confidences: FloatArray, correct: NDArray[np.bool_], n_bins: int = 15
) -> float:
    """ECE: the bin-weighted mean |accuracy - confidence| over equal-width bins."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if len(confidences) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidences > lo) & (confidences <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidences[mask].mean())
    return float(ece)
