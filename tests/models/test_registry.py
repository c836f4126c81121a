"""Model files are verified by sha256; anything else is refused with the fix in the error."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from agentflow.errors import ModelIntegrityError, ModelNotFoundError
from agentflow.models.registry import EMBEDDED_GGUF, check_models, encoder_file, gguf_file
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


def test_tampered_user_encoder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    shutil.copytree(encoder_file(Settings()).path, folder)
    weights = folder / "model.safetensors"
    with weights.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError, match=r"model\.safetensors"):
        encoder_file(Settings(encoder_path=folder, encoder_sha256=encoder_file(Settings()).sha256))


def test_check_models_reports_each_problem(tmp_path: Path) -> None:
    report = check_models(
        Settings(data_dir=tmp_path, gguf_path=tmp_path / "x.gguf", gguf_sha256="1" * 64)
    )
    assert report["ok"] is False
    assert report["models"]["encoder"]["ok"] is True
    assert report["models"]["gguf"]["ok"] is False and "x.gguf" in report["models"]["gguf"]["error"]
