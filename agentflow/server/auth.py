"""Approver authentication: bearer tokens, stored only as their sha256.

``AGENTFLOW_APPROVER_TOKENS`` maps each approver's name to the sha256 (hex) of their
token, so the settings never hold a usable secret. A request authenticates with
``Authorization: Bearer TOKEN``; the approver is whoever that token belongs to, never
what the request body says. Tokens are compared in constant time against every
configured hash, so the time taken says nothing about which approver (if any) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

from agentflow.errors import ApprovalError
from agentflow.settings import Settings

__all__ = ["AuthRefusal", "AuthStatus", "authenticate", "check_claim", "hash_token", "new_token"]

AuthStatus = Literal[401, 403]
"""401: who is asking is not established; 403: known approver, not allowed to do this."""

_NEW_TOKEN_FIX = (
    "create a token with `agentflow serve --new-token NAME`, add its line to "
    "AGENTFLOW_APPROVER_TOKENS and send it as `Authorization: Bearer TOKEN`"
)


class AuthRefusal(ApprovalError):
    """An answer refused before it reached the runtime: no valid token, or not allowed."""

    def __init__(self, status: AuthStatus, message: str, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.status: AuthStatus = status
        """HTTP status to answer with."""


def hash_token(token: str) -> str:
    """The sha256 (hex) of a token: what ``approver_tokens`` stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def authenticate(settings: Settings, authorization: str | None) -> str:
    """The approver an ``Authorization`` header belongs to; raises :class:`AuthRefusal`."""
    if not settings.approver_tokens:
        raise AuthRefusal(401, "this server has no approvers configured", _NEW_TOKEN_FIX)
    scheme, _, token = (authorization or "").strip().partition(" ")
    if not authorization:
        raise AuthRefusal(
            401,
            "no Authorization header: answering an approval needs an approver's token",
            _NEW_TOKEN_FIX,
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthRefusal(401, "the Authorization header is not 'Bearer TOKEN'", _NEW_TOKEN_FIX)
    digest = hash_token(token.strip())
    found: str | None = None
    for name, expected in settings.approver_tokens.items():
        # No early exit: every hash is compared so timing does not tell which one matched.
        if hmac.compare_digest(digest, expected.strip().lower()):
            found = name
    if found is None:
        raise AuthRefusal(401, "the bearer token belongs to no approver", _NEW_TOKEN_FIX)
    return found


def check_claim(approver: str, claimed: str | None) -> None:
    """Refuse (403) a body that names an approver other than the token's owner."""
    if claimed is not None and claimed != approver:
        raise AuthRefusal(
            403,
            f"the token belongs to {approver!r}, who may not answer as {claimed!r}",
            "answer with your own token; the approver is taken from the token (drop 'approver')",
        )
