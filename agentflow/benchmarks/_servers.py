"""Throw-away local servers for benchmarks: Debian's PostgreSQL and redis-server.

Both run on loopback in a temporary folder, configured as production would be (Postgres
with its defaults, fsync on; Redis with ``appendfsync always``), and are stopped and
removed when the block ends. As root, PostgreSQL runs as the ``postgres`` system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentflow.errors import ConfigurationError

__all__ = ["free_port", "local_postgres", "local_redis"]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: str) -> list[str]:
    return ["su", "postgres", "-c", cmd] if os.geteuid() == 0 else ["bash", "-c", cmd]


@contextmanager
def local_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster; yields ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not bins:
        raise ConfigurationError(
            "PostgreSQL is not installed", hint="apt-get install -y postgresql, or pass a URL"
        )
    base = Path(tempfile.mkdtemp(prefix="agentflow-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, log, port = base / "data", base / "log", free_port()
    try:
        subprocess.run(
            _as_postgres(f"{bins[-1]}/initdb -D {data} -U postgres --auth=trust -E UTF8"),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(
            _as_postgres(f"{bins[-1]}/pg_ctl -D {data} -l {log} -o '{options}' -w start"),
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres(f"{bins[-1]}/pg_ctl -D {data} -m immediate -w stop"),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def local_redis() -> Iterator[str]:
    """A redis-server with ``appendfsync always``; yields ``redis://127.0.0.1:PORT/0``."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise ConfigurationError(
            "redis-server is not installed", hint="apt-get install -y redis-server, or pass a URL"
        )
    base = Path(tempfile.mkdtemp(prefix="agentflow-bench-redis-"))
    port = free_port()
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(base),
        "--save", "", "--appendonly", "yes", "--appendfsync", "always",
        "--logfile", str(base / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ConfigurationError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
