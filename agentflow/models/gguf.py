"""The local generative SLM: a GGUF through llama-cpp-python, constrained to choices or a schema.

Everything runs on the token level, without llama.cpp's samplers:

- The prompt is ``prefix + text``. The prefix up to its last newline is tokenised once
  (special tokens allowed) and stays in the KV cache: each call compares its tokens with
  the evaluated ones and evaluates only the new suffix. User text is never tokenised with
  special tokens, so it cannot forge control tokens.
- :meth:`GgufModel.choose` appends each choice to the prompt (after one space unless the
  prompt ends in whitespace, see :func:`joiner`), builds the token trie of the choices
  and descends it greedily: argmax among the allowed tokens, stopping as soon as one
  choice remains — usually one forward pass. Confidence is the constrained-decoding
  probability of the chosen path (softmax over the allowed tokens at each step,
  multiplied), what a grammar allowing only these choices gives. A choice in a branch the
  descent did not enter gets that branch's probability, split evenly among its choices.
- :meth:`GgufModel.extract` writes the JSON skeleton (braces, keys, commas) itself and
  generates only the values: bool/Literal/Enum fields through the same constrained
  choice (one forward pass), str/int/float fields by a greedy loop over precomputed
  token classes with a token budget. Other schemas fall back to a JSON-schema grammar.

An uncalibrated generative model's confidence is not trusted (DESIGN.md): decisions are
``calibrated=False`` until :meth:`GgufModel.calibrate` fitted a temperature for that role
and prefix. :class:`ChoiceCalibrator`, :func:`choice_grammar` and :func:`check_grammar`
are shared with the remote SLM (:mod:`agentflow.models.remote`).
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import math
import re
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from agentflow.decision import Decision, ModelRef
from agentflow.errors import DataError, ModelError, ModelOutputError
from agentflow.models.calibration import expected_calibration_error, fit_temperature, softmax
from agentflow.models.registry import ModelFile, gguf_file
from agentflow.settings import Settings

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = [
    "ChoiceCalibrator",
    "GgufModel",
    "calibrate_chooser",
    "check_grammar",
    "choice_grammar",
    "joiner",
    "load_gguf",
]

M = TypeVar("M", bound=BaseModel)
RawChooser = Callable[[str, str, Sequence[str]], tuple[str, dict[str, float]]]
"""``(prefix, text, choices) -> (value, uncalibrated probability per choice)``."""

_STR_BUDGET = 32  # tokens per free string value; a longer value is cut and closed
_NUM_BUDGET = 16  # tokens per number


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


# --- schema planning and free-value token classes -------------------------------------


@dataclass(frozen=True)
class _Field:
    """How one JSON value is produced."""

    key: str
    """JSON key (the field's alias when it has one)."""
    kind: Literal["choice", "str", "int", "float"]
    """Constrained choice among ``options``, or a free value of that type."""
    options: tuple[str, ...] = ()
    """JSON texts allowed for a choice field (``null`` included when optional)."""
    nullable: bool = False
    """Whether a free value may be ``null``."""


def _plan_field(key: str, annotation: Any) -> _Field | None:
    nullable = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        nullable, annotation = True, args[0]
    null = ("null",) if nullable else ()
    if annotation is bool:
        return _Field(key, "choice", ("true", "false", *null))
    values: tuple[Any, ...] | None = None
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = tuple(member.value for member in annotation)
    if values is not None:
        if not all(v is None or isinstance(v, str | int | float | bool) for v in values):
            return None
        texts = dict.fromkeys([*(json.dumps(v, ensure_ascii=False) for v in values), *null])
        return _Field(key, "choice", tuple(texts))
    if annotation is str:
        return _Field(key, "str", nullable=nullable)
    if annotation is int:
        return _Field(key, "int", nullable=nullable)
    if annotation is float:
        return _Field(key, "float", nullable=nullable)
    return None


def _plan(schema: type[BaseModel]) -> list[_Field] | None:
    """The fields of ``schema`` as value generators, or None when one is not supported."""
    plan = []
    for name, info in schema.model_fields.items():
        key = info.validation_alias if isinstance(info.validation_alias, str) else None
        spec = _plan_field(key or info.alias or name, info.annotation)
        if spec is None:
            return None
        plan.append(spec)
    return plan


_BODY = re.compile(r'[^"\\\x00-\x1f\x7f]+')
_CLOSE = re.compile(r'[^"\\\x00-\x1f\x7f]*"[\s,}\]]*')
_TERM = re.compile(r"\s*[,}]")


class _Vocab:
    """Which tokens may continue a free JSON string or number (built once, ~1 s)."""

    def __init__(self, pieces: list[str | None]) -> None:
        def ids(test: Callable[[str], object]) -> NDArray[np.int64]:
            return np.array([i for i, s in enumerate(pieces) if s and test(s)], dtype=np.int64)

        self.pieces = pieces
        close = ids(_CLOSE.fullmatch)
        term = ids(_TERM.match)
        digits = ids(lambda s: s.isascii() and s.isdigit())
        dot = ids(lambda s: s == ".")
        self.is_close = np.zeros(len(pieces), dtype=bool)
        self.is_close[close] = True
        self.is_term = np.zeros(len(pieces), dtype=bool)
        self.is_term[term] = True
        join = np.concatenate
        self.sets = {
            "str": join([ids(_BODY.fullmatch), close]),
            "digits": digits,
            "term": term,
            "digits+term": join([digits, term]),
            "dot+term": join([dot, term]),
            "digits+dot+term": join([digits, dot, term]),
        }

    def allowed(self, kind: str, value: str) -> NDArray[np.int64]:
        """Token ids that may follow ``value`` (the JSON text so far) of a ``kind`` field."""
        if kind == "str":
            return self.sets["str"]
        if value.endswith(("-", ".")):
            return self.sets["digits"]
        zero = value in ("0", "-0")  # JSON forbids leading zeros
        if kind == "int":
            return self.sets["term" if zero else "digits+term"]
        if "." in value:
            return self.sets["digits+term"]
        return self.sets["dot+term" if zero else "digits+dot+term"]


# --- the model --------------------------------------------------------------------------


class GgufModel:
    """A verified GGUF loaded once, answering constrained choices and schema extractions.

    llama.cpp contexts are not re-entrant: every public method holds one lock.
    """

    def __init__(self, model: ModelFile, *, n_ctx: int = 2048, n_threads: int = 2) -> None:
        from llama_cpp import Llama

        self.file = model
        """The verified model file."""
        self.ref = ModelRef(name=model.name, sha256=model.sha256)
        """Identity written into every decision."""
        self.calibration = ChoiceCalibrator()
        """Temperatures fitted per (role, prefix) by :meth:`calibrate`."""
        self._llm: Llama = Llama(
            model_path=str(model.path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=False,  # a 262k-wide row per prompt token costs more than the model
            verbose=False,
        )
        self._n_vocab = self._llm.n_vocab()
        self._lock = threading.Lock()
        self._heads: dict[str, list[int]] = {}
        self._vocab: _Vocab | None = None

    def reset(self) -> None:
        """Forget the KV cache; the next call evaluates its whole prompt."""
        with self._lock:
            self._llm.reset()

    # --- tokens and the KV cache ------------------------------------------------------

    def _tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _split_prompt(self, prefix: str) -> tuple[list[int], str]:
        # Cut at the last newline: the head never moves (cacheable) and the rest is
        # tokenised together with the text, so "Request: " + "hi" reads as natural tokens.
        cut = prefix.rfind("\n") + 1
        head, tail = prefix[:cut], prefix[cut:]
        tokens = self._heads.get(head)
        if tokens is None:
            tokens = self._llm.tokenize(head.encode("utf-8"), add_bos=True, special=True)
            if len(self._heads) >= 16:  # a handful of roles; never grow without bound
                self._heads.pop(next(iter(self._heads)))
            self._heads[head] = tokens
        return tokens, tail

    def _logits(self, tokens: list[int]) -> NDArray[np.float32]:
        """Next-token logits after ``tokens`` (a view, valid until the next evaluation)."""
        from llama_cpp import llama_get_logits_ith

        llm = self._llm
        if not tokens:
            raise ModelError("nothing to evaluate: empty prompt", hint="pass a prefix or a text")
        if len(tokens) >= llm.n_ctx():
            raise ModelError(
                f"prompt of {len(tokens)} tokens fills the context window of {llm.n_ctx()}",
                hint="shorten the few-shot prefix or the text, or raise AGENTFLOW_N_CTX",
            )
        cached = llm._input_ids
        m = min(len(cached), len(tokens))
        same = cached[:m] == np.asarray(tokens[:m], dtype=cached.dtype)
        common = m if bool(same.all()) else int(np.argmin(same))
        if not (common == len(tokens) == llm.n_tokens and not llm._requires_eval):
            # Evaluate at least the last token so the logits belong to this prompt.
            llm.n_tokens = min(common, len(tokens) - 1)
            llm.eval(tokens[llm.n_tokens :])
        ptr = llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def _descend(
        self, head: list[int], doc: str, options: Sequence[str]
    ) -> tuple[int, list[float]]:
        """Greedy constrained descent over ``doc + option``: chosen index, probabilities."""
        if len(options) == 1:
            return 0, [1.0]
        seqs = [head + self._tokenize(doc + option) for option in options]
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
            logits = self._logits(seqs[alive[0]][:depth])
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

    # --- constrained choice -----------------------------------------------------------

    def _choose_raw(
        self, prefix: str, text: str, choices: Sequence[str]
    ) -> tuple[str, dict[str, float]]:
        if not choices:
            raise ModelError("choose needs at least one choice", hint="pass the labels")
        with self._lock:
            head, tail = self._split_prompt(prefix)
            sep = joiner(prefix + text)
            index, probs = self._descend(head, tail + text, [sep + c for c in choices])
        return choices[index], dict(zip(choices, probs, strict=True))

    def choose(self, role: str, prefix: str, text: str, choices: Sequence[str]) -> Decision[str]:
        """Pick one of ``choices`` to follow ``prefix + text`` (see the module docstring)."""
        start = time.perf_counter()
        value, raw = self._choose_raw(prefix, text, choices)
        confidence, scores, calibrated = self.calibration.apply(role, prefix, value, raw)
        return Decision[str](
            role=role,
            value=value,
            confidence=min(1.0, max(0.0, confidence)),
            source="slm:gguf",
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

        Returns ``temperature``, ``ece_before``, ``ece_after``, ``accuracy`` and ``n``;
        afterwards :meth:`choose` for that role and prefix says ``calibrated=True``.
        """
        return calibrate_chooser(
            self.calibration, self._choose_raw, role, prefix, examples, choices
        )

    # --- schema extraction ------------------------------------------------------------

    def extract(self, role: str, prefix: str, text: str, schema: type[M]) -> Decision[M]:
        """A validated ``schema`` instance read from ``text``; bad output: ModelOutputError.

        Confidence is the product of the choice fields' probabilities times the geometric
        mean of the free fields' constrained token probabilities. Never calibrated.
        """
        start = time.perf_counter()
        plan = _plan(schema)
        with self._lock:
            head, tail = self._split_prompt(prefix)
            doc = tail + text + joiner(prefix + text)
            if plan is None:
                raw = self._extract_by_grammar(head, doc, schema)
                confidence, note = 0.0, "generic JSON-schema grammar: no confidence estimate"
            else:
                raw, confidence = self._extract_by_skeleton(head, doc, plan)
                note = None
        try:
            instance = schema.model_validate_json(raw)
        except ValidationError as exc:
            raise ModelOutputError(
                f"{schema.__name__} rejected the model output {raw[:300]!r}: "
                f"{exc.errors()[0]['msg'] if exc.errors() else exc}"
            ) from exc
        return Decision[M](
            role=role,
            value=instance,
            confidence=min(1.0, max(0.0, confidence)),
            source="slm:gguf",
            model=self.ref,
            latency_ms=(time.perf_counter() - start) * 1000,
            calibrated=False,
            rationale=note,
            input=text,
        )

    def _extract_by_skeleton(
        self, head: list[int], doc: str, plan: list[_Field]
    ) -> tuple[str, float]:
        parts: list[str] = []
        choice_p, free_logp = 1.0, []
        doc += "{"
        for n, field in enumerate(plan):
            key = json.dumps(field.key, ensure_ascii=False)
            doc += ("" if n == 0 else ", ") + key + ": "
            if field.kind == "choice":
                index, probs = self._descend(head, doc, field.options)
                value, choice_p = field.options[index], choice_p * probs[index]
            else:
                value, logps = self._free_value(head, doc, field)
                free_logp.extend(logps)
            doc += value
            parts.append(f"{key}: {value}")
        free_p = math.exp(sum(free_logp) / len(free_logp)) if free_logp else 1.0
        return "{" + ", ".join(parts) + "}", choice_p * free_p

    def _free_value(self, head: list[int], doc: str, field: _Field) -> tuple[str, list[float]]:
        """Greedy value of a str/int/float field: its JSON text and token log-probabilities."""
        if self._vocab is None:
            self._vocab = _Vocab(self._pieces())
        vocab = self._vocab
        openers = ['"'] if field.kind == "str" else ["-", *"0123456789"]
        options = [*openers, "null"] if field.nullable else openers
        index, probs = self._descend(head, doc, options)
        logps = [math.log(max(probs[index], 1e-12))] if len(probs) > 1 else []
        value = options[index]
        if value == "null":
            return value, logps
        for _ in range(_STR_BUDGET if field.kind == "str" else _NUM_BUDGET):
            allowed = vocab.allowed(field.kind, value)
            z = self._logits(head + self._tokenize(doc + value))[allowed]
            j = int(np.argmax(z))
            token = int(allowed[j])
            logps.append(-math.log(float(np.exp(z - z[j]).sum())))
            piece = vocab.pieces[token] or ""
            if field.kind == "str" and vocab.is_close[token]:
                return value + piece[: piece.index('"') + 1], logps
            if field.kind != "str" and vocab.is_term[token]:
                return value, logps
            value += piece
        # Out of budget: close what was generated so the JSON stays well-formed.
        return value + ('"' if field.kind == "str" else "0" * value.endswith(("-", "."))), logps

    def _pieces(self) -> list[str | None]:
        """Every token's text; None for byte pieces that are not UTF-8 on their own."""
        from llama_cpp import llama_token_to_piece

        vocab = self._llm._model.vocab
        buf = ctypes.create_string_buffer(64)
        pieces: list[str | None] = []
        for token in range(self._n_vocab):
            n = llama_token_to_piece(vocab, token, buf, 64, 0, False)
            try:
                pieces.append(buf.raw[: max(n, 0)].decode("utf-8"))
            except UnicodeDecodeError:
                pieces.append(None)
        return pieces

    def _extract_by_grammar(self, head: list[int], doc: str, schema: type[BaseModel]) -> str:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        grammar = json_schema_to_gbnf(json.dumps(schema.model_json_schema()))
        tokens = head + self._tokenize(doc)
        return self._complete(tokens, max_tokens=512, stop=None, grammar=grammar)[0]

    # --- free generation ---------------------------------------------------------------

    def _complete(
        self, tokens: list[int], *, max_tokens: int, stop: list[str] | None, grammar: str | None
    ) -> tuple[str, int, int]:
        from llama_cpp import LlamaGrammar

        compiled = None
        if grammar is not None:
            check_grammar(grammar)
            compiled = LlamaGrammar.from_string(grammar, verbose=False)
        if len(tokens) >= self._llm.n_ctx():
            raise ModelError(
                f"prompt of {len(tokens)} tokens fills the context window of {self._llm.n_ctx()}",
                hint="shorten the prompt or raise AGENTFLOW_N_CTX",
            )
        out: Any = self._llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            stop=stop or [],
            temperature=0.0,
            repeat_penalty=1.0,
            grammar=compiled,
            logit_bias=self._banned(stop or []) or None,
        )
        usage = out["usage"]
        return out["choices"][0]["text"], usage["prompt_tokens"], usage["completion_tokens"]

    def _banned(self, stop: list[str]) -> dict[int, float]:
        """Control tokens among the stop strings, which text matching cannot see.

        Their text is empty, so a stop string never matches them: a control token that
        does not end generation by itself (Gemma's ``<start_of_turn>``) is forbidden instead.
        """
        from llama_cpp import llama_vocab_is_eog

        vocab = self._llm._model.vocab
        banned = {}
        for text in stop:
            ids = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            control = len(ids) == 1 and not self._llm._model.token_to_piece(ids[0]).strip(b"\0")
            if control and not llama_vocab_is_eog(vocab, ids[0]):
                banned[ids[0]] = -math.inf
        return banned

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        stop: list[str] | None = None,
        grammar: str | None = None,
    ) -> tuple[str, int, int]:
        """Greedy text after ``prompt`` (special tokens parsed): text, prompt, output tokens.

        A stop string that is one control token (``<start_of_turn>``) is never generated.
        """
        with self._lock:
            tokens = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            return self._complete(tokens, max_tokens=max_tokens, stop=stop, grammar=grammar)


_loaded: dict[tuple[str, str, int, int], GgufModel] = {}
_loaded_lock = threading.Lock()


def load_gguf(settings: Settings) -> GgufModel:
    """The configured GGUF, verified and loaded once per process (per file, n_ctx, threads)."""
    model = gguf_file(settings)
    key = (str(model.path.resolve()), model.sha256, settings.n_ctx, settings.n_threads)
    with _loaded_lock:
        found = _loaded.get(key)
        if found is None:
            found = GgufModel(model, n_ctx=settings.n_ctx, n_threads=settings.n_threads)
            _loaded[key] = found
        return found
