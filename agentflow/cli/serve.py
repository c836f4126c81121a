"""`agentflow serve`: the HTTP API and approval page for one graph (FastAPI + uvicorn)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import typer
from pydantic import ValidationError

from agentflow.cli._output import console, fail
from agentflow.cli.agent import _weak_llm_warning
from agentflow.errors import AgentflowError
from agentflow.settings import Settings, TokenEntry

DEFAULT_GRAPH = "graphs/support.py"


def _listen(host: str, port: int) -> socket.socket:
    """Bind first, so ``--port 0`` works and the printed address is the real one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(
            f"cannot listen on {host}:{port}: {exc} (fix: choose another --port or stop what uses it)"
        )
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _print_new_token(name: str, scopes: str, customer: str | None) -> None:
    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.server.auth import hash_token, new_token

    try:
        entry = TokenEntry(
            sha256=hash_token(token := new_token()),
            scopes=frozenset(s.strip() for s in scopes.split(",") if s.strip()),
            customer=json.loads(customer) if customer else {},
        )
    except (ValueError, ValidationError) as exc:
        fail(
            f"invalid --scopes or --customer: {exc} (fix: --scopes takes a comma-separated "
            'list of run, read, approve; --customer a JSON object such as \'{"email": "a@b.c"}\')'
        )
    tokens = {
        **{k: v.model_dump(mode="json") for k, v in Settings().tokens.items()},
        name: entry.model_dump(mode="json", exclude_defaults=True),
    }
    typer.echo(f"token for {name} (shown once, give it to them): {token}")
    typer.echo(f"scopes: {', '.join(sorted(entry.scopes))}")
    typer.echo("set this on the server (hashes only):")
    typer.echo(f"AGENTFLOW_TOKENS='{json.dumps(tokens, sort_keys=True)}'")


def serve(
    graph: str = typer.Option(
        DEFAULT_GRAPH, "--graph", "-g", help="Graph module to serve (path or dotted)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="Port (0: any free port)."),
    new_token: str | None = typer.Option(
        None,
        "--new-token",
        metavar="NAME",
        help="Print a fresh token for NAME and the settings line with its hash, then exit.",
    ),
    scopes: str = typer.Option(
        "read,approve",
        "--scopes",
        help="With --new-token: what the token may do (comma-separated: run, read, approve).",
    ),
    customer: str | None = typer.Option(
        None,
        "--customer",
        metavar="JSON",
        help="With --new-token: whom runs started with it act for (state.customer).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        "-w",
        min=1,
        help="Worker processes on this port. They share only AGENTFLOW_DATABASE_URL "
        "(use Postgres) and AGENTFLOW_REDIS_URL: any worker continues any thread.",
    ),
) -> None:
    """Serve the HTTP API and the approval page; prints the address it listens on."""
    if new_token is not None:
        _print_new_token(new_token, scopes, customer)
        return
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # Deferred: a second or more of start-up (LangGraph, torch, llama.cpp); other commands skip it.
    from agentflow.checkpoints.savers import parse_database_url
    from agentflow.graph_module import load_graph_module
    from agentflow.server.app import APP_FACTORY, GRAPH_ENV, create_app, graph_name

    settings = Settings()
    if host not in ("0.0.0.0", "::", "") and host not in settings.allowed_hosts:
        # The address it listens on is a name it must answer to.
        settings = settings.model_copy(update={"allowed_hosts": [*settings.allowed_hosts, host]})
    _weak_llm_warning(settings)
    if not settings.tokens:
        console.print(
            "[yellow]note:[/] no AGENTFLOW_TOKENS: every request but the page and /health "
            "will be refused; create tokens with `agentflow serve --new-token NAME --scopes ...`."
        )
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                console.print(
                    f"agentflow serve: graph [bold]{graph_name(graph)}[/] listening on {url}  "
                    f"(approval page {url}/ , API docs {url}/docs)",
                    highlight=False,
                )

    console.print(f"loading {graph} …")
    config: dict[str, Any] = {"log_level": "warning", "lifespan": "on"}
    try:
        load_graph_module(graph)  # a wrong path fails here, with its fix, not inside uvicorn
        if workers == 1:
            _Server(uvicorn.Config(create_app(settings, graph=graph), **config)).run(sockets=[sock])
            return
        if parse_database_url(settings.resolved_database_url).kind == "sqlite":
            console.print(
                "[yellow]note:[/] several workers on one SQLite file take turns to write; "
                "set AGENTFLOW_DATABASE_URL to Postgres for throughput."
            )
        # Each worker is a fresh process that builds its own app from these variables.
        os.environ[GRAPH_ENV] = graph
        os.environ["AGENTFLOW_ALLOWED_HOSTS"] = json.dumps(settings.allowed_hosts)
        factory = uvicorn.Config(APP_FACTORY, factory=True, workers=workers, **config)
        console.print(f"agentflow serve: {workers} workers listening on {url}", highlight=False)
        Multiprocess(factory, sockets=[sock]).run()
    except AgentflowError as exc:
        fail(exc)
    finally:
        sock.close()
