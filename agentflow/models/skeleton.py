"""The JSON skeleton behind :meth:`agentflow.models.gguf.GgufModel.extract`.

:func:`plan_schema` turns a pydantic schema into one :class:`SkeletonField` per field
(a constrained choice, or a free str/int/float value), or None when a field is not
supported and the caller falls back to a JSON-schema grammar. :func:`write_skeleton`
writes braces, keys and commas itself and asks the model only for the values;
:func:`free_value` generates a free value greedily over the precomputed
:class:`TokenClasses` (the tokens that may continue a JSON string or number), within a
token budget.
"""

from __future__ import annotations

import ctypes
import enum
import json
import math
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = [
    "Descend",
    "SkeletonField",
    "TokenClasses",
    "free_value",
    "plan_schema",
    "token_pieces",
    "write_skeleton",
]

Descend = Callable[[list[int], str, Sequence[str]], tuple[int, list[float]]]
"""``(head tokens, doc, options) -> (chosen index, probability per option)``."""

_STR_BUDGET = 32  # tokens per free string value; a longer value is cut and closed
_NUM_BUDGET = 16  # tokens per number


@dataclass(frozen=True)
class SkeletonField:
    """How one JSON value is produced."""

    key: str
    """JSON key (the field's alias when it has one)."""
    kind: Literal["choice", "str", "int", "float"]
    """Constrained choice among ``options``, or a free value of that type."""
    options: tuple[str, ...] = ()
    """JSON texts allowed for a choice field (``null`` included when optional)."""
    nullable: bool = False
    """Whether a free value may be ``null``."""


def _plan_field(key: str, annotation: Any) -> SkeletonField | None:
    nullable = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        nullable, annotation = True, args[0]
    null = ("null",) if nullable else ()
    if annotation is bool:
        return SkeletonField(key, "choice", ("true", "false", *null))
    values: tuple[Any, ...] | None = None
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = tuple(member.value for member in annotation)
    if values is not None:
        if not all(v is None or isinstance(v, str | int | float | bool) for v in values):
            return None
        texts = dict.fromkeys([*(json.dumps(v, ensure_ascii=False) for v in values), *null])
        return SkeletonField(key, "choice", tuple(texts))
    if annotation is str:
        return SkeletonField(key, "str", nullable=nullable)
    if annotation is int:
        return SkeletonField(key, "int", nullable=nullable)
    if annotation is float:
        return SkeletonField(key, "float", nullable=nullable)
    return None


def plan_schema(schema: type[BaseModel]) -> list[SkeletonField] | None:
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


class TokenClasses:
    """Which tokens may continue a free JSON string or number (built once, ~1 s)."""

    def __init__(self, pieces: list[str | None]) -> None:
        def ids(test: Callable[[str], object]) -> NDArray[np.int64]:
            return np.array([i for i, s in enumerate(pieces) if s and test(s)], dtype=np.int64)

        self.pieces = pieces
        """Every token's text (None for a byte piece that is not UTF-8 alone)."""
        close = ids(_CLOSE.fullmatch)
        term = ids(_TERM.match)
        digits = ids(lambda s: s.isascii() and s.isdigit())
        dot = ids(lambda s: s == ".")
        self.is_close = np.zeros(len(pieces), dtype=bool)
        self.is_close[close] = True
        """Per token: it closes a JSON string (a quote, then only JSON punctuation)."""
        self.is_term = np.zeros(len(pieces), dtype=bool)
        self.is_term[term] = True
        """Per token: it ends a JSON number (optional space, then ``,`` or ``}``)."""
        join = np.concatenate
        self.sets = {
            "str": join([ids(_BODY.fullmatch), close]),
            "digits": digits,
            "term": term,
            "digits+term": join([digits, term]),
            "dot+term": join([dot, term]),
            "digits+dot+term": join([digits, dot, term]),
        }
        """Allowed token ids per situation, see :meth:`allowed`."""

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


def token_pieces(llm: Llama, n_vocab: int) -> list[str | None]:
    """Every token's text; None for byte pieces that are not UTF-8 on their own."""
    from llama_cpp import llama_token_to_piece

    vocab = llm._model.vocab
    buf = ctypes.create_string_buffer(64)
    pieces: list[str | None] = []
    for token in range(n_vocab):
        n = llama_token_to_piece(vocab, token, buf, 64, 0, False)
        try:
            pieces.append(buf.raw[: max(n, 0)].decode("utf-8"))
        except UnicodeDecodeError:
            pieces.append(None)
    return pieces


def write_skeleton(
    head: list[int],
    doc: str,
    plan: list[SkeletonField],
    *,
    descend: Descend,
    free: Callable[[list[int], str, SkeletonField], tuple[str, list[float]]],
) -> tuple[str, float, dict[str, float]]:
    """The JSON object for ``plan`` after ``doc``, its confidence and each field's.

    Choice fields go through ``descend``, free fields through ``free`` (see
    :func:`free_value`). A choice field's probability is that of its option; a free
    field's is the geometric mean of its token probabilities. The object's confidence is
    the product of the choice probabilities times the geometric mean of all free tokens.
    """
    parts: list[str] = []
    choice_p, free_logp = 1.0, []
    per_field: dict[str, float] = {}
    doc += "{"
    for n, field in enumerate(plan):
        key = json.dumps(field.key, ensure_ascii=False)
        doc += ("" if n == 0 else ", ") + key + ": "
        if field.kind == "choice":
            index, probs = descend(head, doc, field.options)
            value, choice_p = field.options[index], choice_p * probs[index]
            per_field[field.key] = float(probs[index])
        else:
            value, logps = free(head, doc, field)
            free_logp.extend(logps)
            per_field[field.key] = math.exp(sum(logps) / len(logps)) if logps else 1.0
        doc += value
        parts.append(f"{key}: {value}")
    free_p = math.exp(sum(free_logp) / len(free_logp)) if free_logp else 1.0
    return "{" + ", ".join(parts) + "}", choice_p * free_p, per_field


def free_value(
    head: list[int],
    doc: str,
    field: SkeletonField,
    *,
    vocab: TokenClasses,
    descend: Descend,
    logits: Callable[[list[int]], NDArray[np.float32]],
    tokenize: Callable[[str], list[int]],
) -> tuple[str, list[float]]:
    """Greedy value of a str/int/float field: its JSON text and token log-probabilities."""
    openers = ['"'] if field.kind == "str" else ["-", *"0123456789"]
    options = [*openers, "null"] if field.nullable else openers
    index, probs = descend(head, doc, options)
    logps = [math.log(max(probs[index], 1e-12))] if len(probs) > 1 else []
    value = options[index]
    if value == "null":
        return value, logps
    for _ in range(_STR_BUDGET if field.kind == "str" else _NUM_BUDGET):
        allowed = vocab.allowed(field.kind, value)
        z = logits(head + tokenize(doc + value))[allowed]
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
