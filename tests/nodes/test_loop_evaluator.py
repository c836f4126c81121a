"""The loop evaluator's side-features: what the encoder cannot read from the observation."""

from __future__ import annotations

import json
import re

import pytest

from agentflow.heads import _data
from agentflow.nodes.loop_evaluator import echo_share, format_call, loop_features


@pytest.mark.parametrize(
    "args,output,share",
    [
        ({"order_id": "A13412", "address": "2117 Belmont Ave, Nashville TN 37212"}, None, 1.0),
        ({"order_id": "A13412", "address": "2117 Belmont Ave"}, {"order_id": "A13412"}, 0.5),
        ({"contact": "c_88", "phone": "+44 20 7946 0958"}, {"error": "not found"}, 0.0),
        ({"amount_cents": 1500, "note": "it's late"}, {"amount_cents": 1500}, 0.5),
        ({"id": "ab"}, {"id": "ab"}, 0.0),  # values under three characters say nothing
    ],
)
def test_echo_share_counts_the_argument_values_the_observation_repeats(
    args: dict[str, object], output: dict[str, object] | None, share: float
) -> None:
    observation = json.dumps(args if output is None else output)
    assert echo_share(format_call("tool", args), observation) == share


def test_training_steps_parse_like_live_calls() -> None:
    # Every stored step with a 3+ character argument value yields its values: a call
    # echoes itself completely, whichever way its values are quoted.
    steps = [str(r["step"]) for r in _data("loop_examples.jsonl")]
    with_values = [s for s in steps if re.search(r"=\s*(?:'[^']{3,}|\"[^\"]{3,}|-?\d{3,})", s)]
    assert len(with_values) > len(steps) * 0.8
    assert [s for s in with_values if echo_share(s, s) != 1.0] == []


def test_loop_features_mark_the_last_step() -> None:
    assert loop_features(1, 2, 0.5) == [0.5, 0.0, 0.0, 0.5]
    assert loop_features(2, 2) == [1.0, 3.0, 0.0, 0.0]
