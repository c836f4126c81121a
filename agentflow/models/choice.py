"""Constrained choice shared by the local and the remote SLM: prompt joining, GBNF, calibration.

:func:`joiner` says how an answer follows its prompt, :func:`choice_grammar` and
:func:`check_grammar` write and check the GBNF grammars llama.cpp constrains decoding
with, :func:`descend_trie` picks a choice greedily from next-token logits, and
:class:`ChoiceCalibrator` with :func:`calibrate_chooser` fits the per-role temperature
that makes a generative model's choice confidence trustworthy (DESIGN.md). Used by
:mod:`agentflow.models.gguf` and :mod:`agentflow.models.remote`.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agentflow.decision import Decision
from agentflow.errors import DataError, ModelError
from agentflow.models.calibration import expected_calibration_error, fit_temperature, softmax

__all__ = [
    "ChoiceCalibrator",
    "Chooser",
    "RawChooser",
    "calibrate_chooser",
    "check_grammar",
    "choice_grammar",
    "descend_trie",
    "joiner",
]

RawChooser = Callable[[str, str, Sequence[str]], tuple[str, dict[str, float]]]
"""``(prefix, text, choices) -> (value, uncalibrated probability per choice)``."""


def joiner(prompt: str) -> str:
    """What separates a prompt from its answer: one space, unless it ends in whitespace."""
    return "" if not prompt or prompt[-1].isspace() else " "


# --- GBNF ---------------------------------------------------------------------------


def _gbnf_literal(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def choice_grammar(choices: Sequence[str], *, lead: str = "") -> str:
    """A GBNF grammar whose only sentences are ``lead + choice`` for each choice."""
    if not choices:
        raise ModelError("a choice grammar needs at least one choice", hint="pass the labels")
    alternatives = " | ".join(_gbnf_literal(c) for c in choices)
    body = f"{_gbnf_literal(lead)} ({alternatives})" if lead else alternatives
    return f"root ::= {body}\n"


_GBNF = re.compile(
    r"""(?P<skip>[ \t\r]+|\#[^\n]*|\n)
      | (?P<define>::=)
      | (?P<literal>"(?:[^"\\\n]|\\(?:[nrt"\\\[\]]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}))*")
      | (?P<klass>\[(?:[^\]\\\n]|\\(?:[nrt"\\\[\]^-]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}))*\])
      | (?P<name>[a-zA-Z0-9-]+)
      | (?P<op>[|()*+?.]|\{[0-9]*(?:,[0-9]*)?\})""",
    re.VERBOSE,
)


def check_grammar(grammar: str) -> None:
    """Raise ModelError unless ``grammar`` is well-formed GBNF with a ``root`` rule.

    llama.cpp answers an invalid grammar with an empty completion (HTTP 200), so every
    grammar is checked here first: syntax, balanced parentheses, defined references.
    """
    tokens = []
    pos = 0
    while pos < len(grammar):
        match = _GBNF.match(grammar, pos)
        if match is None:
            raise ModelError(
                f"invalid GBNF at offset {pos}: {grammar[pos : pos + 20]!r}",
                hint="fix the grammar (see llama.cpp grammars/README.md)",
            )
        if match.lastgroup != "skip":
            tokens.append((match.lastgroup, match.group()))
        pos = match.end()
    defined: set[str] = set()
    used: set[str] = set()
    depth = 0
    for i, (kind, value) in enumerate(tokens):
        if kind == "name":
            is_def = i + 1 < len(tokens) and tokens[i + 1][0] == "define"
            if is_def and depth:
                raise ModelError(f"rule {value!r} defined inside parentheses", hint="close them")
            (defined if is_def else used).add(value)
        elif kind == "define" and (i == 0 or tokens[i - 1][0] != "name"):
            raise ModelError("'::=' without a rule name in GBNF", hint="write `name ::= ...`")
        elif value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            if depth < 0:
                raise ModelError("unbalanced ')' in GBNF", hint="balance the parentheses")
    if depth:
        raise ModelError("unclosed '(' in GBNF", hint="balance the parentheses")
    if "root" not in defined:
        raise ModelError("GBNF grammar has no root rule", hint="add `root ::= ...`")
    if used - defined:
        raise ModelError(
            f"GBNF references undefined rules {sorted(used - defined)}",
            hint="define every rule the grammar uses",
        )


# --- calibration (shared with the remote SLM) ----------------------------------------


class ChoiceCalibrator:
    """Temperatures fitted per (role, sha256 of the prefix); applied to choice probabilities."""

    def __init__(self) -> None:
        self._temperatures: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(role: str, prefix: str) -> tuple[str, str]:
        """``(role, sha256(prefix))``: a new prompt needs a new calibration."""
        return role, hashlib.sha256(prefix.encode("utf-8")).hexdigest()

    def temperature(self, role: str, prefix: str) -> float | None:
        """The fitted temperature, or None when this role + prefix was never calibrated."""
        with self._lock:
            return self._temperatures.get(self.key(role, prefix))

    def set_temperature(self, role: str, prefix: str, temperature: float) -> None:
        """Install a temperature (fitted now, or loaded from an earlier calibration)."""
        if not temperature > 0:
            raise DataError(f"temperature must be positive, got {temperature}", hint="refit it")
        with self._lock:
            self._temperatures[self.key(role, prefix)] = float(temperature)

    def apply(
        self, role: str, prefix: str, value: str, scores: dict[str, float]
    ) -> tuple[float, dict[str, float], bool]:
        """``(confidence of value, scores, calibrated)`` after temperature scaling."""
        temperature = self.temperature(role, prefix)
        if temperature is None:
            return scores[value], dict(scores), False
        names = list(scores)
        logits = np.log(np.clip([scores[n] for n in names], 1e-12, None))
        scaled = {n: float(p) for n, p in zip(names, softmax(logits, temperature), strict=True)}
        return scaled[value], scaled, True

    def fit(
        self,
        role: str,
        prefix: str,
        choices: Sequence[str],
        predictions: Sequence[tuple[str, dict[str, float]]],
        labels: Sequence[str],
    ) -> dict[str, Any]:
        """Fit and install the temperature from raw predictions; ECE before/after, accuracy."""
        index = {c: i for i, c in enumerate(choices)}
        logits = np.log(np.clip([[s[c] for c in choices] for _, s in predictions], 1e-12, None))
        temperature = fit_temperature(logits, np.array([index[label] for label in labels]))
        picked = np.array([index[v] for v, _ in predictions])
        correct = np.array([v == label for (v, _), label in zip(predictions, labels, strict=True)])
        before = np.exp(logits[np.arange(len(picked)), picked])
        after = softmax(logits, temperature)[np.arange(len(picked)), picked]
        self.set_temperature(role, prefix, temperature)
        return {
            "role": role,
            "prefix_sha256": self.key(role, prefix)[1],
            "temperature": temperature,
            "ece_before": expected_calibration_error(before, correct),
            "ece_after": expected_calibration_error(after, correct),
            "accuracy": float(correct.mean()),
            "n": len(labels),
        }


def calibrate_chooser(
    calibrator: ChoiceCalibrator,
    choose_raw: RawChooser,
    role: str,
    prefix: str,
    examples: Sequence[tuple[str, str]],
    choices: Sequence[str],
) -> dict[str, Any]:
    """Run ``choose_raw`` on labelled ``(text, label)`` examples and fit ``calibrator``."""
    if not examples:
        raise DataError(f"calibrating {role} needs labelled examples", hint="pass (text, label)")
    unknown = sorted({label for _, label in examples} - set(choices))
    if unknown:
        raise DataError(f"labels {unknown} are not among the choices", hint="fix the examples")
    predictions = [choose_raw(prefix, text, choices) for text, _ in examples]
    return calibrator.fit(role, prefix, choices, predictions, [label for _, label in examples])


def descend_trie(
    seqs: Sequence[list[int]],
    options: Sequence[str],
    next_logits: Callable[[list[int]], NDArray[np.float32]],
) -> tuple[int, list[float]]:
    """Greedy descent of the token trie of ``seqs`` (one token sequence per option).

    ``next_logits(prefix)`` gives the next-token logits after a prefix. At each branching
    point the argmax among the allowed tokens wins; returns the chosen index and each
    option's probability (a branch not entered shares its probability evenly).
    """
    for i, a in enumerate(seqs):
        for j, b in enumerate(seqs):
            if i != j and b[: len(a)] == a:
                raise ModelError(
                    f"choice {options[i]!r} tokenises as the beginning of {options[j]!r}",
                    hint="make choices distinct and none the beginning of another",
                )
    scores = [0.0] * len(options)
    alive = list(range(len(options)))
    mass, depth = 1.0, 0
    while len(alive) > 1:
        while len({seqs[i][depth] for i in alive}) == 1:
            depth += 1
        logits = next_logits(seqs[alive[0]][:depth])
        groups: dict[int, list[int]] = {}
        for i in alive:
            groups.setdefault(seqs[i][depth], []).append(i)
        ids = list(groups)
        p = softmax(logits[ids].astype(np.float64))
        best = int(np.argmax(p))
        for j, token in enumerate(ids):
            for i in groups[token] if j != best else ():
                scores[i] = mass * float(p[j]) / len(groups[token])
        mass *= float(p[best])
        alive = groups[ids[best]]
        depth += 1
    scores[alive[0]] = mass
    return alive[0], scores


class Chooser:
    """``choose`` and ``calibrate`` for any model that can score a closed set of choices.

    Subclasses provide ``_choose_raw(prefix, text, choices) -> (value, raw scores)``,
    ``calibration`` (a :class:`ChoiceCalibrator`), ``ref`` (the model's identity) and
    ``source`` (the ``Decision.source`` tag).
    """

    source: Any
    ref: Any
    calibration: ChoiceCalibrator

    def _choose_raw(
        self, prefix: str, text: str, choices: Sequence[str]
    ) -> tuple[str, dict[str, float]]:
        raise NotImplementedError

    def choose(self, role: str, prefix: str, text: str, choices: Sequence[str]) -> Decision[str]:
        """Pick one of ``choices`` to follow ``prefix + text``; ModelOutputError otherwise.

        Confidence is the calibrated choice probability when a temperature was fitted for
        this role and prefix (``calibrated=True``), else the raw one (which escalates).
        """
        start = time.perf_counter()
        value, raw = self._choose_raw(prefix, text, choices)
        confidence, scores, calibrated = self.calibration.apply(role, prefix, value, raw)
        return Decision[str](
            role=role,
            value=value,
            confidence=min(1.0, max(0.0, confidence)),
            source=self.source,
            model=self.ref,
            latency_ms=(time.perf_counter() - start) * 1000,
            calibrated=calibrated,
            scores=scores,
            input=text,
        )

    def calibrate(
        self, role: str, prefix: str, examples: Sequence[tuple[str, str]], choices: Sequence[str]
    ) -> dict[str, Any]:
        """Fit a temperature for ``role`` + ``prefix`` on labelled ``(text, label)`` examples.

        Returns ``temperature``, ``ece_before``, ``ece_after``, ``accuracy`` and ``n``.
        """
        return calibrate_chooser(
            self.calibration, self._choose_raw, role, prefix, examples, choices
        )
