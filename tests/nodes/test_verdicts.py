"""LLM verdicts are never read as less severe than they say (issue: a lying LLM).

Free text is parsed so that the most severe consequence class named wins; an answer that
names none takes the role's safe default; the LLM's confidence is its own report (or
none), marked uncalibrated. Through an endpoint with structured output (llama.cpp's
OpenAI-compatible server, the real embedded GGUF) the verdict comes back as the JSON
schema's enum, never as text to parse.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from agentflow.consequence import CONSEQUENCE_CLASSES, severity
from agentflow.errors import ModelOutputError
from agentflow.models.llm import make_llm
from agentflow.nodes._common import NodeEnv, llm_choice, parse_choice
from agentflow.nodes.consequence_modeler import ConsequenceModeler
from agentflow.settings import Settings

RANKED: dict[str, Any] = {"rank": severity}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("retry-safe", "retry_safe"),
        ("This is not safe; irreversible", "irreversible"),
        ("It is safe to retry: retry_safe", "retry_safe"),
        ("retry safe, I think", "retry_safe"),
        ("Retry_Unsafe.", "retry_unsafe"),
        ("safe", "safe"),
        ("irreversible, or maybe unknown", "unknown"),
    ],
)
def test_the_most_severe_class_named_wins(text: str, expected: str) -> None:
    assert parse_choice(text, CONSEQUENCE_CLASSES, **RANKED) == expected


def test_a_name_inside_another_word_is_no_verdict() -> None:
    for text in ("unsafe-ish", "safety first", "saferoute", "retry"):
        with pytest.raises(ModelOutputError):
            parse_choice(text, ["safe"])


_FRAGMENTS = st.sampled_from(
    [*CONSEQUENCE_CLASSES, "retry-safe", "retry safe", "not", "very", ";", ".", " ", "-", "_",
     "un", "ish", ":", "Safe", "IRREVERSIBLE", "\n"]
)  # fmt: skip


def _named(text: str) -> set[str]:
    """Classes written out in ``text`` as words of their own (an independent reading)."""
    words = set()
    padded = f" {text.lower()} "
    for cls in CONSEQUENCE_CLASSES:
        for i in range(len(padded)):
            if padded.startswith(cls, i):
                before, after = padded[i - 1], padded[i + len(cls)]
                if not (before.isalnum() or before in "_-") and not (
                    after.isalnum() or after in "_-"
                ):
                    words.add(cls)
    return words


@settings(max_examples=400, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=12).map("".join) | st.text(max_size=60))
def test_a_parsed_verdict_is_never_below_a_class_the_text_names(text: str) -> None:
    try:
        parsed = parse_choice(text, CONSEQUENCE_CLASSES, **RANKED)
    except ModelOutputError:
        parsed = "unknown"  # the consequence modeler's safe default
    for cls in _named(text):
        assert severity(parsed) >= severity(cls), (text, parsed, cls)  # type: ignore[arg-type]


def test_an_llm_verdict_is_uncalibrated_and_unparseable_text_takes_the_safe_default() -> None:
    # Not a money mover: the money floor would hold that at irreversible whatever was said.
    definition = {"name": "tag_ticket", "description": "Adds a tag to a ticket.", "inputSchema": {}}
    for answer, expected in (("retry-safe", "retry_safe"), ("no idea", "unknown")):
        modeler = ConsequenceModeler(
            head=None, encoder=None, llm=FakeListChatModel(responses=[answer])
        )
        result = modeler.assess(definition, {"ticket": "T-5", "tag": "vip"})
        assert result.cls == expected, (answer, result)
        llm = [d for d in result.decisions if d.source == "llm"]
        assert all(not d.calibrated for d in llm)


@pytest.mark.timeout(300)
def test_structured_output_returns_the_enum_and_a_reported_confidence(llama_server: str) -> None:
    llm = make_llm(Settings(llm_base_url=f"{llama_server}/v1", llm_model="gemma"))
    decision = llm_choice(
        llm,
        role="consequence_modeler",
        system="Classify the tool call: safe, retry_safe, retry_unsafe, irreversible, unknown.",
        user="tool: delete_account(user_id=7) — permanently deletes the account",
        choices=list(CONSEQUENCE_CLASSES),
        input="delete_account",
        env=NodeEnv(),
        config=None,
        rank=severity,  # type: ignore[arg-type]
    )
    assert decision.value in CONSEQUENCE_CLASSES
    assert 0.0 <= decision.confidence <= 1.0 and not decision.calibrated
    assert decision.source == "llm"
