"""Encoder heads: trained on real MiniLM embeddings, calibrated, and refused when tampered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agentflow.errors import ArtifactError, DataError
from agentflow.examples import Example, load_examples, stratified_split
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead

BANKING = Path(__file__).resolve().parents[1] / "data" / "banking77_five_intents.csv"
LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "pin_blocked", "top_up_failed"]


@pytest.fixture(scope="module")
def banking() -> tuple[list[Example], list[Example]]:
    rows = [ex for ex in load_examples(BANKING) if ex.label in LABELS]
    return stratified_split(rows, 0.25, seed=1)


@pytest.fixture(scope="module")
def head(banking: tuple[list[Example], list[Example]], encoder: Encoder) -> EncoderHead:
    return EncoderHead.train(banking[0], encoder, "router")


def test_head_learns_held_out_intents(head: EncoderHead, banking, encoder: Encoder) -> None:
    test = banking[1]
    texts = [ex.text for ex in test]
    probs = head.probabilities(encoder.encode(texts), texts=texts)
    predicted = np.array(head.labels)[probs.argmax(1)]
    accuracy = float(np.mean(predicted == np.array([ex.label for ex in test])))
    assert accuracy >= 0.9, accuracy


def test_calibration_is_fitted_and_reported(head: EncoderHead) -> None:
    assert head.calibrated
    assert head.temperature != 1.0
    assert 0.0 <= head.metrics["ece"] <= 0.15
    assert head.metrics["ece"] <= head.metrics["ece_before"] + 1e-9


def test_decision_carries_the_contract(head: EncoderHead, encoder: Encoder) -> None:
    d = head.decide("my card still hasn't arrived after two weeks", encoder)
    assert d.value == "card_arrival"
    assert d.source == "slm:encoder" and d.calibrated
    assert 0.0 <= d.confidence <= 1.0 and d.latency_ms > 0
    assert abs(sum(d.scores.values()) - 1.0) < 0.2
    assert d.input.startswith("my card")


def test_artifact_round_trips(head: EncoderHead, encoder: Encoder, tmp_path: Path) -> None:
    digest = head.save(tmp_path / "h.json")
    loaded = EncoderHead.load(tmp_path / "h.json", encoder, expected_sha256=digest)
    assert loaded.char_features == head.char_features > 0
    texts = ["I typed my PIN wrong three times and now it's blocked", "top-up didn't go through"]
    x = encoder.encode(texts)
    assert np.allclose(loaded.probabilities(x, texts=texts), head.probabilities(x, texts=texts))
    assert np.array_equal(loaded.familiarity(x), head.familiarity(x))
    assert loaded.ood_threshold == head.ood_threshold
    assert loaded.sha256 == digest


def test_messages_unlike_any_training_example_are_far(
    head: EncoderHead, banking: tuple[list[Example], list[Example]], encoder: Encoder
) -> None:
    # The five intents' own held-out messages are familiar; requests for things these
    # intents never covered are far, however the classifier would label them.
    seen = encoder.encode([ex.text for ex in banking[1]])
    far_share = float(np.mean(head.familiarity(seen) < head.ood_threshold))
    assert far_share <= 0.15, far_share
    unseen = [
        "what time does the museum open on sundays",
        "recommend a good pasta recipe for dinner",
        "how many moons does jupiter have",
        "book me a table for two at an italian restaurant",
    ]
    decisions = [head.decide(text, encoder) for text in unseen]
    assert all(d.far for d in decisions), [(d.value, d.confidence) for d in decisions]
    assert all(d.rationale == "far from training data" for d in decisions)
    assert not head.decide("my card still hasn't arrived after two weeks", encoder).far


def test_far_threshold_is_fitted_leaving_each_example_out(
    head: EncoderHead, banking: tuple[list[Example], list[Example]], encoder: Encoder
) -> None:
    # An example is never its own neighbour: counted with itself, every training row
    # would look closer than it is and the threshold would sit too high.
    assert head.exemplars is not None and len(head.exemplars) == len(banking[0])
    train = encoder.encode([ex.text for ex in banking[0]])
    share = float(np.mean(head.familiarity(train) < head.ood_threshold))
    assert share < head.metrics["far_quantile"], share


def test_a_head_reading_characters_needs_the_texts(head: EncoderHead, encoder: Encoder) -> None:
    with pytest.raises(ArtifactError, match="texts"):
        head.probabilities(encoder.encode(["my card is lost"]))


def test_embedding_only_artifacts_of_format_1_still_serve(
    banking: tuple[list[Example], list[Example]], encoder: Encoder, tmp_path: Path
) -> None:
    old = EncoderHead.train(banking[0], encoder, "router", char_features=0)
    content = old._content()
    content["format"] = "agentflow.head/1"
    del content["char_features"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**content, "sha256": EncoderHead._digest(content)}))
    loaded = EncoderHead.load(path, encoder)
    assert loaded.char_features == 0
    texts = [ex.text for ex in banking[1][:20]]
    x = encoder.encode(texts)
    assert np.allclose(loaded.probabilities(x), old.probabilities(x, texts=texts))


def test_tampered_artifact_is_refused(head: EncoderHead, encoder: Encoder, tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    head.save(path)
    raw = json.loads(path.read_text())
    raw["intercept"][0] += 5.0  # a one-number edit that would change decisions
    path.write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        EncoderHead.load(path, encoder)


def test_corrupt_or_foreign_artifacts_are_refused(
    head: EncoderHead, encoder: Encoder, tmp_path: Path
) -> None:
    path = tmp_path / "h.json"
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        EncoderHead.load(path, encoder)
    head.save(path)
    raw = json.loads(path.read_text())
    raw["exemplars"]["f16"] = raw["exemplars"]["f16"][:-8]  # truncated: not a whole array
    content = {k: v for k, v in raw.items() if k != "sha256"}
    path.write_text(json.dumps({**content, "sha256": EncoderHead._digest(content)}))
    with pytest.raises(ArtifactError, match="corrupt"):
        EncoderHead.load(path, encoder)
    head.save(path)
    loaded = EncoderHead.load(path)
    loaded.encoder_sha256 = "f" * 64
    with pytest.raises(ArtifactError, match="encoder"):
        loaded.decide("hello", encoder)
    with pytest.raises(ArtifactError, match="expected"):
        EncoderHead.load(path, encoder, expected_sha256="0" * 64)


def test_uncalibratable_head_says_so(encoder: Encoder) -> None:
    rows = [
        Example(text="where is my parcel", label="status"),
        Example(text="refund me", label="refund"),
    ]
    head = EncoderHead.train(rows, encoder, "router")
    assert head.calibrated is False
    assert head.decide("where's the package", encoder).calibrated is False


def test_one_label_is_a_data_error(encoder: Encoder) -> None:
    with pytest.raises(DataError, match="two labels"):
        EncoderHead.train([Example(text="a", label="x")], encoder, "router")
