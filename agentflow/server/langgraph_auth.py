"""Authentication for LangGraph Server (``langgraph.json``'s ``auth``), with agentflow's tokens.

The same tokens as the HTTP API (``AGENTFLOW_TOKENS``, stored as sha256, see
:mod:`agentflow.server.auth`), the same scopes:

===========================================  ==============================================
request                                      needs
===========================================  ==============================================
anything                                     a valid token (401 before a graph runs)
create a thread                              ``run``; the thread's ``owner`` is the token's
a run with a new message                     ``run``; own threads only; the input carries
                                             only ``messages``, and ``customer`` is set from
                                             the token (as the HTTP API does)
a run with a ``Command`` (resume, update)    ``approve``; any thread
read, search, delete a thread                ``read``; own threads only, approvers all
update a thread (state, metadata)            ``approve``
assistants                                   read and search only
crons, the store, anything else              refused (403)
===========================================  ==============================================

Someone else's thread is filtered out (the server answers 404), never shown. The token's
scopes become the server user's permissions: a resume by a user without ``approve`` is
refused by the approval node itself, which takes the approver's name from the server's
authenticated user, never from the resume value, and only then writes the grant the
executor needs (:mod:`agentflow.nodes.approval`). A state update is an operator's tool (``approve``),
and even then it cannot approve anything: approvals are grants in the store, not state.
"""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth

from agentflow.nodes.approval import APPROVE_PERMISSION
from agentflow.server.auth import AuthRefusal, Identity, authenticate
from agentflow.settings import Scope, Settings

__all__ = ["auth"]

auth = Auth()
"""The handler ``langgraph.json`` names."""

_OWNER = "owner"
"""Thread metadata key holding the identity that created it."""


@auth.authenticate
async def _authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    try:
        who = authenticate(Settings(), authorization)
    except AuthRefusal as exc:
        # The reason says what to send; it names no identity and no configured hash.
        raise Auth.exceptions.HTTPException(status_code=401, detail=exc.message) from None
    return {"identity": who.name, "permissions": sorted(who.scopes)}


def _need(ctx: Auth.types.AuthContext, *scopes: Scope) -> None:
    if not set(scopes) & set(ctx.permissions):
        wanted = " or ".join(repr(s) for s in scopes)
        raise Auth.exceptions.HTTPException(
            status_code=403, detail=f"this needs a token with the {wanted} scope"
        )


def _own(ctx: Auth.types.AuthContext) -> dict[str, Any] | None:
    """No filter for approvers; everyone else sees only the threads they created."""
    if APPROVE_PERMISSION in ctx.permissions:
        return None
    return {_OWNER: ctx.user.identity}


@auth.on.threads.create
async def _create_thread(
    ctx: Auth.types.AuthContext, value: Auth.types.ThreadsCreate
) -> dict[str, Any]:
    _need(ctx, "run")
    metadata = value.setdefault("metadata", {})
    metadata[_OWNER] = ctx.user.identity
    return {_OWNER: ctx.user.identity}


@auth.on.threads.create_run
async def _create_run(
    ctx: Auth.types.AuthContext, value: Auth.types.RunsCreate
) -> dict[str, Any] | None:
    kwargs: dict[str, Any] = value.get("kwargs") or {}  # type: ignore[assignment]
    metadata = value.setdefault("metadata", {})
    metadata[_OWNER] = ctx.user.identity  # a run can create its thread: never someone else's
    if kwargs.get("command") is not None:
        # A resume, or a Command that writes state: an approver's act, on any thread.
        _need(ctx, "approve")
        return None
    # A new message: only in one's own threads, acting for one's own customer, and
    # carrying nothing but messages (other keys would be state written by the caller).
    _need(ctx, "run")
    given = kwargs.get("input")
    if given is not None:
        if not isinstance(given, dict) or set(given) - {"messages"}:
            raise Auth.exceptions.HTTPException(
                status_code=403, detail="a run's input may carry only 'messages'"
            )
        kwargs["input"] = {**given, "customer": _principal(ctx.user.identity)}
    return {_OWNER: ctx.user.identity}


def _principal(identity: str) -> dict[str, Any]:
    """``state.customer`` of a run: the token's customer and name, as the HTTP API sets it."""
    entry = Settings().tokens.get(identity)
    return Identity(identity, entry.scopes, dict(entry.customer)).principal if entry else {}


@auth.on.threads.update
async def _update_thread(
    ctx: Auth.types.AuthContext, value: Auth.types.ThreadsUpdate
) -> dict[str, Any] | None:
    _need(ctx, "approve")
    return _own(ctx)


@auth.on.threads
async def _other_thread_actions(ctx: Auth.types.AuthContext, value: Any) -> dict[str, Any] | None:
    _need(ctx, "read")
    return _own(ctx)


@auth.on.crons
async def _crons(ctx: Auth.types.AuthContext, value: Any) -> dict[str, Any] | None:
    # Scheduled runs would run outside any request, with nobody's scopes: not offered.
    raise Auth.exceptions.HTTPException(status_code=403, detail="crons are not enabled here")


@auth.on.assistants
async def _assistants(ctx: Auth.types.AuthContext, value: Any) -> None:
    if ctx.action not in ("read", "search"):
        # The graphs served are the deployment's: no token creates or rewires one.
        raise Auth.exceptions.HTTPException(status_code=403, detail="assistants are read-only here")
    _need(ctx, "run", "read", "approve")


@auth.on
async def _everything_else(ctx: Auth.types.AuthContext, value: Any) -> None:
    # Deny by default: a resource without a rule above (the store, new ones) is closed.
    raise Auth.exceptions.HTTPException(
        status_code=403, detail=f"{ctx.resource}.{ctx.action} is not enabled here"
    )
