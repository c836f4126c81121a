"""A classification head on sentence embeddings: train, calibrate, save, verify, decide.

The head is multinomial logistic regression on L2-normalised embeddings and hashed
character n-grams of the same text (:mod:`agentflow.models._lexical`), calibrated by
temperature scaling on held-out predictions (a holdout split for large sets, k-fold
otherwise). A head with fewer than two examples in some label cannot be calibrated and
says so (``calibrated=False``), which makes every one of its decisions escalate.

Beside its label, each decision says whether the input is *far* from the training
examples (:mod:`agentflow.models._neighbours`): a confident answer to an input unlike
anything seen is the silent misrouting the escalation policy exists to catch.

Artifacts are plain JSON (no pickle: loading never executes code), signed with the
deployment's key over their content, the digest of the encoder they were trained on and
the digest of their training data (:mod:`agentflow.models.artifact`); an unsigned head,
a changed byte, another key's signature or another encoder is refused.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agentflow.decision import Decision, ModelRef
from agentflow.errors import ArtifactError, DataError
from agentflow.examples import Example
from agentflow.models._lexical import char_ngrams, with_char_ngrams
from agentflow.models._neighbours import (
    decode_exemplars,
    encode_exemplars,
    familiarity,
    held_out_familiarity,
    leave_one_out_familiarity,
    select_exemplars,
)
from agentflow.models.artifact import read_signed, training_digest, write_signed
from agentflow.models.calibration import expected_calibration_error, fit_temperature, softmax
from agentflow.models.encoder import Encoder
from agentflow.signing import SigningKey

__all__ = ["ARTIFACT_FORMAT", "CHAR_FEATURES", "FAR_QUANTILE", "FAR_QUANTILES", "EncoderHead"]

ARTIFACT_FORMAT = "agentflow.head/4"
# /1 (embedding only), /2 (no exemplars) and /3 were never signed: no key vouches for
# them, so they are refused as unsigned and rebuilt or retrained.
FAR_QUANTILE = 0.05
"""Share of training examples (each left out of its own neighbours) that count as far: the
in-distribution escalations the far test costs. On BANKING77 with 10 intents held out it
escalated 7-9 points more of the unseen intents' messages at the router's threshold (two
seeds); 5-6% of in-scope messages were far, about half of them below the threshold anyway
(coverage fell 2.6 points in the exploratory run)."""
FAR_QUANTILES = {"consequence_modeler": 0.01}
"""Roles whose far test escalates a smaller share. For the consequence modeler, a line at
5% (whole domains held out) cut the reads called safe on unseen domains from 92.6% to
86.2%, and 2% to 88.2%, below the 90% that keeps people from approving lookups; at 1%
it is 90.2%, and 77% of calls are still decided without the LLM (81% with no far test)."""
CHAR_FEATURES = 2**13
"""Hashed character n-gram features a head reads beside the embedding (0 turns them off).
With them, accuracy on held-out tools rose 0.71 -> 0.78 for the consequence modeler, on
held-out goals 0.72 -> 0.76 for the loop evaluator (five splits each), and 3x5-fold
cross-validated accuracy 0.970 -> 0.980 for the support router."""
_LARGE = 1000  # above this many examples, one stratified holdout calibrates; below, k-fold
_MIN_CALIBRATION = 20  # fewer held-out predictions than this cannot support a calibration claim
# k-fold is repeated with other shuffles: on a few hundred examples one split's fitted
# temperature moves by ~10% with the shuffle, and with it which decisions escalate.
_CV_REPEATS = 3


def _fit_lr(x: Any, y: NDArray[np.int64], c: float, seed: int) -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    lr.fit(x, y)
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # sklearn folds two classes into one row; unfold to two logits
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    return coef, intercept


def _heldout_logits(
    x: Any, y: NDArray[np.int64], c: float, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]] | None:
    """Logits predicted for examples the model did not see, for calibration.

    Small sets are cross-validated ``_CV_REPEATS`` times, so each example contributes
    that many held-out predictions; large sets use one stratified holdout.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    min_count = int(np.bincount(y).min())
    if min_count < 2:
        return None
    if len(y) >= _LARGE:
        tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
        folds = [(tr, te)]
    else:
        folds = [
            fold
            for repeat in range(_CV_REPEATS)
            for fold in StratifiedKFold(
                n_splits=min(5, min_count), shuffle=True, random_state=seed + repeat
            ).split(x, y)
        ]
    logits, labels = [], []
    for tr, te in folds:
        if len(np.unique(y[tr])) < int(y.max()) + 1:
            continue  # a fold lost a label entirely; its logits would be misaligned
        coef, intercept = _fit_lr(x[tr], y[tr], c, seed)
        logits.append(x[te] @ coef.T + intercept)
        labels.append(y[te])
    if not logits:
        return None
    return np.vstack(logits), np.concatenate(labels)


@dataclass
class EncoderHead:
    """A trained, calibrated classification head for one role."""

    role: str
    """The role it decides for (router, loop_evaluator, consequence_modeler, ...)."""
    labels: list[str]
    """Class names, in logit order."""
    coef: NDArray[np.float64]
    """(n_labels, dim) weights."""
    intercept: NDArray[np.float64]
    """(n_labels,) biases."""
    temperature: float
    """Calibration temperature applied to logits."""
    calibrated: bool
    """False when there was not enough data to calibrate; decisions then escalate."""
    encoder_name: str
    """Name of the encoder it was trained on."""
    encoder_sha256: str
    """Digest of that encoder's whole folder; another encoder is refused."""
    centroids: NDArray[np.float64]
    """(n_labels, dim) unit centroids of the training embeddings, for drift detection."""
    ood_threshold: float
    """Familiarity below which an input counts as far from the training data."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Training facts: sizes, ECE before/after calibration, seconds."""
    n_extra: int = 0
    """Numeric side-features appended to the embedding (0: text only)."""
    char_features: int = 0
    """Hashed character n-gram features after the side-features (0: none, format /1)."""
    exemplars: NDArray[np.float32] | None = None
    """(m, dim) unit training embeddings familiarity is measured against (None: the far
    test uses the centroids)."""
    training_sha256: str = ""
    """Digest of the training data (:func:`~agentflow.models.artifact.training_digest`):
    the examples' labels and texts and the side-features, signed with the head."""
    sha256: str = ""
    """Hash of the artifact content, set on save and on a load whose signature verified."""
    _char_weights: NDArray[np.float64] | None = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        examples: Sequence[Example],
        encoder: Encoder,
        role: str,
        *,
        c: float = 10.0,
        seed: int = 0,
        embeddings: NDArray[np.float32] | None = None,
        extra: NDArray[np.float64] | None = None,
        char_features: int = CHAR_FEATURES,
        far_quantile: float | None = None,
        groups: Sequence[str] | None = None,
    ) -> EncoderHead:
        """Fit and calibrate a head on ``examples`` (pass ``embeddings`` to reuse them).

        ``extra`` holds numeric side-features per example (n, k) that the text alone does
        not carry well (e.g. "was this the last planned step"); decisions must pass the same.
        ``char_features`` sizes the hashed character n-grams read beside the embedding;
        ``far_quantile`` (default: the role's, :data:`FAR_QUANTILES`) is the share of
        training examples the far test would escalate:
        with ``groups`` (one name per example: a run's goal, a tool's domain; by default the
        examples' own ``group``), measured on each example with its whole group held out,
        else with the example alone left out.
        """
        start = time.perf_counter()
        counts = Counter(ex.label for ex in examples)
        if len(counts) < 2:
            raise DataError(
                f"a {role} head needs examples of at least two labels, got {sorted(counts)}",
                hint="add examples for every route/choice",
            )
        labels = sorted(counts)
        index = {label: i for i, label in enumerate(labels)}
        emb = embeddings if embeddings is not None else encoder.encode([ex.text for ex in examples])
        n_extra = 0 if extra is None else int(np.asarray(extra).shape[1])
        dense = emb if extra is None else np.hstack([emb, np.asarray(extra, dtype=np.float32)])
        x = with_char_ngrams(dense, [ex.text for ex in examples], char_features)
        y = np.array([index[ex.label] for ex in examples], dtype=np.int64)
        held = _heldout_logits(x, y, c, seed)
        metrics: dict[str, Any] = {"n_train": len(examples), "n_labels": len(labels)}
        temperature, calibrated = 1.0, False
        if held is not None and len(held[1]) >= _MIN_CALIBRATION:
            logits, held_y = held
            raw = softmax(logits)
            temperature = fit_temperature(logits, held_y)
            scaled = softmax(logits, temperature)
            calibrated = True
            metrics.update(
                n_calibration=len(held_y),
                heldout_accuracy=float((scaled.argmax(1) == held_y).mean()),
                ece_before=expected_calibration_error(raw.max(1), raw.argmax(1) == held_y),
                ece=expected_calibration_error(scaled.max(1), scaled.argmax(1) == held_y),
            )
        coef, intercept = _fit_lr(x, y, c, seed)
        centroids = np.vstack([emb[y == i].mean(axis=0) for i in range(len(labels))])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        # Measured on the float16 exemplars the artifact keeps, so a loaded head draws the
        # line where the trained one did.
        rows = select_exemplars(y, seed=seed)
        memory = emb.astype("<f2").astype(np.float32)
        if far_quantile is None:
            far_quantile = FAR_QUANTILES.get(role, FAR_QUANTILE)
        if groups is None and all(ex.group is not None for ex in examples):
            groups = [str(ex.group) for ex in examples]
        if groups is not None:
            familiar = held_out_familiarity(memory, rows, groups)
            metrics["far_fitted_on"] = "whole groups held out"
        else:
            familiar = leave_one_out_familiarity(memory, rows)
            metrics["far_fitted_on"] = "each example left out"
        metrics["far_quantile"] = far_quantile
        metrics["train_seconds"] = round(time.perf_counter() - start, 3)
        return cls(
            role=role,
            labels=labels,
            coef=np.asarray(coef, dtype=np.float64),
            intercept=np.asarray(intercept, dtype=np.float64),
            temperature=temperature,
            calibrated=calibrated,
            encoder_name=encoder.name,
            encoder_sha256=encoder.sha256,
            centroids=centroids.astype(np.float64),
            ood_threshold=float(np.quantile(familiar, far_quantile)),
            metrics=metrics,
            n_extra=n_extra,
            char_features=char_features,
            exemplars=memory[rows],
            training_sha256=training_digest(examples, extra),
        )

    # ------------------------------------------------------------------ inference
    def probabilities(
        self,
        embeddings: NDArray[np.float32],
        extra: NDArray[np.float64] | None = None,
        *,
        texts: Sequence[str] | None = None,
    ) -> NDArray[np.float64]:
        """Calibrated class probabilities for (n, dim) embeddings of ``texts``.

        Pass the (n, n_extra) side-features the head was trained with, and the texts
        themselves when the head reads character n-grams.
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if self.char_features and (texts is None or len(texts) != len(x)):
            raise ArtifactError(
                f"the {self.role} head reads the texts as well as their embeddings",
                hint="pass texts= with one text per embedding",
            )
        if self.n_extra:
            if extra is None or np.asarray(extra).shape != (len(x), self.n_extra):
                raise ArtifactError(
                    f"the {self.role} head needs {self.n_extra} extra features per input",
                    hint="pass the same side-features the head was trained with",
                )
            x = np.hstack([x, np.asarray(extra, dtype=np.float64)])
        dim = x.shape[1]
        logits = x @ self.coef[:, :dim].T + self.intercept
        if self.char_features:
            if self._char_weights is None:  # contiguous once: a per-call copy costs ~2 ms
                self._char_weights = np.ascontiguousarray(self.coef[:, dim:].T)
            logits += char_ngrams(texts or [], self.char_features) @ self._char_weights
        return softmax(logits, self.temperature)

    def familiarity(self, embeddings: NDArray[np.float32]) -> NDArray[np.float64]:
        """How close each (n, dim) embedding is to the training examples (higher: closer)."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if self.exemplars is None:
            return np.asarray((x @ self.centroids.T).max(axis=1), dtype=np.float64)
        return familiarity(x, self.exemplars)

    def is_far(self, embedding: NDArray[np.float32]) -> bool:
        """True when the input is less familiar than all but ``far_quantile`` of the
        training examples were."""
        return bool(self.familiarity(embedding)[0] < self.ood_threshold)

    def decide(
        self, text: str, encoder: Encoder, *, extra: Sequence[float] | None = None, top_k: int = 3
    ) -> Decision[str]:
        """Embed ``text`` and return the head's decision with its calibrated confidence."""
        start = time.perf_counter()
        self._check_encoder(encoder)
        embedding = encoder.encode_one(text)
        side = None if extra is None else np.asarray([extra], dtype=np.float64)
        probs = self.probabilities(embedding[None, :], side, texts=[text])[0]
        order = np.argsort(probs)[::-1][:top_k]
        best = int(order[0])
        far = self.is_far(embedding)
        return Decision[str](
            role=self.role,
            value=self.labels[best],
            confidence=float(probs[best]),
            source="slm:encoder",
            model=ModelRef(
                name=f"{self.role}-head+{self.encoder_name}", sha256=self.sha256 or None
            ),
            latency_ms=(time.perf_counter() - start) * 1000,
            calibrated=self.calibrated,
            scores={self.labels[int(i)]: round(float(probs[int(i)]), 4) for i in order},
            input=text,
            far=far,
            rationale="far from training data" if far else None,
        )

    def _check_encoder(self, encoder: Encoder) -> None:
        if encoder.sha256 != self.encoder_sha256:
            raise ArtifactError(
                f"the {self.role} head was trained on encoder {self.encoder_sha256[:12]}…, "
                f"but the loaded encoder is {encoder.sha256[:12]}…",
                hint="retrain the head on this encoder (`agentflow train`)",
            )

    # ------------------------------------------------------------------ artifacts
    def _content(self) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "role": self.role,
            "labels": self.labels,
            "coef": np.round(self.coef, 8).tolist(),
            "intercept": np.round(self.intercept, 8).tolist(),
            "temperature": self.temperature,
            "calibrated": self.calibrated,
            "encoder": {"name": self.encoder_name, "sha256": self.encoder_sha256},
            "training_sha256": self.training_sha256,
            "centroids": np.round(self.centroids, 8).tolist(),
            "ood_threshold": self.ood_threshold,
            "metrics": self.metrics,
            "n_extra": self.n_extra,
            "char_features": self.char_features,
            "exemplars": None if self.exemplars is None else encode_exemplars(self.exemplars),
        }

    def save(self, path: Path | str, *, key: SigningKey) -> str:
        """Write the artifact atomically, signed with ``key``; returns its sha256."""
        self.sha256 = write_signed(Path(path), self._content(), key)
        return self.sha256

    @classmethod
    def load(
        cls,
        path: Path | str,
        encoder: Encoder | None = None,
        *,
        key: SigningKey,
        expected_sha256: str | None = None,
    ) -> EncoderHead:
        """Read an artifact whose signature verifies with ``key``, refusing an unsigned,
        modified or corrupt file, another head than ``expected_sha256`` (the ledger's
        record) and, given ``encoder``, a head trained on another encoder."""
        path = Path(path)
        raw, actual = read_signed(path, key, expected_sha256)
        if raw.get("format") != ARTIFACT_FORMAT:
            raise ArtifactError(f"{path} is not an {ARTIFACT_FORMAT} artifact")
        try:
            exemplars = raw.get("exemplars")
            head = cls(
                role=raw["role"],
                labels=list(raw["labels"]),
                coef=np.asarray(raw["coef"], dtype=np.float64),
                intercept=np.asarray(raw["intercept"], dtype=np.float64),
                temperature=float(raw["temperature"]),
                calibrated=bool(raw["calibrated"]),
                encoder_name=raw["encoder"]["name"],
                encoder_sha256=raw["encoder"]["sha256"],
                centroids=np.asarray(raw["centroids"], dtype=np.float64),
                ood_threshold=float(raw["ood_threshold"]),
                metrics=dict(raw["metrics"]),
                n_extra=int(raw.get("n_extra", 0)),
                char_features=int(raw.get("char_features", 0)),
                exemplars=None if exemplars is None else decode_exemplars(exemplars),
                training_sha256=str(raw["training_sha256"]),
                sha256=actual,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"head artifact {path} is corrupt: {exc}") from exc
        if encoder is not None:
            head._check_encoder(encoder)
        return head
