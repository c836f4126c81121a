"""Verify every artifact the runtime would trust (``agentflow models check``).

One :class:`ArtifactStatus` per artifact: the signing key, the encoder (every file of its
folder), the GGUF, and each role's heads, both the one ``agentflow train`` kept (recorded
in the ledger) and the one cached from its examples. A head is checked as the runtime
loads it: its signature with the deployment's key first, then the ledger's sha256, the
encoder it is bound to and (cached heads) the training data it was signed for. A check
never creates what it checks: no key, no database, no head is made here (the embedded
GGUF is the exception: it is reassembled from its packages, as every run would).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from agentflow.errors import AgentflowError, ArtifactError
from agentflow.heads import cache_path
from agentflow.models.head import EncoderHead
from agentflow.models.registry import encoder_file, gguf_file
from agentflow.retrain import kept_version, role_data
from agentflow.settings import Settings
from agentflow.signing import SigningKey, existing_signing_key, key_path

__all__ = ["HEAD_ROLES", "ArtifactStatus", "check_artifacts"]

HEAD_ROLES = ("router", "consequence_modeler", "loop_evaluator")
"""Roles served by an encoder head (the router's examples come from a graph)."""

Status = Literal["ok", "absent", "problem"]


@dataclass(frozen=True)
class ArtifactStatus:
    """What checking one artifact found."""

    artifact: str
    """What it is: ``signing key``, ``encoder``, ``gguf``, ``head ROLE (kept|cached)``."""
    path: str
    """Where it is (or would be)."""
    status: Status
    """``ok``; ``absent`` when it is made on first need (not a problem); ``problem``."""
    sha256: str | None = None
    """Its verified sha256 (a folder's digest, a head's content hash); None unverified."""
    detail: str = ""
    """What is wrong, or a note."""
    fix: str = ""
    """What to do about a problem."""

    @property
    def ok(self) -> bool:
        """False only for a problem."""
        return self.status != "problem"

    def line(self) -> str:
        """One line for people: status, artifact, path, sha256, then what is wrong."""
        text = f"{self.status:<8}{self.artifact:<34} {self.path}  sha256={self.sha256 or '-'}"
        if self.detail:
            text += f"  {self.detail}"
        return text + (f" (fix: {self.fix})" if self.fix else "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``ok``."""
        return {**asdict(self), "ok": self.ok}


def _failed(status: ArtifactStatus, exc: AgentflowError) -> ArtifactStatus:
    return replace(status, status="problem", detail=exc.message, fix=exc.hint)


def _key(settings: Settings) -> tuple[SigningKey | None, ArtifactStatus]:
    where = "AGENTFLOW_SIGNING_KEY" if settings.signing_key else str(key_path(settings))
    try:
        key = existing_signing_key(settings)
    except AgentflowError as exc:
        return None, _failed(ArtifactStatus("signing key", where, "problem"), exc)
    if key is None:
        note = "none yet: generated on first need (`agentflow setup`)"
        return None, ArtifactStatus("signing key", where, "absent", None, note)
    return key, ArtifactStatus("signing key", where, "ok", None, f"key id {key.key_id}")


def _model(name: str, settings: Settings) -> ArtifactStatus:
    locate = encoder_file if name == "encoder" else gguf_file
    try:
        found = locate(settings)
    except AgentflowError as exc:
        where = settings.encoder_path if name == "encoder" else settings.gguf_path
        return _failed(ArtifactStatus(name, str(where or "embedded"), "problem"), exc)
    return ArtifactStatus(name, str(found.path), "ok", found.sha256)


def _head(
    artifact: str,
    path: Path,
    key: SigningKey | None,
    encoder_sha256: str | None,
    *,
    expected_sha256: str | None = None,
    training_sha256: str | None = None,
    fix: str,
) -> ArtifactStatus:
    """Check one head file as the runtime would load it."""
    if key is None:
        return ArtifactStatus(
            artifact,
            str(path),
            "problem",
            None,
            "no signing key: nothing can vouch for this head",
            "restore the key (or AGENTFLOW_SIGNING_KEY) that signed it; " + fix,
        )
    try:
        head = EncoderHead.load(path, key=key, expected_sha256=expected_sha256)
    except ArtifactError as exc:
        return ArtifactStatus(artifact, str(path), "problem", None, exc.message, fix)
    wrong = ""
    if encoder_sha256 and head.encoder_sha256 != encoder_sha256:
        wrong = (
            f"trained on encoder {head.encoder_sha256[:16]}…, but the configured encoder "
            f"is {encoder_sha256[:16]}…"
        )
    elif training_sha256 and head.training_sha256 != training_sha256:
        wrong = "signed for other training data than its role's examples"
    if wrong:
        return ArtifactStatus(artifact, str(path), "problem", head.sha256, wrong, fix)
    return ArtifactStatus(artifact, str(path), "ok", head.sha256)


def _heads(
    settings: Settings, key: SigningKey | None, encoder_sha256: str | None, graph: str | None
) -> list[ArtifactStatus]:
    found: list[ArtifactStatus] = []
    for role in HEAD_ROLES:
        retrain = f"retrain it with `agentflow train --role {role}`" + (
            " --graph GRAPH" if role == "router" else ""
        )
        try:
            version = kept_version(role, settings)
        except AgentflowError as exc:  # the ledger cannot be read: say so, check the rest
            problem = ArtifactStatus(f"head {role} (kept)", "ledger", "problem")
            found.append(_failed(problem, exc))
            version = None
        if version is not None:
            found.append(
                _head(
                    f"head {role} (kept)",
                    Path(version.path),
                    key,
                    encoder_sha256,
                    expected_sha256=version.sha256,
                    fix=f"{retrain}; if AGENTFLOW_SIGNING_KEY was rotated, retrain every kept head",
                )
            )
        if encoder_sha256 is None or (role == "router" and graph is None):
            continue  # no verified encoder (reported above) or no graph: no cache to name
        try:
            examples, _, extra = role_data(role, graph)
        except AgentflowError as exc:
            found.append(
                _failed(ArtifactStatus(f"head {role} (cached)", str(graph), "problem"), exc)
            )
            continue
        path, trained_on = cache_path(role, examples, encoder_sha256, settings, extra)
        artifact = f"head {role} (cached)"
        if not path.exists():
            note = "not built yet: trained from its examples on first use"
            found.append(ArtifactStatus(artifact, str(path), "absent", None, note))
            continue
        found.append(
            _head(
                artifact,
                path,
                key,
                encoder_sha256,
                training_sha256=trained_on,
                fix=f"nothing vouches for this file: find out who changed it; the next run "
                f"rebuilds it from the examples (or delete {path})",
            )
        )
    return found


def check_artifacts(settings: Settings, graph: str | None = None) -> list[ArtifactStatus]:
    """Verify the signing key, the encoder, the GGUF and every head in use (the router's
    cached head only for ``graph``, whose routes are its examples)."""
    key, key_status = _key(settings)
    encoder = _model("encoder", settings)
    statuses = [key_status, encoder, _model("gguf", settings)]
    return statuses + _heads(settings, key, encoder.sha256, graph)
