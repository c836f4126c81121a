"""`agentflow bench loop`: loop control measured on recorded multi-step runs.

Each run is replayed step by step through the agent's own loop node
(:func:`agentflow.nodes.loop_evaluator.loop_node`) and, for steps that carry a tool definition, its
consequence modeler, with the heads the agent builds (``agentflow.builder``) and no LLM.
A decision the escalation policy does not trust counts as one LLM call, since that is
where the agent would ask it; what the LLM would answer is not known, so such a step's
verdict is reported as ``llm``. Every step is judged, also after a verdict that would
have stopped the agent: the recorded run went on, and the later steps are part of it.
A run stopped early is counted both ways: as done (``premature_done``, over all runs)
and as escalated when it was in fact done (``premature_escalate``, over done runs).

The plan a replay follows is the recorded steps: ``steps_planned`` is the run's length,
so the evaluator knows how many steps remain (``premature_done``). A planner that does
not know its plan's length is replayed as well (``premature_done_plan_unknown``): after
each step the plan is the steps so far plus one more. The side-features then never
mark a last step, and the evaluator can stop only on what the observation says. Not the
plan ending at the current step: the loop examples never label ``continue`` there, so
every success would read as done, which measures the labelling, not the evaluator.

A recorded observation that looks like an error is a failed step
(:func:`~agentflow.benchmarks.trajectories.observation_failed`), fed as ``error: ...``
the way the loop node feeds an executor's error; anything else is fed as the tool's
output, JSON-encoded as the loop node encodes it.

The agent's default guards (:class:`agentflow.nodes.loop_evaluator.LoopGuards`) are reported
apart (``default_guards``) and do not cut a replay short, so that the heads are
measured on every step of a long run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from agentflow.benchmarks._memo import MemoEncoder
from agentflow.benchmarks.trajectories import Trajectory, load_trajectories, observation_failed
from agentflow.decision import Decision
from agentflow.heads import consequence_examples, head_for, loop_examples
from agentflow.models.encoder import load_encoder
from agentflow.nodes._common import NodeEnv
from agentflow.nodes.consequence_modeler import ConsequenceModeler, describe_call
from agentflow.nodes.loop_evaluator import LoopEvaluator, LoopGuards, describe_step, loop_node
from agentflow.retrain import head_in_use
from agentflow.settings import Settings
from agentflow.state import AgentState

__all__ = ["TARGET_LLM_CALLS_PER_10_STEPS", "TARGET_PREMATURE_DONE", "run"]

TARGET_LLM_CALLS_PER_10_STEPS = 2.0
"""Issue 14: at most 2 LLM calls per 10 loop steps."""
TARGET_PREMATURE_DONE = 0.02
"""Issue 14: at most 2% of runs stopped as done before their last step."""

_NEVER = LoopGuards(max_iterations=1 << 30, error_budget=1 << 30, token_budget=1 << 30)


def _state(run: Trajectory, i: int, errors: int, plan_known: bool) -> AgentState:
    """The agent state the loop node sees right after step ``i`` of ``run``."""
    step = run.steps[i]
    failed = observation_failed(step.observation)
    text = step.observation if isinstance(step.observation, str) else json.dumps(step.observation)
    steps = [{"tool": s.tool, "args": s.args} for s in run.steps]
    # Plan unknown: as far as the evaluator can tell, one more step is still to come.
    planned = steps if plan_known else [*steps[: i + 1], steps[i]]
    return AgentState(
        plan={"goal": run.goal, "steps": planned},
        observations=[
            {
                "step": i,
                "tool": step.tool,
                "status": "failed" if failed else "ok",
                "output": None if failed else step.observation,
                "error": text if failed else None,
            }
        ],
        cursor=i if failed else i + 1,
        iterations=i + 1,
        errors=errors,
        llm_tokens=0,
    )


def _states(run: Trajectory, plan_known: bool) -> list[AgentState]:
    errors = [observation_failed(s.observation) for s in run.steps]
    return [_state(run, i, sum(errors[: i + 1]), plan_known) for i in range(len(run.steps))]


def _texts(runs: list[Trajectory]) -> list[str]:
    """What the loop evaluator and the consequence modeler will read, as they write it."""
    out = []
    for run in runs:
        for state in _states(run, True):
            last = state["observations"][-1]
            failed = last["status"] == "failed"
            out.append(
                describe_step(f"error: {last['error']}" if failed else json.dumps(last["output"]))
            )
        out += [
            describe_call(s.definition.model_dump(exclude_none=True), s.args)
            for s in run.steps
            if s.definition
        ]
    return out


class _Replay(NamedTuple):
    """What the deciders made of one run."""

    verdicts: list[str]
    """Per step, the loop's verdict without the LLM; ``llm`` where it would ask."""
    far: int
    """Decisions, of either role, on inputs far from the head's training examples."""
    classes: list[str]
    """Per assessed step, the consequence class; ``llm`` where it would ask."""
    consequence_calls: int
    """Assessments that would ask the LLM."""


def _replay(
    run: Trajectory, evaluator: LoopEvaluator, modeler: ConsequenceModeler, plan_known: bool
) -> _Replay:
    node = loop_node(evaluator, NodeEnv())
    verdicts, far = [], 0
    for state in _states(run, plan_known):
        result = node(state, {})
        small = Decision[Any].model_validate(result["decisions"][0])
        verdicts.append(result["loop_verdict"] if evaluator.policy.trusts(small) else "llm")
        far += small.far
    classes: list[str] = []
    calls = 0
    # The consequence of a call does not depend on the plan: assessed once per run.
    for step in run.steps if plan_known else ():
        if step.definition is None:
            continue
        assessment = modeler.assess(step.definition.model_dump(exclude_none=True), step.args)
        small = assessment.decisions[0]
        trusted = modeler.policy.trusts(small)
        classes.append(assessment.cls if trusted else "llm")
        far += small.far
        # A declared irreversible call waits for a human; the modeler does not ask the LLM.
        calls += not trusted and assessment.floor != "irreversible"
    return _Replay(verdicts, far, classes, calls)


def _share(n: int, of: int) -> float:
    return round(n / of, 4) if of else 0.0


def _stops(runs: list[Trajectory], replays: list[_Replay]) -> dict[str, Any]:
    """Where the loop stops runs, against how they really ended."""
    pairs = [(r, p.verdicts) for r, p in zip(runs, replays, strict=True)]
    done = [(r, v) for r, v in pairs if r.final == "done"]
    needed = [v for r, v in pairs if r.final == "escalate"]

    def first(verdict: str, among: list[tuple[Trajectory, list[str]]]) -> list[dict[str, Any]]:
        found = [(r, v.index(verdict)) for r, v in among if verdict in v[:-1]]
        return [
            {"id": r.id, "step": k + 1, "of": len(r.steps), "tool": r.steps[k].tool}
            for r, k in found
        ]

    early_done, early_escalate = first("done", pairs), first("escalate", done)
    missed = [v[-1] for _, v in done if v[-1] != "done"]
    return {
        "llm_calls": sum(v.count("llm") for _, v in pairs),
        "premature_done": _share(len(early_done), len(runs)),
        "missed_done": _share(len(missed), len(done)),
        "premature_escalate": _share(len(early_escalate), len(done)),
        "verdicts": dict(Counter(x for _, v in pairs for x in v)),
        "premature_done_at": early_done,
        "missed_done_by_last_verdict": dict(Counter(missed)),
        "premature_escalate_at": early_escalate,
        "escalate_runs": {
            "runs": len(needed),
            "escalated_by_last_step": _share(sum("escalate" in v for v in needed), len(needed)),
            "escalated_at_last_step": _share(sum(v[-1] == "escalate" for v in needed), len(needed)),
            "llm_at_last_step": _share(sum(v[-1] == "llm" for v in needed), len(needed)),
            "said_done": [r.id for r, v in pairs if r.final == "escalate" and "done" in v],
        },
    }


def _guards(runs: list[Trajectory]) -> dict[str, Any]:
    """Where the agent's default guards would stop each run (a rule, no model asked)."""
    rule = LoopEvaluator(head=None, encoder=None, llm=None)
    stops: Counter[str] = Counter()
    done_runs = 0
    for run in runs:
        hit = next(filter(None, map(rule.guard, _states(run, True))), None)
        if hit is not None:
            stops[hit.rationale or "guard"] += 1
            done_runs += run.final == "done"
    return {
        "max_iterations": rule.guards.max_iterations,
        "error_budget": rule.guards.error_budget,
        "runs_stopped": sum(stops.values()),
        "done_runs_stopped": done_runs,
        "by_reason": dict(stops),
    }


def _deciders(settings: Settings, encoder: MemoEncoder) -> tuple[LoopEvaluator, ConsequenceModeler]:
    """The loop evaluator and consequence modeler with the heads the agent builds."""

    rows, extra = loop_examples()
    evaluator = LoopEvaluator(
        head=head_for("loop_evaluator", rows, encoder, settings, extra),
        encoder=encoder,
        llm=None,
        guards=_NEVER,
        threshold=settings.loop_threshold,
    )
    examples = consequence_examples()
    labels = {ex.label for ex in examples}
    modeler = ConsequenceModeler(
        head=head_in_use("consequence_modeler", examples, labels, encoder, settings),
        encoder=encoder,
        llm=None,
        threshold=settings.consequence_threshold,
    )
    return evaluator, modeler


def run(
    path: Path | None = None,
    *,
    settings: Settings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Replay the runs of ``path`` (default: the shipped ones); a JSON-ready report."""
    note = progress or (lambda _stage, _done, _total: None)
    runs = load_trajectories(path)
    settings = settings or Settings()
    encoder = MemoEncoder(load_encoder(settings))
    note("embed", 0, 1)
    encoder.fill(_texts(runs))
    evaluator, modeler = _deciders(settings, encoder)
    known, blind = [], []
    for n, trajectory in enumerate(runs):
        known.append(_replay(trajectory, evaluator, modeler, True))
        blind.append(_replay(trajectory, evaluator, modeler, False))
        note("replay", n + 1, len(runs))
    steps = sum(len(r.steps) for r in runs)
    stops, blind_stops = _stops(runs, known), _stops(runs, blind)
    classes = Counter(c for r in known for c in r.classes)
    loop_calls, consequence_calls = stops.pop("llm_calls"), sum(r.consequence_calls for r in known)
    per_10 = round(10 * (loop_calls + consequence_calls) / steps, 3)
    blind_per_10 = round(10 * (blind_stops.pop("llm_calls") + consequence_calls) / steps, 3)
    heaviest = sorted(
        zip(runs, known, strict=True),
        key=lambda x: -x[1].verdicts.count("llm") - x[1].consequence_calls,
    )
    return {
        "trajectories": len(runs),
        "steps": steps,
        "steps_by_length": dict(sorted(Counter(len(r.steps) for r in runs).items())),
        "llm_calls": loop_calls + consequence_calls,
        "llm_calls_per_10_steps": per_10,
        "llm_calls_by_role": {
            "loop_evaluator": loop_calls,
            "consequence_modeler": consequence_calls,
        },
        "premature_done": stops["premature_done"],
        "premature_done_plan_unknown": blind_stops["premature_done"],
        "missed_done": stops["missed_done"],
        # Untrusted small-model decisions: the LLM is asked, or (declared irreversible) a human.
        "escalations": {
            "total": loop_calls + classes["llm"],
            "loop_evaluator": loop_calls,
            "consequence_modeler": classes["llm"],
        },
        **stops,
        "consequence_classes": dict(classes),
        "far_decisions": sum(r.far for r in known),
        "most_llm_calls": [
            {
                "id": r.id,
                "steps": len(r.steps),
                "loop_evaluator": p.verdicts.count("llm"),
                "consequence_modeler": p.consequence_calls,
            }
            for r, p in heaviest[:10]
        ],
        "plan_unknown": {"llm_calls_per_10_steps": blind_per_10, **blind_stops},
        "default_guards": _guards(runs),
        "targets": {
            "llm_calls_per_10_steps": TARGET_LLM_CALLS_PER_10_STEPS,
            "premature_done": TARGET_PREMATURE_DONE,
        },
        "meets_target": per_10 <= TARGET_LLM_CALLS_PER_10_STEPS
        and stops["premature_done"] <= TARGET_PREMATURE_DONE,
    }
