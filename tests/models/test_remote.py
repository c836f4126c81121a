"""The remote SLM against a real llama.cpp server serving the embedded GGUF."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from typing import Literal

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import BaseModel

from agentflow.decision import Decision, EscalationPolicy, resolve
from agentflow.errors import ConfigurationError, ModelError, ModelOutputError
from agentflow.models.remote import RemoteSLM, _choice_scores
from agentflow.settings import Settings

pytestmark = pytest.mark.slow

CHOICES = ["billing", "technical", "account"]
YES_NO = ["y", "n"]  # short choices keep unconstrained answers (and the test) short
PREFIX = (
    "Classify each support request as billing, technical or account.\n\n"
    "Request: I was charged twice\nLabel: billing\n\n"
    "Request: The app crashes\nLabel: technical\n\n"
    "Request: Change my email\nLabel: account\n\n"
    "Request: "
)
EXTRACT_PREFIX = (
    "Extract JSON.\n\n"
    'Message: Anna Lee: charged twice, fix today!\nJSON: {"category": "billing", "urgent": true}\n\n'
    "Message: "
)


class Ticket(BaseModel):
    """A small extraction target (no free text: grammar steps inside strings are slow)."""

    category: Literal["billing", "technical"]
    urgent: bool


@pytest.fixture(scope="module")
def remote(llama_server: str) -> Iterator[RemoteSLM]:
    """A llama.cpp-flavoured client of the session server."""
    slm = RemoteSLM(f"{llama_server}/v1", flavor="llama.cpp", timeout_s=120)
    yield slm
    slm.close()


@pytest.fixture(scope="module")
def unconstrained(llama_server: str) -> Iterator[RemoteSLM]:
    """A vLLM-flavoured client: llama.cpp ignores ``structured_outputs``, so nothing
    constrains the answer — a server that does not honour the constraint."""
    slm = RemoteSLM(f"{llama_server}/v1", flavor="vllm", timeout_s=120, max_extract_tokens=4)
    yield slm
    slm.close()


def test_choose_against_the_server(remote: RemoteSLM) -> None:
    decision = remote.choose("router", PREFIX, "Refund my invoice\nLabel:", CHOICES)

    assert decision.value in CHOICES
    assert 0.0 <= decision.confidence <= 1.0
    assert set(decision.scores) == set(CHOICES)
    assert math.isclose(sum(decision.scores.values()), 1.0, rel_tol=1e-6)
    assert decision.source == "slm:remote"
    assert decision.model is not None and decision.model.sha256 is None
    assert decision.calibrated is False


def test_extract_against_the_server(remote: RemoteSLM) -> None:
    decision = remote.extract(
        "extractor", EXTRACT_PREFIX, "Tom: app crashes, no rush\nJSON:", Ticket
    )

    assert isinstance(decision.value, Ticket)
    assert decision.source == "slm:remote"
    assert decision.calibrated is False


def test_an_answer_outside_the_choices_is_a_model_output_error(unconstrained: RemoteSLM) -> None:
    with pytest.raises(ModelOutputError, match="not one of"):
        unconstrained.choose("router", PREFIX, "Refund my invoice\nLabel:", YES_NO)


def test_invalid_json_is_a_model_output_error(unconstrained: RemoteSLM) -> None:
    with pytest.raises(ModelOutputError, match="Ticket rejected"):
        unconstrained.extract("extractor", EXTRACT_PREFIX, "Tom: app crashes\nJSON:", Ticket)


def test_an_unreachable_server_names_the_url_setting() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slm = RemoteSLM(f"http://127.0.0.1:{port}/v1", timeout_s=5)
    with pytest.raises(ModelError, match="unreachable") as caught:
        slm.choose("router", PREFIX, "hello\nLabel:", CHOICES)
    assert "AGENTFLOW_SLM_BASE_URL" in caught.value.hint


def test_from_settings_needs_a_base_url(llama_server: str) -> None:
    with pytest.raises(ConfigurationError, match="no remote SLM"):
        RemoteSLM.from_settings(Settings(slm_base_url=None))
    slm = RemoteSLM.from_settings(Settings(slm_base_url=f"{llama_server}/v1", slm_model="gemma"))
    assert slm.base_url == f"{llama_server}/v1" and slm.model == "gemma"


def test_malformed_remote_output_escalates_to_the_llm(unconstrained: RemoteSLM) -> None:
    llm = FakeListChatModel(responses=["technical"])

    def ask_llm(small: Decision[str] | None) -> Decision[str]:
        answer = llm.invoke(f"Label this request as one of {CHOICES}: Refund my invoice")
        return Decision[str](
            role="router", value=str(answer.content), confidence=1.0, source="llm", latency_ms=0.0
        )

    resolution = resolve(
        "router",
        lambda: unconstrained.choose("router", PREFIX, "Refund my invoice\nLabel:", YES_NO),
        ask_llm,
        safe_default="account",
        policy=EscalationPolicy(threshold=0.8),
    )

    assert resolution.llm_called is True
    assert resolution.final.source == "llm" and resolution.final.value == "technical"
    assert resolution.final.escalated is True
    assert resolution.error is not None and "not one of" in resolution.error


def test_choice_scores_renormalise_the_first_token_over_the_choices() -> None:
    options = {"yes": " yes", "no": " no"}
    top = {" yes": math.log(0.3), " no": math.log(0.1), " maybe": math.log(0.6)}

    scores = _choice_scores(options, [" yes"], [top])

    assert scores["yes"] == pytest.approx(0.75)
    assert scores["no"] == pytest.approx(0.25)


def test_choice_scores_follow_a_shared_first_token() -> None:
    options = {"retry_safe": " retry_safe", "retry_unsafe": " retry_unsafe", "safe": " safe"}
    first = {" retry": math.log(0.6), " safe": math.log(0.2), " x": math.log(0.2)}
    second = {"_safe": math.log(0.5), "_unsafe": math.log(0.3), "_x": math.log(0.2)}

    scores = _choice_scores(options, [" retry", "_safe"], [first, second])

    assert scores["safe"] == pytest.approx(0.25)
    assert scores["retry_safe"] == pytest.approx(0.75 * 0.5 / 0.8)
    assert scores["retry_unsafe"] == pytest.approx(0.75 * 0.3 / 0.8)
