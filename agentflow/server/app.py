"""The HTTP API and approval page: ``create_app(settings)`` is a FastAPI application.

=======================  ===================================================  ===========
route                    what                                                 token scope
=======================  ===================================================  ===========
``POST /runs``           run the graph on a message -> :class:`RunResult`     ``run``
``GET /runs/{thread}``   a thread's state, decisions, approvals, trace link   ``read``
``GET /approvals``       actions waiting for a human                          ``read``
``POST /approvals/{t}``  answer one                                           ``approve``
``GET /``, ``/health``   the approval page (no data in it), liveness          none
=======================  ===================================================  ===========

Every other route needs ``Authorization: Bearer TOKEN`` (:mod:`agentflow.server.auth`),
checked before the body is read. Who a run acts for comes from the token; a thread is
visible to its owner (the identity that started it) and to approvers, and is "not
found" for anyone else. A request whose ``Host`` is not an allowed name (DNS rebinding)
gets 400 and one with a body over the limit 413, before any route runs
(:mod:`agentflow.server.guard`).

Every error is JSON ``{"error": ..., "fix": ...}``; a server-side failure says only its
kind and a reference that the log has the details under (no paths, SQL or host names).
An answer refused for an authenticated identity (no ``approve`` scope, impersonation,
wrong digest) is recorded in the ledger under that identity; a request with no valid
token is only logged, so nobody can write records in a name they do not hold. A refused
answer changes neither the thread nor anything the tools touch.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Security
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from agentflow.errors import (
    AgentflowError,
    ApprovalError,
    ConfigurationError,
    DigestMismatchError,
    IdempotencyError,
    KeyInFlightError,
    KeyMismatchError,
    LedgerError,
    UnfinishedRunError,
    UnknownApprovalError,
)
from agentflow.runtime import AgentRuntime, RunResult
from agentflow.server import page
from agentflow.server.auth import AuthRefusal, Identity, authenticate, check_claim
from agentflow.server.guard import RequestGuard
from agentflow.server.recovery import RecoveryLoop
from agentflow.server.schemas import (
    THREAD_ID_PATTERN,
    AnswerRequest,
    ErrorBody,
    PendingApproval,
    RunAccepted,
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
from agentflow.settings import Scope, Settings

__all__ = [
    "APP_FACTORY",
    "GRAPH_ENV",
    "RuntimeFactory",
    "app_from_env",
    "check_ready",
    "create_app",
    "graph_name",
    "open_runtime",
]

GRAPH_ENV = "AGENTFLOW_SERVE_GRAPH"
"""The graph module a worker started by ``agentflow serve --workers N`` serves."""
APP_FACTORY = "agentflow.server.app:app_from_env"
"""The import string uvicorn's worker processes build their app from."""

RuntimeFactory = Callable[[str, Settings], AbstractContextManager[AgentRuntime]]
"""(graph module, settings) -> a context manager yielding the open runtime."""

_log = logging.getLogger(__name__)

_Body = TypeVar("_Body", bound=BaseModel)

_STATUS: tuple[tuple[type[AgentflowError], int], ...] = (
    (UnknownThreadError, 404),
    (UnknownGraphError, 404),
    (UnknownApprovalError, 404),
    (DigestMismatchError, 409),
    (ThreadBusyError, 409),
    (KeyInFlightError, 409),
    (KeyMismatchError, 422),
    (UnfinishedRunError, 409),
    (ApprovalError, 422),
)
"""HTTP status of each client error kind, most specific first; anything else is a 5xx."""

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


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the route reads itself (after the token is checked)."""
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
"""What an ``Idempotency-Key`` may be: 1 to 255 printable ASCII characters, no spaces."""


def _idempotency_key(request: Request) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    key = raw.strip().strip('"')  # the IETF draft sends it as a quoted string
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise RequestValidationError(
            [
                {
                    "loc": ("header", "Idempotency-Key"),
                    "msg": "1-255 printable ASCII characters",
                    "type": "value_error",
                }
            ]
        )
    return key


def _parse(model: type[_Body], raw: bytes) -> _Body:
    try:
        return model.model_validate_json(raw or b"")
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc


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
        if status >= 500:
            return _internal(exc)
        return _error(status, exc.message, exc.hint or "see /docs")

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
        return _internal(exc)


_PUBLIC_5XX: tuple[tuple[type[AgentflowError], int, str], ...] = (
    (IdempotencyError, 503, "the idempotency store is unavailable or busy; nothing ran twice"),
    (LedgerError, 503, "the ledger database is unavailable"),
)
"""What a caller is told of a server-side failure: a kind, never its text."""


def _internal(exc: Exception) -> JSONResponse:
    """A 5xx answer: the details (paths, SQL, hosts) go to the log under a reference only."""
    ref = uuid.uuid4().hex[:12]
    _log.error("request failed (ref %s)", ref, exc_info=exc)
    status, error = next(
        ((code, text) for kind, code, text in _PUBLIC_5XX if isinstance(exc, kind)),
        (500, "internal error"),
    )
    return _error(status, f"{error} (ref {ref})", f"retry later; the server log has ref {ref}")


def check_ready(runtime: AgentRuntime) -> None:
    """Refuse to serve on a database that is not migrated or a store that can lose writes.

    Checked when a worker starts, before any request: a worker that would fail every
    request later (or, worse, run tools on a Redis that forgets their keys) does not start.
    """
    runtime.ledger.check_schema()
    store = runtime.store
    store.ping()
    problem = store.durability_problem()
    if problem is not None:
        raise ConfigurationError(
            f"the idempotency store at {store.where} can lose writes: {problem}",
            hint="turn on appendonly (appendfsync always or everysec) on that Redis, or set "
            "AGENTFLOW_ALLOW_VOLATILE_REDIS=1 to accept that a crash may repeat an effect",
        )


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
            check_ready(runtime)
            svc = AgentService(runtime, name, trace_links or TraceLinks(settings))
            recovery = RecoveryLoop(svc, every_s=settings.recovery_seconds)
            if settings.recovery_seconds:
                recovery.start()
            holder["service"] = svc
            try:
                yield
            finally:
                holder.clear()
                recovery.stop()
                svc.close()

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

    def identity(request: Request, scope: Scope) -> Identity:
        # Checked before the body is read: a caller without a token costs a header parse.
        return authenticate(settings, request.headers.get("authorization")).require(scope)

    @app.post(
        "/runs",
        response_model=RunResult,
        responses={**_ERRORS, 202: {"model": RunAccepted}},
        summary="Run the graph on a message",
        dependencies=[Security(bearer)],
        openapi_extra=_body_schema(RunRequest),
    )
    async def start_run(request: Request) -> Any:
        """Run until the graph finishes or waits for an approval (``run`` scope).

        The run acts for the token's customer; a thread can be continued only by its owner.
        ``Idempotency-Key: K`` makes a retry safe: it gets the first submission's run
        (``Idempotent-Replayed: true``), another body under K is refused (422), a retry
        while the first is still handled gets 409. ``Prefer: respond-async`` answers 202
        at once with the thread and its status URL (``Location``); poll that URL.
        """
        who = identity(request, "run")
        key = _idempotency_key(request)
        wait = "respond-async" not in request.headers.get("prefer", "").lower()
        body = _parse(RunRequest, await request.body())
        result, replayed = await run_in_threadpool(service().submit, body, who, key=key, wait=wait)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        if result.status != "running":
            return JSONResponse(jsonable_encoder(result), headers=headers)
        url = f"/runs/{result.thread_id}"
        accepted = RunAccepted(thread_id=result.thread_id, status_url=url)
        return JSONResponse(
            accepted.model_dump(), status_code=202, headers={**headers, "Location": url}
        )

    @app.get(
        "/runs/{thread_id}",
        response_model=ThreadView,
        responses=_ERRORS,
        summary="A thread's state",
        dependencies=[Security(bearer)],
    )
    def get_run(request: Request, thread_id: str = thread_path) -> ThreadView:
        """State, decisions, approvals and trace link of a thread (``read``; owner or approver)."""
        return service().thread(thread_id, identity(request, "read"))

    @app.get(
        "/approvals",
        response_model=list[PendingApproval],
        responses=_ERRORS,
        summary="Pending approvals",
        dependencies=[Security(bearer)],
    )
    def list_approvals(request: Request) -> list[PendingApproval]:
        """Actions waiting for a human (``read``): all for approvers, else the caller's own."""
        return service().pending(identity(request, "read"))

    @app.post(
        "/approvals/{thread_id}",
        response_model=RunResult,
        responses=_ERRORS,
        summary="Answer a pending approval",
        dependencies=[Security(bearer)],
        openapi_extra=_body_schema(AnswerRequest),
    )
    async def answer_approval(request: Request, thread_id: str = thread_path) -> RunResult:
        """Approve, reject, edit or respond as the token's owner (``approve`` scope)."""
        svc = service()
        try:
            who = authenticate(settings, request.headers.get("authorization"))
        except AuthRefusal as refusal:
            await run_in_threadpool(svc.record_refusal, thread_id, refusal)
            raise
        try:
            who.require("approve")
        except AuthRefusal as refusal:
            await run_in_threadpool(svc.record_refusal, thread_id, refusal, who)
            raise
        body = _parse(AnswerRequest, await request.body())
        try:
            check_claim(who.name, body.approver)
        except AuthRefusal as refusal:
            await run_in_threadpool(svc.record_refusal, thread_id, refusal, who, body)
            raise
        return await run_in_threadpool(svc.answer, thread_id, who.name, body)

    return app


def app_from_env() -> FastAPI:
    """The app of one worker process of ``agentflow serve --workers N``: the graph named by
    ``AGENTFLOW_SERVE_GRAPH``, the settings from the environment."""
    graph = os.environ.get(GRAPH_ENV)
    if not graph:
        raise ConfigurationError(
            f"{GRAPH_ENV} is not set", hint="start workers with `agentflow serve --workers N`"
        )
    return create_app(Settings(), graph=graph)
