"""The review-and-retrain loop, end to end: real MiniLM, real router node, real SQLite ledger.

The LLM is a langchain-core fake chat model that answers the right route. A route the
router's head never saw (``account_access``: a route added with a description only)
escalates; the LLM's verdicts are recorded; ``agentflow train`` distills them into a
new head; the escalation rate on that class of messages drops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from typer.testing import CliRunner

from agentflow import agent
from agentflow.acceptance import AcceptancePolicy
from agentflow.checkpoints.ledger import Ledger
from agentflow.cli import app
from agentflow.decision import Decision, EscalationPolicy
from agentflow.errors import ArtifactError, ConfigurationError, DataError, SignatureError
from agentflow.examples import Example
from agentflow.heads import head_for, loop_examples
from agentflow.inputs import head_input
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.nodes._common import NodeEnv
from agentflow.nodes.consequence_modeler import describe_call
from agentflow.nodes.loop_evaluator import describe_step, echo_share, format_call, loop_features
from agentflow.nodes.router import Route, Router, router_node
from agentflow.recording import RunContext
from agentflow.retrain import (
    active_head,
    current_head,
    distill,
    role_examples,
    train,
    training_rows,
)
from agentflow.settings import Settings
from agentflow.signing import signing_key
from agentflow.tools.contract import ToolRegistry
from agentflow.tools.executor import GuardedExecutor
from tests.fixtures.heads import data_dir_with_heads

EXAMPLES = {
    "order_status": ["where is my order", "has my package shipped yet", "tracking number for my order please",
                     "when will my parcel arrive", "my order hasn't arrived", "what's the delivery date of order A12345",
                     "is my order on its way", "can you check the status of my order",
                     "my package is late, where is it", "which carrier is delivering my order"],
    "refund": ["I want my money back", "please refund my order", "can I get a refund for this charge",
               "I was charged twice, refund me", "return the money for order A55555", "how do I get reimbursed",
               "refund the amount to my card", "I want a refund for the broken item", "give me back my payment",
               "the charge was wrong, please refund it"],
    "pricing": ["how much is the Pro plan", "what does the Basic plan include", "do you offer discounts",
                "price of the team plan", "is there a student discount", "compare Plus and Pro plans",
                "what's the monthly cost", "are there annual pricing options", "how much does it cost per user",
                "what features come with Plus"],
    "complaint": ["this is unacceptable, I want a manager", "your service is terrible", "I'm furious with you",
                  "worst customer experience ever", "I want to file a complaint",
                  "nobody is helping me, this is ridiculous", "I am very angry about how I was treated",
                  "let me speak to your supervisor", "you people are useless",
                  "I'm disappointed and upset with your support"],
}  # fmt: skip
DESCRIPTIONS = {
    "order_status": "where an order is, tracking, delivery date",
    "refund": "get money back for an order or a charge",
    "pricing": "plans, prices, discounts",
    "complaint": "upset customers, complaints, asking for a manager",
    "account_access": "cannot sign in: passwords, locked accounts, two-factor codes",
}
NEW_ROUTE = "account_access"
# Traffic of the class the head never saw: the first part is routed before retraining
# (its LLM verdicts are the distillation data), FRESH only ever after, to test generalisation.
TRAFFIC = [
    "I can't log into my account", "reset my password please", "the app says my password is wrong",
    "I forgot my password", "locked out of my account", "my login isn't working", "how do I change my password",
    "two-factor code never arrives", "I can't sign in on my phone", "the website won't let me log in",
    "my account got locked after too many attempts", "password reset email never came",
    "sign-in keeps failing with an error", "I lost access to my account", "the verification code is invalid",
    "it says my username doesn't exist", "help me get back into my account", "my password stopped working today",
    "I get 'invalid credentials' every time", "can't access my profile, login loops back",
    "the authenticator app codes are rejected", "how do I unlock my account",
    "I was logged out and can't get back in", "my security code expired before I could use it",
]  # fmt: skip
FRESH = [
    "I can't sign into the website anymore", "forgot my login details", "please help, my account is locked",
    "the password reset link doesn't work", "I'm not receiving the 2FA text",
    "login fails even with the right password", "how can I recover access to my account",
    "my sign-in code is never accepted", "account locked, what do I do",
    "I need to reset my password, the link expired", "it won't let me log in on the app",
    "can't get past the login screen",
]  # fmt: skip
KNOWN = [("where's my parcel, it's been a week", "order_status"), ("refund my last payment please", "refund"),
         ("any discounts for nonprofits?", "pricing"), ("I demand to talk to a manager now", "complaint")]  # fmt: skip

GRAPH_MODULE = '''"""A test graph: routes only."""
from agentflow.nodes.router import Route

EXAMPLES = {examples!r}
DESCRIPTIONS = {descriptions!r}


def routes():
    return [Route(name=n, description=d, examples=tuple(EXAMPLES.get(n, ()))) for n, d in DESCRIPTIONS.items()]
'''


def _routes() -> list[Route]:
    return [
        Route(name=n, description=d, examples=tuple(EXAMPLES.get(n, ())))
        for n, d in DESCRIPTIONS.items()
    ]


class Loop:
    """Routes messages through the real router node, recording to the real ledger."""

    def __init__(self, settings: Settings, ledger: Ledger, encoder: Encoder) -> None:
        self.settings, self.ledger, self.encoder = settings, ledger, encoder
        self.env = NodeEnv(recorder=ledger, graph="loop-test", cost_per_1k_tokens=0.5)
        self.unrecorded = NodeEnv(graph="loop-test")
        self.threads = 0

    def route(
        self, head: EncoderHead, text: str, right: str, record: bool = True
    ) -> dict[str, Any]:
        # A fresh fake LLM per message, so that it answers this message's right route.
        router = Router(_routes(), encoder=self.encoder, head=head,
                        llm=FakeListChatModel(responses=[f"Route: {right}"]),
                        policy=EscalationPolicy(threshold=self.settings.router_threshold))  # fmt: skip
        self.threads += 1
        config = {"configurable": {"thread_id": f"t{self.threads}", "run_id": "r1"}}
        node = router_node(router, self.env if record else self.unrecorded)
        return node({"messages": [HumanMessage(text)]}, config)  # type: ignore[arg-type]

    def escalation_rate(
        self, head: EncoderHead, texts: list[str], right: str, record: bool = True
    ) -> float:
        outs = [self.route(head, t, right, record) for t in texts]
        assert all(o["route"] == right for o in outs if o["llm_calls"])  # the LLM was followed
        return sum(o["llm_calls"] for o in outs) / len(texts)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("retrain")
    graph = tmp / "retrain_graph.py"
    graph.write_text(GRAPH_MODULE.format(examples=EXAMPLES, descriptions=DESCRIPTIONS))
    settings = Settings(data_dir=tmp / "af", database_url=f"sqlite:///{tmp}/ledger.db")
    ledger = Ledger(settings.resolved_database_url)
    ledger.setup()
    examples = [Example(text=t, label=n) for n, ts in EXAMPLES.items() for t in ts]
    # The head the builder starts with: trained on the route examples, no account_access.
    start_head = head_for("router", examples, encoder, settings)
    yield {"tmp": tmp, "graph": str(graph), "settings": settings, "ledger": ledger,
           "loop": Loop(settings, ledger, encoder), "start_head": start_head}  # fmt: skip
    ledger.close()


@pytest.fixture(scope="module")
def trained(world: dict[str, Any], encoder: Encoder) -> dict[str, Any]:
    """Route the traffic, retrain through the CLI, route again; the numbers of the loop."""
    loop: Loop = world["loop"]
    settings: Settings = world["settings"]
    before = loop.escalation_rate(world["start_head"], TRAFFIC, NEW_ROUTE)
    # Measured without recording: FRESH must not become training data.
    before_fresh = loop.escalation_rate(world["start_head"], FRESH, NEW_ROUTE, record=False)
    for text, right in KNOWN:
        loop.route(world["start_head"], text, right)
    verdicts = [ep.verdict for ep in world["ledger"].episodes("router") if ep.verdict is not None]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTFLOW_DATA_DIR", str(settings.data_dir))
        mp.setenv("AGENTFLOW_DATABASE_URL", settings.resolved_database_url)
        result = CliRunner().invoke(
            app, ["train", "--role", "router", "--graph", world["graph"], "--json"]
        )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    new_head = active_head("router", settings, encoder, labels=DESCRIPTIONS)
    assert new_head is not None
    after = loop.escalation_rate(new_head, TRAFFIC, NEW_ROUTE)
    after_fresh = loop.escalation_rate(new_head, FRESH, NEW_ROUTE, record=False)
    numbers = {"escalation_before": before, "escalation_after": after,
               "fresh_escalation_before": before_fresh, "fresh_escalation_after": after_fresh,
               "llm_verdicts": len(verdicts), "train": report}  # fmt: skip
    print("\nloop numbers:", json.dumps(numbers, indent=1))
    return {**numbers, "verdicts": verdicts, "head": new_head}


def test_the_escalation_rate_on_an_unseen_class_drops_after_training(
    trained: dict[str, Any],
) -> None:
    assert trained["escalation_before"] > 0.1, (
        "the head should have escalated part of the new class"
    )
    assert trained["escalation_after"] < trained["escalation_before"]
    assert trained["escalation_after"] <= 0.05
    # Messages the new head never saw, of the same class, no longer need the LLM either.
    assert trained["fresh_escalation_after"] <= 1 / len(FRESH)
    assert NEW_ROUTE in trained["head"].labels


def test_llm_verdicts_were_recorded_and_distilled(
    trained: dict[str, Any], world: dict[str, Any]
) -> None:
    ledger: Ledger = world["ledger"]
    new_route_verdicts = [v for v in trained["verdicts"] if v.value == NEW_ROUTE]
    assert len(new_route_verdicts) >= 4
    llm_labels = [lbl for lbl in ledger.labels(role="router") if lbl.source == "llm"]
    # One LLM label per verdict given before training, on the small decision it overrode.
    assert len(llm_labels) == len(trained["verdicts"])
    overridden = {ep.id: ep.verdict.value for ep in ledger.episodes("router") if ep.verdict}
    assert all(overridden[lbl.decision_id] == lbl.value for lbl in llm_labels)
    report = trained["train"]
    assert report["accepted"] is True and report["distilled"] == len(trained["verdicts"])
    assert report["sources"]["llm"] == len(trained["verdicts"])
    assert report["new"]["accuracy"] >= report["old"]["accuracy"]


def test_every_head_version_is_recorded_with_its_hash(
    trained: dict[str, Any], world: dict[str, Any]
) -> None:
    (version,) = [v for v in world["ledger"].head_versions("router") if v.accepted]
    assert version.sha256 == trained["train"]["sha256"] == trained["head"].sha256
    key = signing_key(world["settings"])
    assert EncoderHead.load(version.path, key=key).sha256 == version.sha256
    assert version.metrics["new"] == trained["train"]["new"]
    assert version.metrics["old_sha256"] == world["start_head"].sha256


def test_distilling_again_adds_nothing_and_a_human_label_wins(
    trained: dict[str, Any], world: dict[str, Any]
) -> None:
    ledger: Ledger = world["ledger"]
    assert distill(ledger, "router") == 0
    episode = next(ep for ep in ledger.episodes("router") if ep.verdict is not None)
    text = episode.first.input
    ledger.add_label(episode.id, "complaint", "dana", source="human")
    rows, dropped = training_rows([], ledger.labels_for("router"), set(DESCRIPTIONS))
    assert {r.text: (r.label, r.source) for r in rows}[text] == ("complaint", "human")
    assert dropped == 0


def test_a_head_that_is_not_better_is_recorded_but_not_used(
    trained: dict[str, Any], world: dict[str, Any], encoder: Encoder
) -> None:
    settings: Settings = world["settings"]
    ledger: Ledger = world["ledger"]
    ctx = RunContext(thread_id="reviewed", run_id="r", node="router")
    for text in FRESH[:8]:  # a reviewer labels decisions the current head never saw
        small = Decision[str](role="router", value="complaint", confidence=0.5, source="slm:encoder",
                              latency_ms=1.0, input=text)  # fmt: skip
        ledger.add_label(ledger.record_decision(ctx, small), NEW_ROUTE, "dana")
    # A policy demanding a 100-point improvement can never be met: the run must keep the old head.
    result = train("router", settings, graph=world["graph"], encoder=encoder, ledger=ledger,
                   policy=AcceptancePolicy(tolerance=-1.0))  # fmt: skip
    assert not result.accepted and "worse" in result.reason
    assert result.n_heldout == 2 and result.sources["human"] >= 8
    versions = ledger.head_versions("router")
    assert [v.accepted for v in versions] == [True, False]
    assert Path(result.path).is_file() and versions[-1].sha256 == result.sha256
    current = active_head("router", settings, encoder, labels=DESCRIPTIONS)
    assert current is not None and current.sha256 == trained["head"].sha256


def test_training_with_nothing_new_is_refused(world: dict[str, Any], encoder: Encoder) -> None:
    url = f"sqlite:///{world['tmp']}/empty.db"
    settings = Settings(data_dir=world["settings"].data_dir, database_url=url)
    with Ledger(url) as ledger:
        ledger.setup()
        # Only the examples the current head was trained on: a comparison would be meaningless.
        with pytest.raises(DataError, match="has not trained on"):
            train("router", settings, graph=world["graph"], encoder=encoder, ledger=ledger)
        assert ledger.head_versions() == []


def test_a_modified_active_head_is_refused(
    trained: dict[str, Any], world: dict[str, Any], encoder: Encoder
) -> None:
    path = Path([v for v in world["ledger"].head_versions("router") if v.accepted][-1].path)
    original = path.read_text()
    try:
        raw = json.loads(original)
        raw["intercept"][0] += 3.0
        path.write_text(json.dumps(raw))
        with pytest.raises(ArtifactError, match="sha256") as err:
            active_head("router", world["settings"], encoder)
        assert isinstance(err.value, SignatureError) and str(path) in str(err.value)
        assert "agentflow train --role router" in str(err.value)
    finally:
        path.write_text(original)
    # A graph whose routes no longer include the head's classes does not get it.
    assert (
        active_head("router", world["settings"], encoder, labels=["order_status", "refund"]) is None
    )


def test_no_database_means_no_active_head_and_no_file(tmp_path: Path, encoder: Encoder) -> None:
    settings = Settings(data_dir=tmp_path / "af", database_url=f"sqlite:///{tmp_path}/none.db")
    assert active_head("router", settings, encoder) is None
    assert not (tmp_path / "none.db").exists()


def test_roles_without_a_text_head_are_refused_and_unknown_values_dropped(
    world: dict[str, Any],
) -> None:
    with pytest.raises(ConfigurationError, match="planner"):
        role_examples("planner")
    with pytest.raises(ConfigurationError, match="--graph"):
        role_examples("router")
    ledger = Ledger(f"sqlite:///{world['tmp']}/other.db")
    ledger.setup()
    ctx = RunContext(thread_id="x", run_id="r")
    decision_id = ledger.record_decision(ctx, Decision[str](role="router", value="pricing", confidence=0.9,
                                                            source="slm:encoder", latency_ms=1.0, input="hi"))  # fmt: skip
    ledger.add_label(decision_id, "no_such_route", "dana")
    rows, dropped = training_rows([], ledger.labels_for("router"), set(DESCRIPTIONS))
    assert rows == [] and dropped == 1
    ledger.close()


# Calls of a kind the shipped consequence examples never had (vineyard and barge tools),
# labelled by a reviewer: what `agentflow train --role consequence_modeler` learns from.
_NEW_CALLS = [
    ({"name": f"{verb}_{thing}", "description": f"{desc} for the {thing.replace('_', ' ')}."},
     {"id": f"{thing[:3].upper()}-{n}"}, label)
    for n, (verb, desc, label) in enumerate([
        ("inspect", "Shows the current readings", "safe"),
        ("list", "Lists the scheduled work", "safe"),
        ("wire_deposit", "Sends a non-refundable deposit from the estate account", "irreversible"),
        ("scrap", "Permanently scraps the registration", "irreversible"),
    ])
    for thing in ("barge_lock", "vine_row", "cask_cellar", "harvest_crate", "press_house",
                  "mooring_berth", "cooperage_order", "tasting_room")
]  # fmt: skip


def test_a_retrained_consequence_head_is_the_one_the_agent_and_the_cli_use(
    tmp_path: Path, encoder: Encoder, heads_cache: Path
) -> None:
    data_dir = data_dir_with_heads(tmp_path / "af", heads_cache)
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{tmp_path}/l.db")
    ledger = Ledger(settings.resolved_database_url)
    ledger.setup()
    ctx = RunContext(thread_id="c", run_id="r")
    for definition, args, label in _NEW_CALLS:
        text = describe_call(definition, args)
        found = Decision[str](role="consequence_modeler", value="unknown", confidence=0.5,
                              source="slm:encoder", latency_ms=1.0, input=text)  # fmt: skip
        ledger.add_label(ledger.record_decision(ctx, found), label, "dana")
    ledger.close()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTFLOW_DATA_DIR", str(settings.data_dir))
        mp.setenv("AGENTFLOW_DATABASE_URL", settings.resolved_database_url)
        result = CliRunner().invoke(
            app, ["train", "--role", "consequence_modeler", "--tolerance", "1", "--json"]
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["accepted"], report
        definition = tmp_path / "tool.json"
        definition.write_text(json.dumps(_NEW_CALLS[2][0]))
        assessed = CliRunner().invoke(app, ["assess", "--tool", str(definition), "--json"])
    assert assessed.exit_code == 0, assessed.output
    # The CLI decided with the retrained head: its row names that artifact's hash.
    assert report["sha256"] in assessed.stdout, assessed.stdout
    _, parts = agent(
        _routes()[:2],
        [],
        llm=FakeListChatModel(responses=["x"]),
        settings=settings,
        encoder=encoder,
        executor=GuardedExecutor(ToolRegistry([]), None),
    )
    assert parts.consequence.head is not None
    assert parts.consequence.head.sha256 == report["sha256"]


# Steps with tools the shipped loop examples never had (kiln and greenhouse tools), each
# labelled by what its observation and its place in the plan say. The same observation
# early and last in a plan is two inputs: only the features tell them apart.
def _loop_traffic() -> list[tuple[str, list[float], str]]:
    rows = []
    for n, thing in enumerate(["greenhouse_vent", "kiln_batch", "seed_tray", "glaze_order",
                               "pottery_wheel", "compost_bin", "irrigation_line", "drying_rack"]):  # fmt: skip
        ident = f"{thing[:3].upper()}-{n}"
        call = format_call(f"set_{thing}", {"id": ident})
        ok = json.dumps({"id": ident, "state": "updated", "unit": thing})
        for done, planned, observation, label in [
            (1, 3, ok, "continue"),
            (3, 3, ok, "done"),
            (2, 3, f"error: {thing} {ident} is jammed", "replan"),
        ]:
            features = loop_features(done, planned, echo_share(call, observation))
            rows.append((describe_step(observation), features, label))
    return rows


def test_loop_rows_keep_their_features_and_old_text_only_rows_are_dropped(
    tmp_path: Path,
) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/rows.db")
    ledger.setup()
    ctx = RunContext(thread_id="x", run_id="r")
    traffic = _loop_traffic()[:2]  # one observation, early and last in its plan
    for text, features, label in traffic:
        found = Decision[str](role="loop_evaluator", value="escalate", confidence=0.5,
                              source="slm:encoder", latency_ms=1.0, input=head_input(text, features))  # fmt: skip
        ledger.add_label(ledger.record_decision(ctx, found), label, "dana")
    old = Decision[str](role="loop_evaluator", value="escalate", confidence=0.5,
                        source="slm:encoder", latency_ms=1.0, input=traffic[0][0])  # fmt: skip
    ledger.add_label(ledger.record_decision(ctx, old), "continue", "dana")
    examples, extra = loop_examples()
    rows, dropped = training_rows(
        examples, ledger.labels_for("loop_evaluator"), {"continue", "done"}, extra
    )
    ledger.close()
    assert dropped == 1  # the text-only row: its features were never recorded
    human = [r for r in rows if r.source == "human"]
    assert [(r.text, list(r.extra or ()), r.label) for r in human] == traffic
    # One row per input (text and features); the two labelled ones are new.
    inputs = {(ex.text, tuple(x)) for ex, x in zip(examples, extra.tolist(), strict=True)}
    assert len(rows) == len(inputs) + 2


# Two fits of a ~400-example head with char n-grams (candidate and refit): minutes each on
# a loaded 2-core machine, past the suite's default limit.
@pytest.mark.timeout(1800)
def test_a_retrained_loop_head_is_the_one_the_next_agent_uses_and_records_features(
    tmp_path: Path, encoder: Encoder, heads_cache: Path
) -> None:
    data_dir = data_dir_with_heads(tmp_path / "af", heads_cache)
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{tmp_path}/l.db")
    ledger = Ledger(settings.resolved_database_url)
    ledger.setup()
    ctx = RunContext(thread_id="l", run_id="r")
    traffic = _loop_traffic()
    for text, features, label in traffic:
        found = Decision[str](role="loop_evaluator", value="escalate", confidence=0.5,
                              source="slm:encoder", latency_ms=1.0, input=head_input(text, features))  # fmt: skip
        ledger.add_label(ledger.record_decision(ctx, found), label, "dana")
    old = Decision[str](role="loop_evaluator", value="escalate", confidence=0.5, source="slm:encoder",
                        latency_ms=1.0, input="error: recorded before the features were")  # fmt: skip
    ledger.add_label(ledger.record_decision(ctx, old), "replan", "dana")
    shipped = current_head("loop_evaluator", settings, encoder, ledger=ledger)
    result = train(
        "loop_evaluator",
        settings,
        encoder=encoder,
        ledger=ledger,
        policy=AcceptancePolicy(tolerance=1.0),
    )
    ledger.close()
    assert result.accepted, result
    assert result.dropped == 1 and result.sources["human"] == len(traffic)
    assert result.old_sha256 == shipped.sha256 != result.sha256
    assert result.threshold == settings.loop_threshold
    assert current_head("loop_evaluator", settings, encoder).sha256 == result.sha256
    _, parts = agent(
        _routes()[:2],
        [],
        llm=FakeListChatModel(responses=["escalate"]),
        settings=settings,
        encoder=encoder,
        executor=GuardedExecutor(ToolRegistry([]), None),
    )
    assert parts.loop.head is not None
    assert parts.loop.head.sha256 == result.sha256
    # What the agent's evaluator records is what training reads: the text and features.
    state: Any = {
        "plan": {"goal": "vent the greenhouse",
                 "steps": [{"tool": "set_greenhouse_vent", "args": {"id": "GRE-0"}}] * 2},
        "observations": [{"step": 0, "status": "ok", "output": {"id": "GRE-0", "state": "updated"}}],
    }  # fmt: skip
    decisions, _ = parts.loop.evaluate(state, NodeEnv(graph="t"), None, [])
    first = decisions[0]
    assert first.source == "slm:encoder"
    assert first.input == head_input(
        describe_step(json.dumps({"id": "GRE-0", "state": "updated"})),
        loop_features(1, 2, 1.0),
    )
    assert first.model is not None and first.model.sha256 == result.sha256
