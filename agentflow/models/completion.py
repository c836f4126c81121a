"""Free greedy completion on a loaded llama.cpp model, optionally constrained by a GBNF grammar.

Used by :meth:`agentflow.models.gguf.GgufModel.generate` (the local LLM) and by
schema extraction's JSON-schema-grammar fallback. Temperature 0 and no repeat penalty:
the same prompt always gives the same text.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from agentflow.errors import ModelError
from agentflow.models.choice import check_grammar

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["banned_controls", "complete"]


def complete(
    llm: Llama, tokens: list[int], *, max_tokens: int, stop: list[str] | None, grammar: str | None
) -> tuple[str, int, int]:
    """Greedy completion of ``tokens``: text, prompt tokens, output tokens.

    ``grammar`` (GBNF, checked first) constrains the output; a stop string that is one
    control token is never generated (see :func:`banned_controls`).
    """
    from llama_cpp import LlamaGrammar

    compiled = None
    if grammar is not None:
        check_grammar(grammar)
        compiled = LlamaGrammar.from_string(grammar, verbose=False)
    if len(tokens) >= llm.n_ctx():
        raise ModelError(
            f"prompt of {len(tokens)} tokens fills the context window of {llm.n_ctx()}",
            hint="shorten the prompt or raise AGENTFLOW_N_CTX",
        )
    out: Any = llm.create_completion(
        tokens,
        max_tokens=max_tokens,
        stop=stop or [],
        temperature=0.0,
        repeat_penalty=1.0,
        grammar=compiled,
        logit_bias=banned_controls(llm, stop or []) or None,
    )
    usage = out["usage"]
    return out["choices"][0]["text"], usage["prompt_tokens"], usage["completion_tokens"]


def banned_controls(llm: Llama, stop: list[str]) -> dict[int, float]:
    """Control tokens among the stop strings, which text matching cannot see.

    Their text is empty, so a stop string never matches them: a control token that
    does not end generation by itself (Gemma's ``<start_of_turn>``) is forbidden instead.
    """
    from llama_cpp import llama_vocab_is_eog

    vocab = llm._model.vocab
    banned = {}
    for text in stop:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        control = len(ids) == 1 and not llm._model.token_to_piece(ids[0]).strip(b"\0")
        if control and not llama_vocab_is_eog(vocab, ids[0]):
            banned[ids[0]] = -math.inf
    return banned
