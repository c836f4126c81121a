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
  token classes with a token budget (:mod:`agentflow.models.skeleton`). Other schemas
  fall back to a JSON-schema grammar.

An uncalibrated generative model's confidence is not trusted (DESIGN.md): decisions are
``calibrated=False`` until :meth:`GgufModel.calibrate` fitted a temperature for that role
and prefix. :class:`ChoiceCalibrator`, :func:`choice_grammar` and :func:`check_grammar`
live in :mod:`agentflow.models.choice`, shared with the remote SLM
(:mod:`agentflow.models.remote`), and are re-exported here.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from agentflow.decision import Decision, ModelRef
from agentflow.errors import ModelError, ModelOutputError
from agentflow.models.choice import (
    ChoiceCalibrator,
    Chooser,
    calibrate_chooser,
    check_grammar,
    choice_grammar,
    descend_trie,
    joiner,
)
from agentflow.models.completion import complete
from agentflow.models.registry import ModelFile, gguf_file
from agentflow.models.skeleton import (
    SkeletonField,
    TokenClasses,
    free_value,
    plan_schema,
    token_pieces,
    write_skeleton,
)
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


# --- the model --------------------------------------------------------------------------


class GgufModel(Chooser):
    """A verified GGUF loaded once, answering constrained choices and schema extractions.

    llama.cpp contexts are not re-entrant: every public method holds one lock.
    """

    source = "slm:gguf"
    """Decision source tag."""

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
        self._vocab: TokenClasses | None = None

    def reset(self) -> None:
        """Forget the KV cache; the next call evaluates its whole prompt."""
        with self._lock:
            self._llm.reset()

    def close(self) -> None:
        """Free the llama.cpp model and context now; the object is unusable afterwards."""
        with self._lock:
            self._llm.close()

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
        return descend_trie(seqs, options, self._logits)

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

    def extract(self, role: str, prefix: str, text: str, schema: type[M]) -> Decision[M]:
        """A validated ``schema`` instance read from ``text``; bad output: ModelOutputError.

        Confidence is the product of the choice fields' probabilities times the geometric
        mean of the free fields' constrained token probabilities; ``scores`` holds each
        field's own probability (by JSON key). Never calibrated: an extractor calibrates
        per field (:class:`agentflow.extraction.FieldCalibration`).
        """
        start = time.perf_counter()
        plan = plan_schema(schema)
        with self._lock:
            head, tail = self._split_prompt(prefix)
            doc = tail + text + joiner(prefix + text)
            if plan is None:
                raw = self._extract_by_grammar(head, doc, schema)
                confidence, note = 0.0, "generic JSON-schema grammar: no confidence estimate"
                per_field: dict[str, float] = {}
            else:
                raw, confidence, per_field = self._extract_by_skeleton(head, doc, plan)
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
            scores={k: round(p, 4) for k, p in per_field.items()},
            input=text,
        )

    def _extract_by_skeleton(
        self, head: list[int], doc: str, plan: list[SkeletonField]
    ) -> tuple[str, float, dict[str, float]]:
        return write_skeleton(head, doc, plan, descend=self._descend, free=self._free_value)

    def _free_value(
        self, head: list[int], doc: str, field: SkeletonField
    ) -> tuple[str, list[float]]:
        """Greedy value of a str/int/float field: its JSON text and token log-probabilities."""
        if self._vocab is None:
            self._vocab = TokenClasses(token_pieces(self._llm, self._n_vocab))
        return free_value(
            head,
            doc,
            field,
            vocab=self._vocab,
            descend=self._descend,
            logits=self._logits,
            tokenize=self._tokenize,
        )

    def _extract_by_grammar(self, head: list[int], doc: str, schema: type[BaseModel]) -> str:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        grammar = json_schema_to_gbnf(json.dumps(schema.model_json_schema()))
        tokens = head + self._tokenize(doc)
        return complete(self._llm, tokens, max_tokens=512, stop=None, grammar=grammar)[0]

    # --- free generation ---------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        stop: list[str] | None = None,
        grammar: str | None = None,
        special: bool = True,
    ) -> tuple[str, int, int]:
        """Greedy text after ``prompt``: text, prompt tokens, output tokens.

        ``special`` parses control tokens written in the prompt (``<start_of_turn>``); pass
        False when the prompt holds user text, so that it cannot forge one. A stop string
        that is one control token is never generated.
        """
        with self._lock:
            tokens = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=special)
            return complete(self._llm, tokens, max_tokens=max_tokens, stop=stop, grammar=grammar)


_loaded: dict[tuple[str, str, int, int], GgufModel] = {}
_loaded_lock = threading.Lock()


@atexit.register
def _close_loaded() -> None:
    # llama-cpp-python frees a model in __del__, which at interpreter shutdown runs after
    # the C bindings it calls are gone and prints a TypeError; free them while they exist.
    with _loaded_lock:
        for model in _loaded.values():
            model.close()
        _loaded.clear()


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
