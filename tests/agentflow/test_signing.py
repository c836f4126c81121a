"""The deployment signing key: generated owner-only on first need, or given in settings."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentflow.cli import app
from agentflow.errors import ConfigurationError
from agentflow.settings import Settings
from agentflow.signing import existing_signing_key, key_path, signing_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_generated_once_owner_only_in_an_owner_only_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "af")
    assert existing_signing_key(settings) is None  # a check never makes a key
    assert not key_path(settings).exists()
    key = signing_key(settings)
    path = key_path(settings)
    assert key.source == str(path) and path == tmp_path.resolve() / "af" / "signing" / "key"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert len(key.secret) == 32 and path.read_text().strip() == key.secret.hex()
    # Every later use, in this process or another, finds the same key.
    again = signing_key(settings)
    assert again.secret == key.secret and again.key_id == key.key_id
    assert existing_signing_key(settings) == key
    assert key.secret.hex() not in repr(key)  # the secret never shows in a log line
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_setup_creates_the_key_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(tmp_path / "af"))
    monkeypatch.delenv("AGENTFLOW_SIGNING_KEY", raising=False)
    result = CliRunner().invoke(app, ["setup"])
    assert result.exit_code == 0, result.output
    key = existing_signing_key(Settings())
    assert key is not None and f"key id {key.key_id}" in result.stdout
    assert _mode(key_path(Settings())) == 0o600


def test_a_key_given_in_settings_is_used_instead_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secrets.token_bytes(32)
    file_key = signing_key(Settings(data_dir=tmp_path / "af"))
    for text in (secret.hex(), base64.b64encode(secret).decode(), base64.urlsafe_b64encode(secret).decode().rstrip("=")):  # fmt: skip
        monkeypatch.setenv("AGENTFLOW_SIGNING_KEY", text)
        settings = Settings(data_dir=tmp_path / "af")
        key = signing_key(settings)
        assert key.secret == secret and key.source == "AGENTFLOW_SIGNING_KEY"
        assert key.key_id != file_key.key_id
        assert not key.verify(b"m", file_key.sign(b"m")) and key.verify(b"m", key.sign(b"m"))
    # With the setting, no key file is made where there is none.
    fresh = Settings(data_dir=tmp_path / "fresh")
    assert signing_key(fresh).secret == secret and not key_path(fresh).exists()


@pytest.mark.parametrize(
    ("text", "why"),
    [("0123abcd", "4 bytes"), ("not a key!", "not hex or base64"), ("ab" * 31, "31 bytes")],
)
def test_a_malformed_or_short_settings_key_is_refused(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match="AGENTFLOW_SIGNING_KEY") as err:
        signing_key(Settings(data_dir=tmp_path, signing_key=text))
    assert why in str(err.value) and "token_hex(32)" in str(err.value)


def test_a_key_file_others_may_read_is_refused_not_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = signing_key(settings)
    path = key_path(settings)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="may be read by others") as err:
        signing_key(settings)
    assert str(path) in str(err.value) and "chmod 600" in str(err.value)
    os.chmod(path, 0o600)
    assert signing_key(settings).secret == key.secret
    path.write_text("short\n")
    with pytest.raises(ConfigurationError, match="hex digits"):
        signing_key(settings)


def test_a_key_that_cannot_be_made_says_how_to_give_one(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "af"
    not_a_folder.write_text("a file where the data folder should be")
    with pytest.raises(ConfigurationError, match="cannot read or create") as err:
        signing_key(Settings(data_dir=not_a_folder))
    assert "AGENTFLOW_SIGNING_KEY" in str(err.value)
