"""`agentflow demo`: the support agent on a handful of messages, every path shown."""

from __future__ import annotations

from agentflow.cli._output import console, fail
from agentflow.errors import AgentflowError
from agentflow.settings import Settings

MESSAGES = [
    "Hi, where is my order A10234? It was supposed to arrive yesterday.",
    "Please change the delivery address of order A10235 to 7 Queen Street, York YO1 7HH",
    "I want to cancel my subscription at the end of this month, it's too expensive",
    "Order 58812 arrived broken. I want a refund of $25.",
    "What does the Pro plan cost per month and does it include priority support?",
    "This is the third time my package is late. Absolutely unacceptable, I want a manager NOW.",
]


def demo() -> None:
    """Set up the embedded database and run the support agent over six messages."""
    from agentflow.cli.agent import _print_result, _weak_llm_warning, setup
    from agentflow.runtime import AgentRuntime
    from nodes.approval import ApprovalAnswer

    settings = Settings()
    setup()
    _weak_llm_warning(settings)
    try:
        with AgentRuntime.open("graphs/support.py", settings=settings) as rt:
            for message in MESSAGES:
                console.rule(message)
                res = rt.run(message)
                _print_result(res, json_out=False)
                if res.pending_approval:
                    p = res.pending_approval
                    console.print(f"[bold]approving[/] {p['approval_id']} as 'demo-approver'")
                    res = rt.answer(
                        res.thread_id,
                        ApprovalAnswer(
                            approval_id=p["approval_id"],
                            decision="approve",
                            approver="demo-approver",
                            digest=p["digest"],
                        ),
                    )
                    _print_result(res, json_out=False)
    except AgentflowError as exc:
        fail(exc)
