"""The local generative SLM: a GGUF through llama-cpp-python, constrained to choices or a schema.

Everything runs on the token level, without llama.cpp's samplers:

- The prompt is ``prefix + text``. The prefix up to its last newline is tokenised once
  (special tokens allowed) and stays in the KV cache: each call compares its tokens with
  the evaluated ones and evaluates only the new suffix. User text is never tokenised with
  special tokens, so it cannot forge control tokens.
- :meth:`GgufModel.choose` builds a token trie of the choices (each appended to the
  prompt after one space, unless the prompt ends in whitespace) and descends it greedily,
  taking the argmax among the allowed tokens and stopping as soon as one choice remains —
  usually one forward pass. The confidence is the constrained-decoding probability of
  the chosen path (softmax over the allowed tokens at each step, multiplied), which is
  what a grammar allowing only these choices gives. A choice in a branch the descent
  did not enter gets that branch's probability, split evenly among the choices in it.
- :meth:`GgufModel.extract` writes the JSON skeleton itself and generates only values,
  field by field (see :mod:`agentflow.models.skeleton`).

An uncalibrated generative model's confidence is not trusted: decisions are
``calibrated=False`` until :meth:`GgufModel.calibrate` fitted a temperature for that
role and prefix (:class:`agentflow.models.choice.ChoiceCalibrator`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from agentflow.decision import Decision, ModelRef
from agentflow.errors import ModelError
from agentflow.models.choice import ChoiceCalibrator, calibrate_chooser, check_grammar, joiner
from agentflow.models.registry import ModelFile, gguf_file
from agentflow.models.skeleton import extract_with
from agentflow.settings import Settings

if TYPE_CHECKING:
    from llama_cpp import Llama

    from agentflow.models.skeleton import VocabClasses

__all__ = ["GgufModel", "load_gguf"]

M = TypeVar("M", bound=BaseModel)


def _softmax(z: NDArray[Any]) -> NDArray[np.float64]:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()  # type: ignore[no-any-return]


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
            logits_all=False,  # a 262k-wide row per prompt token would cost more than the model
            verbose=False,
        )
        self._n_vocab = self._llm.n_vocab()
        self._lock = threading.Lock()
        self._heads: dict[str, list[int]] = {}
        self._vocab: VocabClasses | None = None

    # --- tokens and the KV cache --------------------------------------------------------

    def reset(self) -> None:
        """Forget the KV cache; the next call evaluates its whole prompt."""
        with self._lock:
            self._llm.reset()

    def tokenize(self, text: str) -> list[int]:
        """Tokens of user text (no BOS, special tokens not parsed)."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for."""
        return self._llm._model.token_to_piece(token)

    @property
    def n_vocab(self) -> int:
        """Vocabulary size."""
        return self._n_vocab

    def split_prompt(self, prefix: str) -> tuple[list[int], str]:
        """Cached tokens of ``prefix`` up to its last newline, and the rest as text.

        Cutting at a newline keeps tokenisation natural at the prefix/text boundary
        (``"Request: "`` + ``"hi"`` is tokenised together) while the cached part never moves.
        """
        cut = prefix.rfind("\n") + 1
        head, tail = prefix[:cut], prefix[cut:]
        tokens = self._heads.get(head)
        if tokens is None:
            tokens = self._llm.tokenize(head.encode("utf-8"), add_bos=True, special=True)
            if len(self._heads) >= 16:  # a handful of roles; never grow without bound
                self._heads.pop(next(iter(self._heads)))
            self._heads[head] = tokens
        return tokens, tail

    def logits(self, tokens: list[int]) -> NDArray[np.float32]:
        """Next-token logits after ``tokens``, evaluating only what the cache lacks.

        The array is a view into llama.cpp's buffer: valid until the next evaluation.
        """
        llm = self._llm
        if len(tokens) > llm.n_ctx():
            raise ModelError(
                f"prompt of {len(tokens)} tokens exceeds the context window of {llm.n_ctx()}",
                hint="shorten the few-shot prefix or raise AGENTFLOW_N_CTX",
            )
        cached = llm._input_ids
        m = min(len(cached), len(tokens))
        same = cached[:m] == np.asarray(tokens[:m], dtype=cached.dtype)
        common = m if bool(same.all()) else int(np.argmin(same))
        fresh = common == len(tokens) == llm.n_tokens and not llm._requires_eval
        if not fresh:
            # Re-evaluate at least the last token so the logits belong to this prompt.
            common = min(common, len(tokens) - 1)
            llm.n_tokens = common
            llm.eval(tokens[common:])
        from llama_cpp import llama_get_logits_ith

        ptr = llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def vocab(self) -> VocabClasses:
        """Per-token classes for free JSON values (built on first use, about a second)."""
        if self._vocab is None:
            from agentflow.models.skeleton import VocabClasses

            self._vocab = VocabClasses.build(self)
        return self._vocab

    # --- constrained choice ---------------------------------------------------------

    def descend(self, head: list[int], doc: str, options: Sequence[str]) -> tuple[int, list[float]]:
        """Greedy constrained descent over ``doc + option``; the chosen index and probabilities."""
        if len(options) == 1:
            return 0, [1.0]
        seqs = [head + self.tokenize(doc + option) for option in options]
        for i, a in enumerate(seqs):
            for j, b in enumerate(seqs):
                if i != j and b[: len(a)] == a:
                    raise ModelError(
                        f"choice {options[i]!r} is a token prefix of {options[j]!r}",
                        hint="make no choice the beginning of another (e.g. 'safe' vs 'safe_x')",
                    )
        scores = [0.0] * len(options)
        alive = list(range(len(options)))
        mass = 1.0
        depth = 0
        while len(alive) > 1:
            while len({seqs[i][depth] for i in alive}) == 1:
                depth += 1
            logits = self.logits(seqs[alive[0]][:depth])
            groups: dict[int, list[int]] = {}
            for i in alive:
                groups.setdefault(seqs[i][depth], []).append(i)
            ids = list(groups)
            p = _softmax(logits[ids])
            best = int(np.argmax(p))
            for j, token in enumerate(ids):
                if j != best:
                    for i in groups[token]:
                        scores[i] = mass * float(p[j]) / len(groups[token])
            mass *= float(p[best])
            alive = groups[ids[best]]
            depth += 1
        scores[alive[0]] = mass
        return alive[0], scores

    def _choose_raw(
        self, prefix: str, text: str, choices: Sequence[str]
    ) -> tuple[str, dict[str, float]]:
        if not choices or len(set(choices)) != len(choices):
            raise ModelError("choose needs distinct choices", hint="pass at least one label")
        with self._lock:
            head, tail = self.split_prompt(prefix)
            doc = tail + text
            sep = joiner(prefix + text)
            index, probs = self.descend(head, doc, [sep + c for c in choices])
        return choices[index], dict(zip(choices, probs, strict=True))

    def choose(self, role: str, prefix: str, text: str, choices: Sequence[str]) -> Decision[str]:
        """Pick one of ``choices`` to follow ``prefix + text``; see the module docstring."""
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
        self,
        role: str,
        prefix: str,
        examples: Sequence[tuple[str, str]],
        choices: Sequence[str],
    ) -> dict[str, Any]:
        """Fit a temperature for ``role`` + ``prefix`` on ``(text, label)`` examples.

        Returns ``temperature``, ``ece_before``, ``ece_after``, ``accuracy``, ``n``; later
        :meth:`choose` calls for that role and prefix are ``calibrated=True``.
        """
        return calibrate_chooser(self.calibration, self._choose_raw, role, prefix, examples, choices)

    # --- schema extraction and free generation ---------------------------------------

    def extract(self, role: str, prefix: str, text: str, schema: type[M]) -> Decision[M]:
        """A ``schema`` instance read from ``text``; invalid output raises ModelOutputError.

        Confidence: the product of the choice fields' probabilities times the geometric
        mean of the free fields' constrained token probabilities; never calibrated.
        """
        start = time.perf_counter()
        with self._lock:
            instance, confidence, note = extract_with(self, prefix, text, schema)
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

    def complete(
        self, tokens: list[int], *, max_tokens: int, stop: list[str] | None, grammar: str | None
    ) -> tuple[str, int, int]:
        """Greedy completion of ``tokens`` (caller holds no lock; this takes it)."""
        from llama_cpp import LlamaGrammar

        compiled = None
        if grammar is not None:
            check_grammar(grammar)
            compiled = LlamaGrammar.from_string(grammar, verbose=False)
        if len(tokens) >= self._llm.n_ctx():
            raise ModelError(
                f"prompt of {len(tokens)} tokens fills the context window",
                hint="shorten the prompt or raise AGENTFLOW_N_CTX",
            )
        out: Any = self._llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            stop=stop or [],
            temperature=0.0,
            repeat_penalty=1.0,
            grammar=compiled,
        )
        usage = out["usage"]
        return out["choices"][0]["text"], usage["prompt_tokens"], usage["completion_tokens"]

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        stop: list[str] | None = None,
        grammar: str | None = None,
    ) -> tuple[str, int, int]:
        """Greedy text after ``prompt`` (special tokens parsed): text, prompt and output tokens."""
        with self._lock:
            tokens = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            return self.complete(tokens, max_tokens=max_tokens, stop=stop, grammar=grammar)


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
