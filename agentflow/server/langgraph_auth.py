"""Authentication for LangGraph Server (``langgraph.json``'s ``auth``), with agentflow's tokens.

Every request to the server needs ``Authorization: Bearer TOKEN`` with a token from
``AGENTFLOW_APPROVER_TOKENS`` (stored as sha256, see :mod:`agentflow.server.auth`);
anything else is answered 401 before a graph runs, so an unauthenticated client can
neither start a run, nor update a thread's state, nor resume an approval. The token's
owner becomes the server's ``langgraph_auth_user`` with the ``approve`` permission; the
approval node takes the approver's name from there, never from the resume value, and
only then writes the grant the executor needs (:mod:`nodes.approval`).
"""

from __future__ import annotations

from langgraph_sdk import Auth

from agentflow.server.auth import AuthRefusal, authenticate
from agentflow.settings import Settings
from nodes.approval import APPROVE_PERMISSION

__all__ = ["auth"]

auth = Auth()
"""The handler ``langgraph.json`` names."""


@auth.authenticate
async def _authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    try:
        name = authenticate(Settings(), authorization)
    except AuthRefusal as exc:
        # The reason says what to send; it names no approver and no configured hash.
        raise Auth.exceptions.HTTPException(status_code=401, detail=exc.message) from None
    return {"identity": name, "permissions": [APPROVE_PERMISSION]}
