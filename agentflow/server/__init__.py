"""The HTTP API and approval page (``agentflow serve``); see :mod:`agentflow.server.app`."""

from __future__ import annotations

from agentflow.server.app import create_app

__all__ = ["create_app"]
