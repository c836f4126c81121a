"""The LLM factory: an OpenAI-compatible endpoint from settings, or the local GGUF.

The planner and every escalation talk to a langchain-core ``BaseChatModel``. With
``AGENTFLOW_LLM_BASE_URL`` set it is ``ChatOpenAI`` against that endpoint (vLLM, OpenAI,
a llama.cpp server). Without it, :class:`LocalGgufChat` wraps the embedded GGUF with
Gemma's turn format — a 270M base model: it runs offline but plans badly, which is why
:func:`is_weak_default` exists (the CLI prints a warning). Nothing here touches the
network at import; the model loads when :func:`make_llm` is called.
"""

from __future__ import annotations

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
    "LocalGgufChat",
    "format_gemma",
    "is_weak_default",
    "make_llm",
]

LLM_TIMEOUT_S = 60.0
"""Seconds before one request to a remote LLM is abandoned."""
LLM_MAX_RETRIES = 2
"""Retries of a failed remote LLM request (connection errors, 429, 5xx)."""

_TURN_MARKERS = ("<start_of_turn>", "<end_of_turn>")


def _clean(text: str) -> str:
    # Message text is data: it must not open or close turns of its own.
    for marker in _TURN_MARKERS:
        text = text.replace(marker, "")
    return text


def format_gemma(messages: Sequence[BaseMessage]) -> str:
    """Gemma's turn format, ending with an open model turn.

    Gemma has no system role: system text is put at the top of the first user turn.
    Tool results become user turns naming the tool.
    """
    system = [_clean(m.text) for m in messages if isinstance(m, SystemMessage)]
    turns: list[str] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        text = _clean(message.text)
        if isinstance(message, AIMessage):
            role = "model"
        else:
            role = "user"
            if isinstance(message, ToolMessage):
                text = f"Result of tool {message.name or message.tool_call_id}:\n{text}"
        if role == "user" and system:
            text = "\n\n".join([*system, text])
            system = []
        turns.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
    if system:  # only system messages: they still need a user turn
        joined = "\n\n".join(system)
        turns.append(f"<start_of_turn>user\n{joined}<end_of_turn>\n")
    return "".join(turns) + "<start_of_turn>model\n"


class LocalGgufChat(BaseChatModel):
    """A chat model over the local GGUF (greedy), reporting token usage on each message."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    gguf: GgufModel = Field(exclude=True)
    """The loaded GGUF that generates."""
    max_tokens: int = 256
    """Most tokens generated per answer."""

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
        text, prompt_tokens, output_tokens = self.gguf.generate(
            format_gemma(messages),
            max_tokens=int(kwargs.get("max_tokens", self.max_tokens)),
            stop=[*(stop or []), *_TURN_MARKERS],
        )
        usage = UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=output_tokens,
            total_tokens=prompt_tokens + output_tokens,
        )
        message = AIMessage(
            content=text.strip(),
            usage_metadata=usage,
            response_metadata={"model_name": self.gguf.ref.name},
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
