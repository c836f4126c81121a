"""The HTTP API and approval page: ``create_app(settings)`` is a FastAPI application.

=======================  =============================================================
``POST /runs``           run the graph on a message -> :class:`RunResult`
``GET /runs/{thread}``   a thread's state, decisions, recorded approvals, trace link
``GET /approvals``       every action waiting for a human
``POST /approvals/{t}``  answer one (``Authorization: Bearer TOKEN``)
``GET /``                the approval page; ``/docs`` and ``/openapi.json``: the schema
=======================  =============================================================

Every error is JSON ``{"error": ..., "fix": ...}``. A request whose ``Host`` is not an
allowed name (DNS rebinding) gets 400 and one with a body over the limit 413, before any
route runs (:mod:`agentflow.server.guard`). An answer is authenticated before
its body is even read, so a request without a valid token learns nothing but 401; it is
recorded in the ledger as refused. A refused answer (bad token, wrong digest, unknown
approval, malformed body) changes neither the thread nor anything the tools touch.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Security
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from agentflow.errors import (
    AgentflowError,
    ApprovalError,
    ConfigurationError,
    DigestMismatchError,
    IdempotencyError,
    LedgerError,
    UnknownApprovalError,
)
from agentflow.runtime import AgentRuntime, RunResult
from agentflow.server import page
from agentflow.server.auth import AuthRefusal, authenticate, check_claim
from agentflow.server.guard import RequestGuard
from agentflow.server.schemas import (
    THREAD_ID_PATTERN,
    AnswerRequest,
    ErrorBody,
    PendingApproval,
    RunRequest,
    ThreadView,
)
from agentflow.server.service import (
    AgentService,
    ThreadBusyError,
    UnknownGraphError,
    UnknownThreadError,
)
from agentflow.server.traces import TraceLinker, TraceLinks
from agentflow.settings import Settings

__all__ = ["RuntimeFactory", "create_app", "graph_name", "open_runtime"]

RuntimeFactory = Callable[[str, Settings], AbstractContextManager[AgentRuntime]]
"""(graph module, settings) -> a context manager yielding the open runtime."""

_log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[AgentflowError], int], ...] = (
    (UnknownThreadError, 404),
    (UnknownGraphError, 404),
    (UnknownApprovalError, 404),
    (DigestMismatchError, 409),
    (ThreadBusyError, 409),
    (ApprovalError, 422),
    (IdempotencyError, 503),
    (LedgerError, 503),
)
"""HTTP status of each error kind, most specific first; anything else is a 500."""

_SCHEMA_FIX = "send a JSON object as described in /openapi.json (readable at /docs)"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 503)
}


def open_runtime(graph: str, settings: Settings) -> AbstractContextManager[AgentRuntime]:
    """The default :data:`RuntimeFactory`: ``AgentRuntime.open(graph, settings=settings)``."""
    return AgentRuntime.open(graph, settings=settings)


def graph_name(spec: str) -> str:
    """The name a graph is served under: ``graphs/support.py`` -> ``support``."""
    return Path(spec).stem if spec.endswith(".py") else spec.rsplit(".", 1)[-1]


def _error(status: int, error: str, fix: str, **extra: Any) -> JSONResponse:
    body = ErrorBody(error=error, fix=fix, **extra).model_dump(exclude_none=True)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error") or bad_json.get("msg", "")
        return f"the request body is not valid JSON: {reason}"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentflowError)
    async def agentflow_error(_request: Request, exc: AgentflowError) -> JSONResponse:
        status = (
            exc.status
            if isinstance(exc, AuthRefusal)
            else next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        )
        if status == 500:
            _log.error("request failed: %s", exc)
        return _error(status, exc.message, exc.hint or "see the server log")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        message = _validation_message(list(exc.errors()))
        return _error(422, message, _SCHEMA_FIX, details=jsonable_encoder(errors))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        fix = (
            "see /docs for the routes this server has"
            if exc.status_code in (404, 405)
            else "see /docs"
        )
        return _error(exc.status_code, str(exc.detail), fix)

    @app.exception_handler(Exception)
    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unhandled error")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", "see the server log")


def create_app(
    settings: Settings | None = None,
    *,
    runtime_factory: RuntimeFactory = open_runtime,
    graph: str = "graphs/support.py",
    trace_links: TraceLinker | None = None,
) -> FastAPI:
    """The API and page for one graph; the runtime is opened when the app starts.

    ``runtime_factory`` opens the runtime (tests pass one with a fake LLM);
    ``trace_links`` maps a thread id to its trace URL (default: Langfuse when configured).
    """
    settings = settings or Settings()
    name = graph_name(graph)
    holder: dict[str, AgentService] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        with runtime_factory(graph, settings) as runtime:
            holder["service"] = AgentService(runtime, name, trace_links or TraceLinks(settings))
            yield
            holder.clear()

    app = FastAPI(
        title="agentflow",
        summary=f"Run the {name!r} agent, read its decisions, and answer its pending approvals.",
        version="0.1.0",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    app.add_middleware(
        RequestGuard,
        allowed_hosts=settings.allowed_hosts,
        max_body_bytes=settings.max_body_bytes,
    )
    bearer = HTTPBearer(
        auto_error=False, description="An approver's token (see `agentflow serve --new-token`)."
    )
    thread_path = PathParam(pattern=THREAD_ID_PATTERN, description="Thread id.")

    def service() -> AgentService:
        if "service" not in holder:
            raise ConfigurationError("the server is not started", hint="wait for startup to finish")
        return holder["service"]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def approval_page() -> HTMLResponse:
        return HTMLResponse(page.html(name))

    @app.get("/health", summary="Liveness and the graph served")
    def health() -> dict[str, Any]:
        """``{"ok": true, "graph": NAME}`` once the runtime is open."""
        return {"ok": True, "graph": service().name}

    @app.post(
        "/runs", response_model=RunResult, responses=_ERRORS, summary="Run the graph on a message"
    )
    def start_run(body: RunRequest) -> RunResult:
        """Run until the graph finishes or waits for an approval."""
        return service().run(body)

    @app.get(
        "/runs/{thread_id}",
        response_model=ThreadView,
        responses=_ERRORS,
        summary="A thread's state",
    )
    def get_run(thread_id: str = thread_path) -> ThreadView:
        """State, decisions, recorded approval answers and the trace link of a thread."""
        return service().thread(thread_id)

    @app.get("/approvals", response_model=list[PendingApproval], summary="Pending approvals")
    def list_approvals() -> list[PendingApproval]:
        """Every action waiting for a human, with the decisions that led to it."""
        return service().pending()

    @app.post(
        "/approvals/{thread_id}",
        response_model=RunResult,
        responses=_ERRORS,
        summary="Answer a pending approval",
        dependencies=[Security(bearer)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": AnswerRequest.model_json_schema()}},
            }
        },
    )
    async def answer_approval(request: Request, thread_id: str = thread_path) -> RunResult:
        """Approve, reject, edit or respond as the approver the bearer token belongs to."""
        svc = service()
        raw = await request.body()
        try:
            approver = authenticate(settings, request.headers.get("authorization"))
        except AuthRefusal as refusal:
            await run_in_threadpool(
                svc.record_refusal, thread_id, raw, f"{refusal.status}: {refusal.message}"
            )
            raise
        try:
            body = AnswerRequest.model_validate_json(raw or b"")
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from exc
        try:
            check_claim(approver, body.approver)
        except AuthRefusal as refusal:
            await run_in_threadpool(
                svc.record_refusal, thread_id, raw, f"403: {refusal.message}", approver
            )
            raise
        return await run_in_threadpool(svc.answer, thread_id, approver, body)

    return app
