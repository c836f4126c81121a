"""The local GGUF runtime against the real embedded Gemma 3 270M (no stand-ins)."""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf
from pydantic import BaseModel, Field

from agentflow.errors import (
    DataError,
    ModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelOutputError,
)
from agentflow.models.calibration import softmax
from agentflow.models.gguf import GgufModel, check_grammar, choice_grammar, joiner, load_gguf
from agentflow.models.registry import EMBEDDED_GGUF
from agentflow.settings import Settings

pytestmark = pytest.mark.slow

CHOICES = ["billing", "technical", "account"]
PREFIX = (
    "Classify each support request as billing, technical or account.\n\n"
    + "".join(
        f"Request: {text}\nLabel: {label}\n\n"
        for text, label in [
            ("I was charged twice this month", "billing"),
            ("The app crashes when I open it", "technical"),
            ("How do I change my email address?", "account"),
            ("Refund my last invoice please", "billing"),
            ("Error 500 when uploading a file", "technical"),
            ("I forgot my username", "account"),
        ]
    )
    + "Request: "
)
LABELLED = [
    ("My credit card was billed two times", "billing"),
    ("The website shows a blank screen", "technical"),
    ("I want to rename my account", "account"),
    ("Can I get my money back?", "billing"),
    ("Login button does nothing", "technical"),
    ("Update my phone number", "account"),
    ("My invoice is wrong", "billing"),
    ("Crash on startup", "technical"),
]


def _ask(text: str) -> str:
    return text + "\nLabel:"


class Category(enum.Enum):
    """Ticket categories."""

    billing = "billing"
    technical = "technical"
    account = "account"


class Ticket(BaseModel):
    """A 4-field extraction target with an enum."""

    customer: str
    category: Category
    priority: int
    urgent: bool


EXTRACT_PREFIX = (
    "Extract a JSON ticket from each message.\n\n"
    "Message: Hi, this is Anna Lee. I was charged twice, please fix it today!\n"
    'JSON: {"customer": "Anna Lee", "category": "billing", "priority": 1, "urgent": true}\n\n'
    "Message: Tom here. The app crashes sometimes, no rush.\n"
    'JSON: {"customer": "Tom", "category": "technical", "priority": 3, "urgent": false}\n\n'
    "Message: "
)


def test_choose_returns_one_choice_with_scores_over_all(gguf_model: GgufModel) -> None:
    decision = gguf_model.choose("router", PREFIX, _ask("Why is my bill so high?"), CHOICES)

    assert decision.value in CHOICES
    assert 0.0 <= decision.confidence <= 1.0
    assert set(decision.scores) == set(CHOICES)
    assert math.isclose(sum(decision.scores.values()), 1.0, rel_tol=1e-6)
    # Choices differ at their first token: one step decides, the winner is the argmax.
    assert decision.value == max(decision.scores, key=decision.scores.__getitem__)
    assert decision.confidence == pytest.approx(decision.scores[decision.value])
    assert decision.source == "slm:gguf"
    assert decision.model is not None and decision.model.sha256 == EMBEDDED_GGUF.sha256
    assert decision.calibrated is False
    assert decision.input == _ask("Why is my bill so high?")


def test_choices_sharing_tokens_are_scored_along_the_trie(gguf_model: GgufModel) -> None:
    choices = ["safe", "retry_safe", "retry_unsafe", "irreversible"]
    decision = gguf_model.choose(
        "consequence_modeler", "Tool call: send_payment(amount=500)\nClass:", "", choices
    )

    assert decision.value in choices
    assert set(decision.scores) == set(choices)
    assert math.isclose(sum(decision.scores.values()), 1.0, rel_tol=1e-6)
    assert all(0.0 <= p <= 1.0 for p in decision.scores.values())


def test_cached_prefix_gives_the_same_answer_as_a_fresh_evaluation(
    gguf_model: GgufModel,
) -> None:
    text = _ask("The password reset link is broken")
    gguf_model.choose("router", PREFIX, _ask("warm the cache with another text"), CHOICES)
    cached = gguf_model.choose("router", PREFIX, text, CHOICES)
    gguf_model.reset()
    fresh = gguf_model.choose("router", PREFIX, text, CHOICES)

    assert cached.value == fresh.value
    for choice in CHOICES:
        assert cached.scores[choice] == pytest.approx(fresh.scores[choice], abs=1e-3)


def test_choices_that_cannot_be_told_apart_are_refused(gguf_model: GgufModel) -> None:
    with pytest.raises(ModelError, match="beginning of"):
        gguf_model.choose("router", PREFIX, _ask("hello"), ["billing", "billing"])


def test_calibration_fits_a_temperature_for_that_role_and_prefix(gguf_model: GgufModel) -> None:
    report = gguf_model.calibrate(
        "router", PREFIX, [(_ask(t), lab) for t, lab in LABELLED], CHOICES
    )

    assert report["n"] == len(LABELLED)
    assert report["temperature"] > 0
    assert 0.0 <= report["ece_before"] <= 1.0 and 0.0 <= report["ece_after"] <= 1.0
    assert 0.0 <= report["accuracy"] <= 1.0
    text = _ask("Please close my account")
    calibrated = gguf_model.choose("router", PREFIX, text, CHOICES)
    raw = gguf_model.choose("not_calibrated_role", PREFIX, text, CHOICES)
    assert calibrated.calibrated is True
    assert raw.calibrated is False
    # The calibrated confidence is softmax(log p / T) of the raw constrained probabilities.
    logits = np.log([raw.scores[c] for c in CHOICES])
    expected = softmax(logits, report["temperature"])[CHOICES.index(raw.value)]
    assert calibrated.value == raw.value
    assert calibrated.confidence == pytest.approx(float(expected), abs=1e-6)


def test_calibration_refuses_labels_outside_the_choices(gguf_model: GgufModel) -> None:
    with pytest.raises(DataError, match="not among the choices"):
        gguf_model.calibrate("router", PREFIX, [(_ask("hi"), "sales")], CHOICES)


def test_extract_returns_a_validated_instance(gguf_model: GgufModel) -> None:
    message = "Hello, this is Maria Garcia. I cannot change my email address, not urgent."
    decision = gguf_model.extract("extractor", EXTRACT_PREFIX, message + "\nJSON:", Ticket)

    assert isinstance(decision.value, Ticket)
    assert isinstance(decision.value.category, Category)
    assert decision.value.customer and decision.value.customer in message
    assert 0.0 < decision.confidence <= 1.0
    assert decision.calibrated is False
    assert decision.source == "slm:gguf"


class Reading(BaseModel):
    """Optional, float and Literal fields."""

    sensor: str | None
    value: float
    unit: Literal["C", "F"]


def test_extract_handles_optional_float_and_literal_fields(gguf_model: GgufModel) -> None:
    prefix = (
        "Extract the reading.\n\n"
        'Text: sensor kitchen reads 21.5 C\nJSON: {"sensor": "kitchen", "value": 21.5, "unit": "C"}\n\n'
        'Text: it is 70.2 F somewhere\nJSON: {"sensor": null, "value": 70.2, "unit": "F"}\n\n'
        "Text: "
    )
    decision = gguf_model.extract(
        "extractor", prefix, "sensor garage reads 18.25 C\nJSON:", Reading
    )

    assert isinstance(decision.value, Reading)
    assert isinstance(decision.value.value, float)
    assert decision.value.unit in ("C", "F")


class StrictTicket(BaseModel):
    """A schema the model's answer cannot satisfy (a 9-digit customer id)."""

    customer: str = Field(pattern=r"^[0-9]{9}$")
    urgent: bool


def test_output_failing_the_schema_raises_model_output_error(gguf_model: GgufModel) -> None:
    message = "Hi, this is Anna Lee. I was charged twice, please fix it today!\nJSON:"
    with pytest.raises(ModelOutputError, match="StrictTicket rejected"):
        gguf_model.extract("extractor", EXTRACT_PREFIX, message, StrictTicket)


class Tags(BaseModel):
    """A list: not a skeleton schema, served by the JSON-schema grammar."""

    tags: list[Literal["bug", "billing", "ui"]]


def test_unsupported_schema_falls_back_to_a_json_grammar(gguf_model: GgufModel) -> None:
    prefix = (
        "Tag each message.\n\n"
        'Message: The button is misplaced and crashes\nJSON: {"tags": ["ui", "bug"]}\n\n'
        'Message: I was charged twice\nJSON: {"tags": ["billing"]}\n\n'
        "Message: "
    )
    decision = gguf_model.extract("extractor", prefix, "The checkout crashes\nJSON:", Tags)

    assert isinstance(decision.value, Tags)
    assert decision.confidence == 0.0
    assert decision.rationale and "grammar" in decision.rationale


def test_generate_reports_tokens_and_obeys_a_grammar(gguf_model: GgufModel) -> None:
    text, prompt_tokens, output_tokens = gguf_model.generate(
        "The capital of France is", max_tokens=4
    )
    assert prompt_tokens > 1 and 1 <= output_tokens <= 4 and text

    prompt = "Is the sky blue? Answer:"
    answer, _, _ = gguf_model.generate(
        prompt, max_tokens=4, grammar=choice_grammar(["yes", "no"], lead=joiner(prompt))
    )
    assert answer in (" yes", " no")


def test_load_gguf_returns_the_cached_model(gguf_model: GgufModel, gguf_settings: Settings) -> None:
    assert load_gguf(gguf_settings) is gguf_model


def test_a_tampered_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(1024))
    settings = Settings(data_dir=tmp_path, gguf_path=fake, gguf_sha256=EMBEDDED_GGUF.sha256)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_gguf(settings)


def test_a_missing_gguf_is_refused(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, gguf_path=tmp_path / "absent.gguf", gguf_sha256=EMBEDDED_GGUF.sha256
    )
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_gguf(settings)


def test_grammar_checker_accepts_generated_grammars() -> None:
    check_grammar(choice_grammar(['say "hi"', "back\\slash", "two\nlines"], lead=" "))
    check_grammar(json_schema_to_gbnf(json.dumps(Ticket.model_json_schema())))


@pytest.mark.parametrize(
    ("grammar", "message"),
    [
        ('answer ::= "yes"\n', "no root rule"),
        ("root ::= yes\n", "undefined rules"),
        ('root ::= ("yes" | "no"\n', "unclosed"),
        ('root ::= "yes" | "no")\n', "unbalanced"),
        ('root ::= "unterminated\n', "invalid GBNF"),
        ('root ::= "bad escape \\q"\n', "invalid GBNF"),
    ],
)
def test_grammar_checker_refuses_broken_grammars(grammar: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        check_grammar(grammar)
