"""The LLM factory: an OpenAI-compatible endpoint from settings, or the local GGUF.

The planner and every escalation talk to a langchain-core ``BaseChatModel``. With
``AGENTFLOW_LLM_BASE_URL`` set it is ``ChatOpenAI`` against that endpoint (vLLM, OpenAI,
a llama.cpp server). Without it, :class:`LocalGgufChat` plays the LLM with the embedded
GGUF — a 270M *base* model: it runs offline but plans badly, which is why
:func:`is_weak_default` exists (the CLI prints a warning). Nothing here touches the
network at import; the model loads when :func:`make_llm` is called.

A base model does not follow Gemma's turn format (given one, it writes the prompt again
and again), so the stand-in reads the chat as a plain transcript (:func:`format_transcript`)
that ends in an open ``Answer:``, stops at the end of the paragraph, and
:func:`tidy_answer` cuts what it copied from the prompt or repeated. Its messages say
they come from the stand-in (``response_metadata["agentflow_stand_in"]``), with
``usable: False`` when nothing was left to say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from agentflow.models.gguf import GgufModel, load_gguf
from agentflow.settings import Settings

__all__ = [
    "LLM_MAX_RETRIES",
    "LLM_TIMEOUT_S",
    "STAND_IN_KEY",
    "LocalGgufChat",
    "format_transcript",
    "is_weak_default",
    "make_llm",
    "tidy_answer",
]

LLM_TIMEOUT_S = 60.0
"""Seconds before one request to a remote LLM is abandoned."""
LLM_MAX_RETRIES = 2
"""Retries of a failed remote LLM request (connection errors, 429, 5xx)."""

_TURN_MARKERS = ("<start_of_turn>", "<end_of_turn>")
STAND_IN_KEY = "agentflow_stand_in"
"""``response_metadata`` key on the stand-in's messages: ``{"usable": bool, "why": str}``."""
_ANSWER = "Answer:"
# A copied run of this many words is an echo of the prompt, not an answer.
_ECHO_WORDS = 8
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# A line that opens a new transcript block: the model went on to write the next example.
_LABEL = re.compile(r"(?:^|\n)\s*(?:Facts|Request|Answer|User|Customer|Agent|Assistant):")
_WORD = re.compile(r"[^\W_]+|[$%]")


def _clean(text: str) -> str:
    # Message text is data: it must not carry control tokens of its own.
    for marker in _TURN_MARKERS:
        text = text.replace(marker, "")
    return text


def format_transcript(messages: Sequence[BaseMessage]) -> str:
    """The chat as a plain transcript for a base model, ending in an open ``Answer:``.

    System text comes first; each user or tool turn is a block of its own; each assistant
    turn is written as ``Answer: ...`` after the block it answers, so few-shot examples
    given as user/assistant pairs read as finished examples.
    """
    blocks = [_clean(m.text) for m in messages if isinstance(m, SystemMessage)]
    for message in messages:
        text = _clean(message.text).strip()
        if isinstance(message, SystemMessage):
            continue
        if isinstance(message, AIMessage):
            if blocks:
                blocks[-1] += f"\n{_ANSWER} {text}"
            continue
        if isinstance(message, ToolMessage):
            text = f"Result of tool {message.name or message.tool_call_id}:\n{text}"
        blocks.append(text)
    return "\n\n".join(blocks) + f"\n{_ANSWER}"


def _windows(words: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + _ECHO_WORDS]) for i in range(len(words) - _ECHO_WORDS + 1)]


def tidy_answer(text: str, prompt_texts: Sequence[str]) -> tuple[str, str | None]:
    """``text`` cut before anything it echoes or repeats: (what is left, why it was cut).

    The answer is cut at the start of the sentence where a run of eight words begins that
    stands in one of ``prompt_texts`` (the instructions and the user's words) or earlier in
    the answer, at a sentence said twice, and before a new transcript block
    (``Request: ...``). Runs may cross sentences, so "This is the fourth time my package
    is late. I want ..." is caught against "...the third time my package is late. I want...".
    """
    text = _LABEL.split(text, maxsplit=1)[0].strip()
    if not text:
        return "", None
    prompt = {w for p in prompt_texts for w in _windows(_WORD.findall(p.lower()))}
    sentences = [x.strip() for x in _SENTENCE.split(text) if _WORD.search(x.lower())]
    words: list[str] = []
    owner: list[int] = []  # the sentence each word belongs to
    for index, sentence in enumerate(sentences):
        found = _WORD.findall(sentence.lower())
        words += found
        owner += [index] * len(found)
    cut, why = len(sentences), None
    seen: set[tuple[str, ...]] = set()
    for start, window in enumerate(_windows(words)):
        if window in prompt or window in seen:
            cut = owner[start]
            why = "it copied its prompt" if window in prompt else "it repeated itself"
            break
        seen.add(window)
    said: set[str] = set()
    for index, sentence in enumerate(sentences[:cut]):
        norm = " ".join(_WORD.findall(sentence.lower()))
        if norm in said:
            cut, why = index, "it repeated itself"
            break
        said.add(norm)
    return " ".join(sentences[:cut]), why


def _echo_sources(messages: Sequence[BaseMessage]) -> list[str]:
    """What an answer must not copy: the instructions and what the user wrote.

    Few-shot answers are there to be imitated, and ``Facts:`` lines (documents, tool
    results) are material a right answer quotes, so neither counts.
    """
    sources = []
    for message in messages:
        if isinstance(message, AIMessage):
            continue
        lines = [ln for ln in message.text.splitlines() if not ln.lstrip().startswith("Facts:")]
        sources.append("\n".join(lines))
    return sources


class LocalGgufChat(BaseChatModel):
    """The offline stand-in LLM: the local GGUF (greedy) over a plain transcript.

    Answers stop at the end of the paragraph or after ``max_tokens``, are tidied by
    :func:`tidy_answer`, report token usage, and carry ``STAND_IN_KEY`` in their metadata.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    gguf: GgufModel = Field(exclude=True)
    """The loaded GGUF that generates."""
    max_tokens: int = 256
    """Most tokens generated per answer (a paragraph ends sooner, at a blank line)."""

    @property
    def _llm_type(self) -> str:
        return "agentflow-local-gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.gguf.ref.name, "sha256": self.gguf.ref.sha256}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raw, prompt_tokens, output_tokens = self.gguf.generate(
            format_transcript(messages),
            max_tokens=int(kwargs.get("max_tokens", self.max_tokens)),
            stop=[*(stop or []), *_TURN_MARKERS, "\n\n", f"\n{_ANSWER}"],
            special=False,  # the transcript holds user text and needs no control tokens
        )
        if raw.lstrip().startswith(("{", "[")):
            # Structured output (a plan) is validated by its reader; JSON legitimately
            # repeats the request (a plan's goal), so it is not tidied as prose.
            text, why = raw.strip(), None
        else:
            text, why = tidy_answer(raw, _echo_sources(messages))
        if not text and why is None:
            why = "it wrote nothing"
        usage = UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=output_tokens,
            total_tokens=prompt_tokens + output_tokens,
        )
        message = AIMessage(
            content=text,
            usage_metadata=usage,
            response_metadata={
                "model_name": self.gguf.ref.name,
                STAND_IN_KEY: {"usable": bool(text), "why": why},
            },
        )
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"token_usage": dict(usage), "model_name": self.gguf.ref.name},
        )


def make_llm(settings: Settings) -> BaseChatModel:
    """``ChatOpenAI`` for ``AGENTFLOW_LLM_BASE_URL``; otherwise the local GGUF (weak)."""
    if settings.llm_base_url:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            temperature=settings.llm_temperature,
            timeout=LLM_TIMEOUT_S,
            max_retries=LLM_MAX_RETRIES,
        )
    return LocalGgufChat(gguf=load_gguf(settings))


def is_weak_default(settings: Settings) -> bool:
    """True when the LLM is the embedded 270M GGUF (no ``AGENTFLOW_LLM_BASE_URL``)."""
    return not settings.llm_base_url
