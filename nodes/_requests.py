"""Messages that are not one clean request: two asks in one message, a bare "yes".

:func:`separate` cuts a message where a new request may start (an explicit join: "and"
before a request, "also", "plus", ";", a new sentence or line that begins "Also", a
numbered or bulleted list; never a plain sentence break) and asks the router's small
model about each piece. Pieces it
confidently sends to two different flows are two requests; anything else (a greeting, a
complaint in passing, a piece it is unsure of) stays with its neighbour, so a message
is split only when two things the agent would *do* are asked for. The agent handles the
first and says plainly what is left (:func:`left_over`); a reply of :func:`is_yes` takes
the next one up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage

__all__ = ["is_yes", "left_over", "separate", "with_left_over"]

# Where a second request may begin: an explicit join, never a plain sentence break (in
# real messages the sentence before the request is mostly context: "I placed order
# A13412 last week. Can you change the address to ...?"). A bare "and" joins two
# requests only when a request follows it.
_ASK = (
    r"(?:refund|cancel|change|update|send|ship|check|tell|track|stop|end|where|what|when|how"
    r"|please|pls|can\s+you|could\s+you|can\s+i|could\s+i|i'?d\s+like|i\s+want|i\s+need)\b"
)
_CUT = re.compile(
    r";\s*|(?:[.!?]\s+|\n+)(?=(?:and|also|plus|oh and|then|additionally|separately|one more thing"
    r"|another thing|second(?:ly)?|finally|p\.?s\.?)\b|\d[.)]\s)"
    r"|\n+(?=\d[.)]\s|[-*•]\s)"
    r"|,?\s+(?:and\s+also|also|(?-i:plus|Plus,)|oh\s+and|while\s+you'?re\s+at\s+it)[,:]?\s+"
    r"|,?\s+and\s+(?:then\s+)?(?=" + _ASK + r")",
    re.I,
)
_LEADING = re.compile(
    r"^(?:(?:and|also|plus|oh and|then|additionally|separately|one more thing|another thing"
    r"|second(?:ly)?|finally|p\.?s\.?|while you'?re at it)\b[,:]?\s*|\d[.)]\s+|[-*•]\s+)+",
    re.I,
)
_YES = re.compile(
    r"\s*(?:yes|yep|yeah|yup|y|ok|okay|sure|go on|go ahead|please do|do it|correct|confirm(?:ed)?"
    r"|that'?s right|right|sounds good|please)(?:[\s,.!]+(?:please|thanks|thank you|do it))*"
    r"[\s.!]*",
    re.I,
)
_MIN_WORDS = 3  # shorter pieces ("thanks!", "Hi,") never start a request of their own

Classify = Callable[[str], str | None]
"""A piece of text -> the route the small model confidently gives it, else None."""


def _pieces(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for cut in _CUT.finditer(text):
        if cut.start() > start:
            spans.append((start, cut.start()))
        start = cut.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def separate(text: str, classify: Classify, actionable: set[str]) -> list[str]:
    """The requests in ``text``, in order: ``[text]`` unless it asks for two things.

    A piece starts a new request only when ``classify`` confidently gives it a route in
    ``actionable`` (one with a flow) other than the current request's route.
    """
    spans = _pieces(text)
    if len(spans) < 2:
        return [text]
    groups: list[list[int]] = []  # [start, end] of each request so far
    routes: list[str | None] = []  # its route; None while only unsure pieces are in it
    for start, end in spans:
        piece = text[start:end]
        route = classify(piece) if len(piece.split()) >= _MIN_WORDS else None
        route = route if route in actionable else None
        # An unsure piece ("Hi there,", "thanks!") stays with the request next to it.
        if groups and (route is None or routes[-1] in (None, route)):
            groups[-1][1] = end
            routes[-1] = routes[-1] or route
        else:
            groups.append([start, end])
            routes.append(route)
    if sum(r is not None for r in routes) < 2:
        return [text]
    return [_LEADING.sub("", text[s:e].strip(" ,")).strip() for s, e in groups]


def left_over(requests: list[str]) -> str:
    """What the agent tells the user about requests it has not handled yet."""
    asked = "; ".join(f"“{r}”" for r in requests)
    return (
        f"You also asked: {asked}. I have not done that yet: reply “go on” and I will, "
        "or send it as a new message."
    )


def with_left_over(state: Mapping[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A node's final answer, followed by what is left of the user's requests (if any)."""
    deferred = state.get("deferred") or []
    messages = update.get("messages") or []
    if not deferred or not messages or state.get("loop_verdict") == "ask":
        return update  # a question first: what is left is said once this request is done
    text = f"{messages[-1].content}\n\n{left_over(list(deferred))}"
    told = {"outcome": text} if update.get("outcome") == messages[-1].content else {}
    return {**update, **told, "messages": [*messages[:-1], AIMessage(content=text)]}


def is_yes(text: str) -> bool:
    """A short reply that says yes, go on, and nothing else."""
    return _YES.fullmatch(text) is not None
