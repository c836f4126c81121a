"""Model files are verified by sha256 (an encoder by every file of its folder); anything
else is refused with the fix in the error."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from agentflow.errors import ModelIntegrityError, ModelNotFoundError
from agentflow.models.digest import folder_digest, folder_manifest
from agentflow.models.registry import (
    EMBEDDED_ENCODER,
    EMBEDDED_GGUF,
    check_models,
    encoder_file,
    gguf_file,
)
from agentflow.settings import Settings


def test_embedded_gguf_is_assembled_and_verified(tmp_path: Path) -> None:
    found = gguf_file(Settings(data_dir=tmp_path))
    assert found.path.is_file()
    assert hashlib.sha256(found.path.read_bytes()).hexdigest() == EMBEDDED_GGUF.sha256


def test_tampered_embedded_gguf_is_refused_with_file_hash_and_fix(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    path = gguf_file(settings).path
    with path.open("r+b") as fh:  # flip one byte in the middle of the weights
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError) as err:
        gguf_file(settings)
    text = str(err.value)
    assert str(path) in text and EMBEDDED_GGUF.sha256 in text and "fix:" in text


def test_user_gguf_without_or_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    src = gguf_file(Settings(data_dir=tmp_path)).path
    user = tmp_path / "mine.gguf"
    shutil.copy(src, user)
    with pytest.raises(ModelNotFoundError, match="AGENTFLOW_GGUF_SHA256"):
        gguf_file(Settings(data_dir=tmp_path, gguf_path=user))
    with pytest.raises(ModelIntegrityError, match=r"expected 0{64}"):
        gguf_file(Settings(data_dir=tmp_path, gguf_path=user, gguf_sha256="0" * 64))
    ok = gguf_file(Settings(data_dir=tmp_path, gguf_path=user, gguf_sha256=EMBEDDED_GGUF.sha256))
    assert ok.sha256 == EMBEDDED_GGUF.sha256


def test_missing_user_model_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match=r"nope\.gguf"):
        gguf_file(Settings(data_dir=tmp_path, gguf_path=missing, gguf_sha256="0" * 64))


@pytest.fixture(scope="module")
def encoder_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A faithful copy of the embedded encoder folder, as a user would configure it."""
    folder = tmp_path_factory.mktemp("user-encoder") / "minilm"
    shutil.copytree(encoder_file(Settings()).path, folder)
    return folder


def test_the_encoder_is_identified_by_every_file_of_its_folder(encoder_copy: Path) -> None:
    embedded = encoder_file(Settings())
    assert embedded.sha256 == EMBEDDED_ENCODER.sha256 == folder_digest(embedded.path)
    assert folder_manifest(encoder_copy) == EMBEDDED_ENCODER.files  # tokenizer, configs...
    # The documented coreutils pipeline gives the same digest (a user can check it by hand).
    pipeline = (
        "find -L . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
    )
    out = subprocess.run(
        ["bash", "-c", pipeline], cwd=encoder_copy, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[0] == embedded.sha256
    # A copy is the same encoder wherever it lives: heads trained on one serve the other.
    user = encoder_file(Settings(encoder_path=encoder_copy, encoder_sha256=embedded.sha256))
    assert user.sha256 == embedded.sha256 and user.path == encoder_copy


def test_a_tampered_tokenizer_changes_the_encoder_digest_and_is_refused(
    encoder_copy: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "enc"
    shutil.copytree(encoder_copy, folder)
    trusted = folder_digest(folder)
    tokenizer = folder / "tokenizer_config.json"
    tokenizer.write_text(
        tokenizer.read_text().replace('"do_lower_case": true', '"do_lower_case": false')
    )
    assert folder_digest(folder) != trusted
    with pytest.raises(ModelIntegrityError, match="a file in it was changed") as err:
        encoder_file(Settings(encoder_path=folder, encoder_sha256=trusted))
    assert str(folder) in str(err.value) and "agentflow models hash" in str(err.value)
    # The weights alone are untouched: the old weights-only hash would have let this pass.
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    with pytest.raises(ModelIntegrityError, match="weights file's sha256"):
        encoder_file(Settings(encoder_path=folder, encoder_sha256=weights))
    with pytest.raises(ModelNotFoundError, match="whole folder"):
        encoder_file(Settings(encoder_path=folder))


def test_check_models_reports_each_problem(tmp_path: Path) -> None:
    report = check_models(
        Settings(data_dir=tmp_path, gguf_path=tmp_path / "x.gguf", gguf_sha256="1" * 64)
    )
    assert report["ok"] is False
    assert report["models"]["encoder"]["ok"] is True
    assert report["models"]["gguf"]["ok"] is False and "x.gguf" in report["models"]["gguf"]["error"]
