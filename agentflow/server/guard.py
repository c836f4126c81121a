"""Checks every HTTP request passes before the app sees it: the Host header and the body size.

A page on another site can reach a server on loopback through DNS rebinding (its own host
name made to resolve to 127.0.0.1): the browser then sends that foreign name as ``Host``.
Only the names in ``AGENTFLOW_ALLOWED_HOSTS`` are served; anything else gets 400 before
any route runs. Bodies larger than ``AGENTFLOW_MAX_BODY_BYTES`` get 413, from the
``Content-Length`` header when there is one and otherwise as soon as the stream passes the
limit, so a huge body is never read into memory.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RequestGuard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _host_name(value: str) -> str:
    """``127.0.0.1:8000`` -> ``127.0.0.1``; ``[::1]:8000`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class RequestGuard:
    """ASGI middleware: refuse foreign ``Host`` headers (400) and oversized bodies (413)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str], max_body_bytes: int) -> None:
        self.app = app
        self.allowed = {_host_name(h) for h in allowed_hosts}
        """Host names served (ports ignored)."""
        self.max_body_bytes = max_body_bytes
        """Largest request body accepted."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then hand it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = _host_name(headers.get("host", ""))
        if "*" not in self.allowed and host not in self.allowed:
            await _refuse(
                send,
                400,
                f"this server does not answer to the host name {host!r}",
                "open it by an allowed name (127.0.0.1 or localhost), or add the name to "
                "AGENTFLOW_ALLOWED_HOSTS",
            )
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(send, 413, *self._too_large())
            return
        seen = 0
        too_large = False
        sent = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    # Stop reading; whatever the app makes of the cut-off body is replaced
                    # by the 413 below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Message) -> None:
            nonlocal sent
            if too_large:
                return
            sent = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not sent:
            await _refuse(send, 413, *self._too_large())

    def _too_large(self) -> tuple[str, str]:
        return (
            f"the request body is larger than {self.max_body_bytes} bytes",
            "send a smaller body (or raise AGENTFLOW_MAX_BODY_BYTES)",
        )


async def _refuse(send: Send, status: int, error: str, fix: str) -> None:
    body = json.dumps({"error": error, "fix": fix}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
