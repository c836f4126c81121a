"""The deployment signing key: an HMAC-SHA256 secret that vouches for trained heads.

A sha256 stored inside an artifact only says the file is whole: whoever edits the file
can recompute it. A head is therefore also signed with a secret only this deployment
holds (:meth:`SigningKey.sign`), and refused when the signature does not verify.

The key comes from the settings (``AGENTFLOW_SIGNING_KEY``: 64 hex digits or base64 of 32
bytes or more), which is how production deployments share one key between workers, or
else from ``<data_dir>/signing/key``, generated on first need (or by ``agentflow setup``)::

    signing/        0700: only the owner may list or replace the key
        key         0600: 32 random bytes, hex, one line
        lock        flock()ed while a process reads or creates the key

A key file others may read is refused rather than used: a key that leaked cannot vouch
for anything, and the fix (a new key, every head rebuilt) is the owner's to choose.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agentflow.errors import ConfigurationError
from agentflow.settings import Settings

__all__ = ["KEY_BYTES", "SigningKey", "existing_signing_key", "key_path", "signing_key"]

KEY_BYTES = 32
"""Length of a generated key, and the least a configured key may have (HMAC-SHA256's
block of security: a shorter secret is easier to guess than the hash is to break)."""
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class SigningKey:
    """An HMAC-SHA256 secret and where it came from (the secret never shows in a repr)."""

    secret: bytes = field(repr=False)
    """The raw key bytes."""
    source: str
    """``AGENTFLOW_SIGNING_KEY`` or the key file's path, for messages."""

    @property
    def key_id(self) -> str:
        """A public name for the key (16 hex digits), stored beside each signature so that
        a head signed with another key can be told apart from a modified one. Derived
        through the HMAC, so it reveals nothing about the secret."""
        return self.sign(b"agentflow.signing-key-id")[:16]

    def sign(self, message: bytes) -> str:
        """HMAC-SHA256 of ``message`` under this key, as hex."""
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def verify(self, message: bytes, signature: str) -> bool:
        """True when ``signature`` is this key's signature of ``message`` (constant time)."""
        return hmac.compare_digest(self.sign(message), signature)


def key_path(settings: Settings) -> Path:
    """Where the key file lives (or would) when ``AGENTFLOW_SIGNING_KEY`` is not set."""
    return Path(settings.data_dir).resolve() / "signing" / "key"


def signing_key(settings: Settings) -> SigningKey:
    """The deployment's key: ``AGENTFLOW_SIGNING_KEY`` if set, else the key file,
    generated on first need.

    A malformed key, or a key file that others may read, raises
    :class:`~agentflow.errors.ConfigurationError`: generating a new key silently would
    disown every head the old one signed.
    """
    key = _find(settings, create=True)
    assert key is not None  # _find creates what is missing
    return key


def existing_signing_key(settings: Settings) -> SigningKey | None:
    """Like :func:`signing_key`, but None instead of generating a missing key file (for
    checks, which must not change what they check)."""
    return _find(settings, create=False)


def _find(settings: Settings, *, create: bool) -> SigningKey | None:
    if settings.signing_key is not None:
        return SigningKey(_decode(settings.signing_key.get_secret_value()), "AGENTFLOW_SIGNING_KEY")
    path = key_path(settings)
    if not create and not path.exists():
        return None
    try:
        with _locked(path.parent):
            if path.exists():
                return _read(path)
            return _create(path) if create else None
    except OSError as exc:  # a read-only or foreign data folder
        raise ConfigurationError(
            f"cannot read or create the signing key {path}: {exc}",
            hint="make the data folder writable by this user, or set AGENTFLOW_SIGNING_KEY",
        ) from exc


def _decode(text: str) -> bytes:
    text = text.strip()
    raw: bytes | None = None
    if _HEX.match(text):
        raw = bytes.fromhex(text)
    else:
        with contextlib.suppress(binascii.Error, ValueError):
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    if raw is None or len(raw) < KEY_BYTES:
        raise ConfigurationError(
            f"AGENTFLOW_SIGNING_KEY must be hex or base64 of at least {KEY_BYTES} bytes "
            f"({'not hex or base64' if raw is None else f'it decodes to {len(raw)} bytes'})",
            hint=f"generate one with: {_GENERATE}",
        )
    return raw


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/lock``: two first processes never generate two keys (each would then
    sign its heads with a key the other replaced)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # mkdir's mode is filtered by the umask, and an old folder may be open
    with open(folder / "lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read(path: Path) -> SigningKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"the signing key {path} may be read by others (mode {mode:o}); refusing to use it",
            hint=f"if nobody else could have read it: chmod 600 {path}; otherwise delete it "
            "(a new key is generated) and rebuild every head: the cached ones rebuild "
            "themselves, retrained ones need `agentflow train` again",
        )
    text = path.read_text().strip()
    if not _HEX.match(text) or len(text) < 2 * KEY_BYTES:
        raise ConfigurationError(
            f"the signing key {path} is not {2 * KEY_BYTES} hex digits",
            hint="restore it from a backup, or delete it (a new key is generated) and "
            "rebuild every head it signed (`agentflow train` for retrained ones)",
        )
    return SigningKey(bytes.fromhex(text), str(path))


def _create(path: Path) -> SigningKey:
    """Write a new key atomically with owner-only permissions: readers see no file or a
    whole one, never a half-written key they would take for another."""
    secret = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".key.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover file from a crash keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return SigningKey(secret, str(path))
