"""The approval page: one static HTML file with a little vanilla JavaScript, no build step.

The page reads ``GET /approvals`` and answers with ``POST /approvals/{thread}``; the
approver's token is typed into the page and kept in ``sessionStorage`` (gone when the
tab closes, never sent anywhere but this server). Everything from the API is inserted
as text, never as HTML, so an argument cannot inject markup into the approver's page.
"""

from __future__ import annotations

import html as html_lib
from functools import cache
from importlib.resources import files

__all__ = ["html"]


@cache
def _template() -> str:
    return (
        files("agentflow.server").joinpath("static", "approvals.html").read_text(encoding="utf-8")
    )


def html(graph: str) -> str:
    """The page for the graph named ``graph``."""
    return _template().replace("{{graph}}", html_lib.escape(graph))
