"""`agentflow bench decisions`: latency of one small-model decision, one call at a time.

Measurements, each after warm-up: an encoder-head decision on one customer message (the
support router's head, MiniLM + logistic regression) and on one tool observation (the loop
evaluator's head, longer inputs), a generative GGUF choice among the four loop
verdicts with a ~200-token few-shot prefix kept in the KV cache, and a 4-field schema
extraction with the GGUF. Targets come from DESIGN.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from agentflow.evaluation import percentiles
from agentflow.examples import Example
from agentflow.graph_module import load_graph_module
from agentflow.heads import head_for, loop_examples
from agentflow.models.encoder import load_encoder
from agentflow.models.gguf import load_gguf
from agentflow.settings import Settings

__all__ = ["run"]

_TARGETS = {
    "encoder_head": (20.0, 40.0),
    "gguf_choice": (150.0, None),
    "gguf_extract": (1000.0, None),
}


class _Ticket(BaseModel):
    """A 4-field extraction target."""

    order_id: str
    """Order number."""
    intent: Literal["refund", "cancel", "status", "address"]
    """What the customer wants."""
    urgent: bool
    """Whether they sound urgent."""
    amount: float | None = None
    """Money mentioned, if any."""


_MESSAGES = [
    "Order A10234 never arrived and I want my $45.90 back today!",
    "where is order 58812? it's been a week",
    "please cancel order B20031, no rush",
    "I need order A10235 sent to my new flat at 4 Mill Lane instead",
    "Refund $12.50 on order C30990 please, charged twice",
]


def _time(fn: Callable[[int], Any], n: int, warmup: int = 3) -> list[float]:
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _summary(name: str, samples: list[float]) -> dict[str, Any]:
    stats = percentiles(samples)
    p50_target, p95_target = _TARGETS[name]
    meets = stats["p50_ms"] <= p50_target and (p95_target is None or stats["p95_ms"] <= p95_target)
    return {
        **stats,
        "n": len(samples),
        "target_p50_ms": p50_target,
        "target_p95_ms": p95_target,
        "meets_target": meets,
    }


def run(
    settings: Settings | None = None,
    *,
    graph: str = "graphs/support.py",
    n_head: int = 300,
    n_choice: int = 60,
    n_extract: int = 10,
    generative: bool = True,
) -> dict[str, Any]:
    """Measure the three decision kinds; a JSON-ready report."""
    settings = settings or Settings()
    encoder = load_encoder(settings)
    # The router head and messages of a graph: its routes() and load_workload().
    module = load_graph_module(graph)
    routes = module.routes()
    route_examples = [Example(text=t, label=r.name) for r in routes for t in r.examples]
    router = head_for("router", route_examples, encoder, settings)
    messages = list(module.load_workload())
    examples, extra = loop_examples()
    loop_head = head_for("loop_evaluator", examples, encoder, settings, extra)
    texts = [ex.text for ex in examples]
    report: dict[str, Any] = {"cores": os.cpu_count(), "n_threads": settings.n_threads}
    # "One message": the router head on the reference workload's customer messages.
    report["encoder_head"] = _summary(
        "encoder_head", _time(lambda i: router.decide(messages[i % len(messages)], encoder), n_head)
    )
    # The loop evaluator reads tool observations (JSON, often 100+ tokens): longer inputs.
    report["encoder_head_observation"] = _summary(
        "encoder_head",
        _time(
            lambda i: loop_head.decide(texts[i % len(texts)], encoder, extra=extra[i % len(texts)]),
            n_head,
        ),
    )
    if not generative:
        return report

    gguf = load_gguf(settings)
    shots = "".join(f"{ex.text}\nverdict: {ex.label}\n\n" for ex in examples[:4])
    prefix = "Decide what an agent loop does next: continue, replan, done or escalate.\n\n" + shots
    choices = ["continue", "replan", "done", "escalate"]
    report["gguf_choice"] = _summary(
        "gguf_choice",
        _time(
            lambda i: gguf.choose(
                "loop_evaluator", prefix, texts[(i + 7) % len(texts)] + "\nverdict:", choices
            ),
            n_choice,
        ),
    )
    report["gguf_choice"]["prefix_tokens"] = len(gguf._tokenize(prefix))
    extract_prefix = (
        "Extract the ticket fields as JSON.\n"
        'Message: my order A5 is late, refund $3 now\n{"order_id": "A5", "intent": "refund", '
        '"urgent": true, "amount": 3.0}\n'
    )
    report["gguf_extract"] = _summary(
        "gguf_extract",
        _time(
            lambda i: gguf.extract(
                "extractor", extract_prefix, _MESSAGES[i % len(_MESSAGES)], _Ticket
            ),
            n_extract,
            warmup=1,
        ),
    )
    return report
