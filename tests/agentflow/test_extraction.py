"""Calibrated extracted fields: the counts, the cross-fitted report, the trust rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow import DataError, Decision, EscalationPolicy, FieldCalibration, probability_bin
from agentflow.extraction_eval import evaluate_extraction
from agentflow.nodes.planner import unsure_fields


def test_confidence_is_the_smoothed_share_right_per_evidence() -> None:
    cal = FieldCalibration.fit(
        [("when", "phrase:now", True)] * 9 + [("when", "phrase:now", False)], key={"k": "1"}
    )
    assert cal.confidence("when", "phrase:now") == pytest.approx(10 / 12)
    assert cal.confidence("when", "never-seen") is None
    unseen = cal.decide("when", "now", "never-seen", "cancel")
    assert unseen.confidence == 0.0 and not unseen.calibrated
    assert not EscalationPolicy().trusts(unseen)


def test_a_calibration_is_only_for_the_key_it_was_measured_with(tmp_path: Path) -> None:
    cal = FieldCalibration.fit([("a", "e", True)], key={"data_sha256": "x"})
    cal.save(tmp_path / "c.json")
    loaded = FieldCalibration.load(tmp_path / "c.json")
    assert loaded.counts == cal.counts
    assert loaded.matches({"data_sha256": "x"}) and not loaded.matches({"data_sha256": "y"})
    assert not FieldCalibration().matches({})  # an empty calibration matches nothing


@pytest.mark.parametrize("body", ["", "{}", '{"format": "agentflow.extract-calibration/1"}', "[1]"])
def test_a_corrupt_calibration_is_a_data_error(tmp_path: Path, body: str) -> None:
    (tmp_path / "c.json").write_text(body)
    with pytest.raises(DataError, match="eval extract"):
        FieldCalibration.load(tmp_path / "c.json")


def test_probability_bins_cover_zero_to_one() -> None:
    bins = [probability_bin(p) for p in (0.0, 0.49, 0.5, 0.79, 0.8, 0.949, 0.95, 1.0)]
    assert (
        bins
        == ["p<0.5", "p<0.5", "p0.5-0.8", "p0.5-0.8", "p0.8-0.95", "p0.8-0.95"] + ["p>=0.95"] * 2
    )


def test_cross_fitted_report_scores_rows_with_other_folds_only() -> None:
    # Each evidence kind is seen on one row only: every fold that scores it has never seen
    # it, so nothing is covered, however right the extractor was.
    outcomes = [(i, "order_id", f"kind{i}", True) for i in range(10)]
    report = evaluate_extraction(outcomes, folds=5)
    assert report["fields"]["order_id"]["accuracy"] == 1.0
    assert report["fields"]["order_id"]["coverage"] == 0.0
    shared = [(i, "order_id", "marked", i % 10 != 0) for i in range(50)]
    field = evaluate_extraction(shared, folds=5)["fields"]["order_id"]
    assert field["coverage"] == 1.0 and field["accuracy"] == 0.9 and field["ece"] < 0.15


def _field(
    name: str, value: object, confidence: float, calibrated: bool = True
) -> Decision[object]:
    return Decision[object](
        role="extractor",
        value={name: value},
        confidence=confidence,
        source="rule",
        latency_ms=0.0,
        calibrated=calibrated,
    )


def test_unsure_fields_are_those_with_a_value_and_an_untrusted_latest_decision() -> None:
    decisions = [
        _field("order_id", "A1", 0.97),
        _field("effective", "now", 0.4),
        _field("plan", "Pro", 0.3),
        _field("plan", "Plus", 1.0),  # the account's plan replaced the message's guess
        _field("address", None, 0.0, calibrated=False),  # missing: asked for, not confirmed
    ]
    extracted = {"order_id": "A1", "effective": "now", "plan": "Plus", "address": None}
    assert unsure_fields(decisions, extracted, EscalationPolicy()) == ["effective"]
