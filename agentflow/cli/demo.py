"""`agentflow demo`: the support agent on a handful of messages, every path shown."""

from __future__ import annotations

from agentflow.cli._output import console, fail
from agentflow.cli.agent import _print_result, _weak_llm_warning, setup
from agentflow.errors import AgentflowError
from agentflow.settings import Settings

# Each conversation is one thread; a later message answers the agent's question.
CONVERSATIONS: list[tuple[str, ...]] = [
    ("Hi, where is my order A10234? It was supposed to arrive yesterday.",),
    ("Please change the delivery address of order A10235 to 7 Queen Street, York YO1 7HH",),
    (
        "The apartment number on order 62157 is wrong, it should be 4B.",
        "Flat 4B, 12 Harbour Street, Leeds LS1 4AB",
    ),
    ("I want to cancel my subscription at the end of this month, it's too expensive",),
    ("Order 58812 arrived broken. I want a refund of $25.",),
    ("What does the Pro plan cost per month and does it include priority support?",),
    ("This is the third time my package is late. Absolutely unacceptable, I want a manager NOW.",),
]


def demo() -> None:
    """Set up the embedded database and run the support agent over a few conversations."""
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.nodes.approval import ApprovalAnswer
    from agentflow.runtime import AgentRuntime

    settings = Settings()
    setup()
    _weak_llm_warning(settings)
    try:
        with AgentRuntime.open("graphs/support.py", settings=settings) as rt:
            for messages in CONVERSATIONS:
                thread: str | None = None
                for message in messages:
                    console.rule(message)
                    res = rt.run(message, thread_id=thread)
                    _print_result(res, json_out=False)
                    thread = res.thread_id
                    if res.pending_approval:
                        p = res.pending_approval
                        console.print(f"[bold]approving[/] {p['approval_id']} as 'demo-approver'")
                        answer = ApprovalAnswer(
                            approval_id=p["approval_id"],
                            decision="approve",
                            approver="demo-approver",
                            digest=p["digest"],
                        )
                        _print_result(rt.answer(thread, answer), json_out=False)
    except AgentflowError as exc:
        fail(exc)
