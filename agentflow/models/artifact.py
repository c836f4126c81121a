"""Head artifacts on disk: canonical JSON, its sha256, and the deployment's signature.

The sha256 an artifact carries says the file is whole, nothing more: anyone who edits the
file can recompute it (that is how a consequence head was once edited to call an
undeclared booking tool ``safe``). What vouches for a head is the HMAC signature
(:mod:`agentflow.signing`) over one canonical message binding three digests:

- ``artifact_sha256``: the canonical content (weights, labels, calibration, metrics...);
- ``encoder_sha256``: the digest of the encoder folder the head was trained on;
- ``training_sha256``: the digest of the training data (:func:`training_digest`).

:func:`read_signed` checks that signature before anything in the file is believed; only
then are the format, the expected sha256 and the numbers looked at.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agentflow.errors import ArtifactError, SignatureError
from agentflow.examples import Example
from agentflow.signing import SigningKey

__all__ = ["content_digest", "read_signed", "signed_message", "training_digest", "write_signed"]

_PURPOSE = "agentflow.head"  # a signature made for anything else never verifies as a head's


def training_digest(examples: Sequence[Example], extra: NDArray[np.float64] | None = None) -> str:
    """sha256 of a head's training data: each example's label, text (and group, when it
    has one) in order, then the side-features' shape and float64 values (none for a
    text-only head)."""
    digest = hashlib.sha256(b"agentflow.training/1\n")
    for ex in examples:  # JSON lines: no text can pass for a label boundary
        row = [ex.label, ex.text] if ex.group is None else [ex.label, ex.text, ex.group]
        digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    if extra is not None:
        values = np.ascontiguousarray(extra, dtype="<f8")
        digest.update(json.dumps(list(values.shape)).encode() + b"\n" + values.tobytes())
    return digest.hexdigest()


def content_digest(content: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of an artifact's content."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def signed_message(artifact_sha256: str, encoder_sha256: str, training_sha256: str) -> bytes:
    """The canonical bytes a head's signature is computed over."""
    fields = {
        "purpose": _PURPOSE,
        "artifact_sha256": artifact_sha256,
        "encoder_sha256": encoder_sha256,
        "training_sha256": training_sha256,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _bound(content: dict[str, Any]) -> tuple[str, str]:
    encoder = content.get("encoder")
    encoder_sha = encoder.get("sha256") if isinstance(encoder, dict) else None
    return str(encoder_sha or ""), str(content.get("training_sha256") or "")


def write_signed(path: Path, content: dict[str, Any], key: SigningKey) -> str:
    """Write ``content`` with its sha256 and signature, atomically; returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = content_digest(content)
    signature = {
        "alg": "hmac-sha256",
        "key_id": key.key_id,
        "value": key.sign(signed_message(digest, *_bound(content))),
    }
    # A name per process: two workers rebuilding one cached head never share a half file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**content, "sha256": digest, "signature": signature}))
    tmp.replace(path)
    return digest


def read_signed(
    path: Path, key: SigningKey, expected_sha256: str | None = None
) -> tuple[dict[str, Any], str]:
    """The content of a signed artifact and its sha256, once the signature verifies.

    Raises :class:`~agentflow.errors.SignatureError` for an unsigned file, one changed
    after it was signed, or one signed with another key; :class:`ArtifactError` for a
    missing or unreadable file, or (with ``expected_sha256``, e.g. from the ledger) a
    validly signed head that is not the one expected.
    """
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"head artifact {path} does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"head artifact {path} is corrupt: {exc}") from exc
    if not isinstance(raw, dict):
        raise ArtifactError(f"head artifact {path} is corrupt: not a JSON object")
    signature = raw.pop("signature", None)
    stored = raw.pop("sha256", None)
    actual = content_digest(raw)
    fix = (
        f"retrain it with `agentflow train`, or delete {path} if it is a cached head (it is "
        "rebuilt from its examples); if AGENTFLOW_SIGNING_KEY was rotated, every head signed "
        "with the old key must be rebuilt"
    )
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise SignatureError(
            f"head artifact {path} is not signed (written before agentflow signed its "
            "heads, or its signature was removed); refusing to load it",
            hint=fix,
        )
    if not key.verify(signed_message(actual, *_bound(raw)), signature["value"]):
        # The key id is the file's claim, used only to say which fix applies.
        claimed = signature.get("key_id")
        if claimed != key.key_id:
            message = (
                f"head artifact {path} was signed with another key (key id {claimed}; this "
                f"deployment's key from {key.source} is {key.key_id}); refusing to load it"
            )
        else:
            message = (
                f"head artifact {path} does not match its signature: its content (sha256 "
                f"{actual}) was changed after it was signed; refusing to load a modified head"
            )
        raise SignatureError(message, hint=fix)
    # Signed by this deployment: from here on the content can be believed.
    if stored != actual:
        raise ArtifactError(f"head artifact {path} is corrupt: its sha256 field is not its own")
    if expected_sha256 and expected_sha256 != actual:
        raise ArtifactError(
            f"head artifact {path} has sha256 {actual}, expected {expected_sha256}; "
            "refusing to load another head than the one recorded"
        )
    return raw, actual
