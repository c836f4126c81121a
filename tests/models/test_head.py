"""Encoder heads: trained on real MiniLM embeddings, calibrated, signed, and refused when
tampered, unsigned or signed with another key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentflow.errors import ArtifactError, DataError, SignatureError
from agentflow.examples import Example, load_examples, stratified_split
from agentflow.models.artifact import content_digest, training_digest, write_signed
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.settings import Settings
from agentflow.signing import SigningKey, signing_key

BANKING = Path(__file__).resolve().parents[1] / "data" / "banking77_five_intents.csv"
LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "pin_blocked", "top_up_failed"]


@pytest.fixture(scope="module")
def banking() -> tuple[list[Example], list[Example]]:
    rows = [ex for ex in load_examples(BANKING) if ex.label in LABELS]
    return stratified_split(rows, 0.25, seed=1)


@pytest.fixture(scope="module")
def head(banking: tuple[list[Example], list[Example]], encoder: Encoder) -> EncoderHead:
    return EncoderHead.train(banking[0], encoder, "router")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """A deployment key, generated in its key file as on first need."""
    return signing_key(Settings(data_dir=tmp_path_factory.mktemp("deployment")))


def _as_attacker(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit an artifact and recompute the sha256 it carries, as anyone with the file can."""
    raw = json.loads(path.read_text())
    signature = raw.pop("signature", None)
    raw.pop("sha256")
    edit(raw)
    kept = {} if signature is None else {"signature": signature}
    path.write_text(json.dumps({**raw, "sha256": content_digest(raw), **kept}))


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


def test_artifact_round_trips(
    head: EncoderHead, encoder: Encoder, key: SigningKey, tmp_path: Path, banking
) -> None:
    digest = head.save(tmp_path / "h.json", key=key)
    loaded = EncoderHead.load(tmp_path / "h.json", encoder, key=key, expected_sha256=digest)
    assert loaded.char_features == head.char_features > 0
    texts = ["I typed my PIN wrong three times and now it's blocked", "top-up didn't go through"]
    x = encoder.encode(texts)
    assert np.allclose(loaded.probabilities(x, texts=texts), head.probabilities(x, texts=texts))
    assert np.array_equal(loaded.familiarity(x), head.familiarity(x))
    assert loaded.ood_threshold == head.ood_threshold
    assert loaded.sha256 == digest
    # What it was trained on is signed with it, and each decision names the verified hash.
    assert loaded.training_sha256 == training_digest(banking[0]) == head.training_sha256
    assert loaded.encoder_sha256 == encoder.sha256
    decision = loaded.decide("my card still hasn't arrived", encoder)
    assert decision.model is not None and decision.model.sha256 == digest


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


def test_with_families_the_far_line_is_drawn_with_each_family_held_out(
    banking: tuple[list[Example], list[Example]], encoder: Encoder
) -> None:
    # Rows in families (here, one per intent) meet their siblings when left out alone;
    # held out whole, a family is as unfamiliar as a new case of a known kind can be.
    grouped = [ex.model_copy(update={"group": ex.label}) for ex in banking[0]]
    alone = EncoderHead.train(banking[0], encoder, "router", char_features=0)
    whole = EncoderHead.train(grouped, encoder, "router", char_features=0)
    assert alone.metrics["far_fitted_on"] == "each example left out"
    assert whole.metrics["far_fitted_on"] == "whole groups held out"
    assert whole.ood_threshold < alone.ood_threshold  # families out: less familiar rows


def test_a_head_reading_characters_needs_the_texts(head: EncoderHead, encoder: Encoder) -> None:
    with pytest.raises(ArtifactError, match="texts"):
        head.probabilities(encoder.encode(["my card is lost"]))


def test_a_head_written_before_heads_were_signed_is_refused(
    head: EncoderHead, encoder: Encoder, key: SigningKey, tmp_path: Path
) -> None:
    # What an older agentflow wrote: the content and its own sha256, nothing more.
    content = head._content()
    content["format"] = "agentflow.head/3"
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**content, "sha256": content_digest(content)}))
    with pytest.raises(SignatureError, match="not signed") as err:
        EncoderHead.load(path, encoder, key=key)
    assert str(path) in str(err.value) and "agentflow train" in str(err.value)


def test_a_head_edited_by_an_attacker_who_recomputes_its_sha256_is_refused(
    head: EncoderHead, encoder: Encoder, key: SigningKey, tmp_path: Path
) -> None:
    path = tmp_path / "h.json"
    head.save(path, key=key)
    favoured = head.labels.index("card_arrival")

    def favour(raw: dict[str, Any]) -> None:
        raw["intercept"][favoured] += 5.0  # a one-number edit that changes decisions

    _as_attacker(path, favour)
    with pytest.raises(SignatureError, match="changed after it was signed") as err:
        EncoderHead.load(path, encoder, key=key)
    text = str(err.value)
    assert str(path) in text and "fix:" in text and "agentflow train" in text
    # Nor can the attacker claim another encoder or other training data for the head.
    for field, value in (("encoder", {"name": "x", "sha256": "f" * 64}), ("training_sha256", "0")):
        head.save(path, key=key)
        _as_attacker(path, lambda raw, f=field, v=value: raw.__setitem__(f, v))
        with pytest.raises(SignatureError):
            EncoderHead.load(path, key=key)


def test_a_head_signed_with_another_key_is_refused(
    head: EncoderHead, encoder: Encoder, key: SigningKey, tmp_path: Path
) -> None:
    other = signing_key(Settings(data_dir=tmp_path / "elsewhere"))
    assert other.secret != key.secret and other.key_id != key.key_id
    path = tmp_path / "h.json"
    head.save(path, key=other)
    assert EncoderHead.load(path, encoder, key=other).sha256 == head.sha256
    with pytest.raises(SignatureError, match="signed with another key") as err:
        EncoderHead.load(path, encoder, key=key)
    assert str(path) in str(err.value) and key.key_id in str(err.value)
    assert "AGENTFLOW_SIGNING_KEY was rotated" in str(err.value)


def test_corrupt_or_foreign_artifacts_are_refused(
    head: EncoderHead, encoder: Encoder, key: SigningKey, tmp_path: Path
) -> None:
    path = tmp_path / "h.json"
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        EncoderHead.load(path, encoder, key=key)
    with pytest.raises(ArtifactError, match="does not exist"):
        EncoderHead.load(tmp_path / "none.json", encoder, key=key)
    # Signed, but not a whole array: refused as corrupt, never half-read.
    content = head._content()
    content["exemplars"]["f16"] = content["exemplars"]["f16"][:-8]
    write_signed(path, content, key)
    with pytest.raises(ArtifactError, match="corrupt"):
        EncoderHead.load(path, encoder, key=key)
    head.save(path, key=key)
    loaded = EncoderHead.load(path, key=key)
    loaded.encoder_sha256 = "f" * 64
    with pytest.raises(ArtifactError, match="encoder"):
        loaded.decide("hello", encoder)
    with pytest.raises(ArtifactError, match="expected"):
        EncoderHead.load(path, encoder, key=key, expected_sha256="0" * 64)


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
