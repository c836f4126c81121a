"""Bearer tokens with an identity and scopes, stored only as their sha256.

``AGENTFLOW_TOKENS`` maps each identity to its token's sha256, its scopes and, for a
token that starts runs, the customer those runs act for (:class:`~agentflow.settings.
TokenEntry`), so the settings never hold a usable secret. A request authenticates with
``Authorization: Bearer TOKEN``; who is asking, what they may do and whom a run acts for
come from the token, never from the request body. Tokens are compared in constant time
against every configured hash, so the time taken says nothing about which one matched.

One model for every way in: the HTTP API (:mod:`agentflow.server.app`) and LangGraph
Server (:mod:`agentflow.server.langgraph_auth`) both call :func:`authenticate`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from agentflow.errors import ApprovalError
from agentflow.settings import Scope, Settings

__all__ = [
    "AuthRefusal",
    "AuthStatus",
    "Identity",
    "authenticate",
    "check_claim",
    "hash_token",
    "new_token",
]

AuthStatus = Literal[401, 403]
"""401: who is asking is not established; 403: known identity, not allowed to do this."""

_NEW_TOKEN_FIX = (
    "create a token with `agentflow serve --new-token NAME --scopes ...`, add its entry to "
    "AGENTFLOW_TOKENS and send it as `Authorization: Bearer TOKEN`"
)


class AuthRefusal(ApprovalError):
    """A request refused before it did anything: no valid token, or not allowed."""

    def __init__(self, status: AuthStatus, message: str, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.status: AuthStatus = status
        """HTTP status to answer with."""


@dataclass(frozen=True)
class Identity:
    """Who a valid token belongs to and what it allows."""

    name: str
    """The identity (an approver's name, a customer's account)."""
    scopes: frozenset[Scope]
    """What the token may do."""
    customer: dict[str, Any] = field(default_factory=dict)
    """Whom runs started with this token act for."""

    def require(self, scope: Scope) -> Identity:
        """This identity, if it has ``scope``; else :class:`AuthRefusal` (403)."""
        if scope not in self.scopes:
            raise AuthRefusal(
                403,
                f"the token of {self.name!r} does not have the {scope!r} scope",
                f"use a token with the {scope!r} scope (`agentflow serve --new-token NAME "
                f"--scopes {scope}`)",
            )
        return self

    @property
    def principal(self) -> dict[str, Any]:
        """``state.customer`` of a run this identity starts: its customer and its name."""
        return {**self.customer, "principal": self.name}


def hash_token(token: str) -> str:
    """The sha256 (hex) of a token: what ``AGENTFLOW_TOKENS`` stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def authenticate(settings: Settings, authorization: str | None) -> Identity:
    """The identity an ``Authorization`` header belongs to; raises :class:`AuthRefusal` (401)."""
    if not settings.tokens:
        raise AuthRefusal(401, "this server has no tokens configured", _NEW_TOKEN_FIX)
    if not authorization:
        raise AuthRefusal(401, "no Authorization header: this needs a bearer token", _NEW_TOKEN_FIX)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthRefusal(401, "the Authorization header is not 'Bearer TOKEN'", _NEW_TOKEN_FIX)
    digest = hash_token(token.strip())
    found: Identity | None = None
    for name, entry in settings.tokens.items():
        # No early exit: every hash is compared so timing does not tell which one matched.
        if hmac.compare_digest(digest, entry.sha256):
            found = Identity(name=name, scopes=entry.scopes, customer=dict(entry.customer))
    if found is None:
        raise AuthRefusal(401, "the bearer token belongs to no one here", _NEW_TOKEN_FIX)
    return found


def check_claim(approver: str, claimed: str | None) -> None:
    """Refuse (403) a body that names an approver other than the token's owner."""
    if claimed is not None and claimed != approver:
        raise AuthRefusal(
            403,
            f"the token belongs to {approver!r}, who may not answer as {claimed!r}",
            "answer with your own token; the approver is taken from the token (drop 'approver')",
        )
