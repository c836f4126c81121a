"""When a retrained head replaces the current one (real MiniLM heads, real BANKING77 rows)."""

from __future__ import annotations

from pathlib import Path

from agentflow.acceptance import AcceptancePolicy, HeadScore, score_head
from agentflow.examples import load_examples, stratified_split
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead

BANKING = Path(__file__).resolve().parents[1] / "data" / "banking77_five_intents.csv"


def test_acceptance_compares_what_matters() -> None:
    def score(acc: float, handled: float, errors: float) -> HeadScore:
        return HeadScore(n=10, accuracy=acc, coverage=handled + errors, handled_correctly=handled,
                         confident_errors=errors, ece=0.05)  # fmt: skip

    policy = AcceptancePolicy()
    # Confidently wrong on a class it never saw: more raw coverage, but not better.
    old = score(0.7, 0.6, 0.3)
    assert policy.accepts(old, score(0.9, 0.8, 0.0))[0]
    assert not policy.accepts(old, score(0.9, 0.5, 0.0))[0]
    assert not policy.accepts(old, score(0.9, 0.8, 0.4))[0]
    assert AcceptancePolicy(tolerance=0.15).accepts(old, score(0.6, 0.6, 0.3))[0]
    assert not policy.accepts(None, score(0.9, 0.8, 0.0).model_copy(update={"n": 0}))[0]


def test_a_head_is_scored_as_the_escalation_policy_would_trust_it(encoder: Encoder) -> None:
    train, held = stratified_split(load_examples(BANKING), 0.3, seed=2)
    head = EncoderHead.train(train, encoder, "router")
    texts, gold = [ex.text for ex in held], [ex.label for ex in held]
    x = encoder.encode(texts)
    score = score_head(head, x, gold, 0.8, texts)
    assert score.n == len(held) and score.accuracy >= 0.9
    assert 0.5 <= score.coverage <= 1.0
    assert abs(score.handled_correctly + score.confident_errors - score.coverage) < 1e-3
    # An uncalibrated head's confidence means nothing: it is trusted on nothing.
    head.calibrated = False
    blind = score_head(head, x, gold, 0.8, texts)
    assert blind.coverage == 0 and blind.accuracy == score.accuracy
