"""`agentflow models check`: every artifact verified, one line each, exit 1 on any problem.

A real data folder (key file, the assembled GGUF, a SQLite ledger), a small graph whose
router head is cached, and a router head `agentflow train` kept (recorded in the ledger);
each test tampers with one thing the way someone with write access could, and puts it back.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentflow.checkpoints.ledger import Ledger
from agentflow.cli import app
from agentflow.errors import ArtifactError
from agentflow.examples import Example
from agentflow.heads import cache_path, head_for
from agentflow.models.artifact import content_digest
from agentflow.models.digest import folder_digest, sha256_file
from agentflow.models.encoder import Encoder, load_encoder
from agentflow.models.head import EncoderHead
from agentflow.models.registry import EMBEDDED_ENCODER, EMBEDDED_GGUF, ModelFile, encoder_file
from agentflow.retrain import active_head
from agentflow.settings import Settings
from agentflow.signing import signing_key

ROUTES = {
    "order_status": ["where is my order", "has my package shipped yet", "tracking number please",
                     "when will my parcel arrive", "my order hasn't arrived", "is my order on its way",
                     "check the status of my order", "my package is late", "which carrier has my order",
                     "what's the delivery date of my order"],
    "refund": ["I want my money back", "please refund my order", "can I get a refund for this charge",
               "I was charged twice, refund me", "return the money for my order", "how do I get reimbursed",
               "refund the amount to my card", "I want a refund for the broken item", "give me back my payment",
               "the charge was wrong, please refund it"],
    "pricing": ["how much is the Pro plan", "what does the Basic plan include", "do you offer discounts",
                "price of the team plan", "is there a student discount", "compare Plus and Pro plans",
                "what's the monthly cost", "are there annual pricing options", "how much per user",
                "what features come with Plus"],
}  # fmt: skip
GRAPH = '''"""A graph for the check: routes only."""
from agentflow.nodes.router import Route

ROUTES = {routes!r}


def routes():
    return [Route(name=n, description=n, examples=tuple(ts)) for n, ts in ROUTES.items()]
'''


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, encoder: Encoder, gguf_model_file: ModelFile
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("check")
    graph = tmp / "check_graph.py"
    graph.write_text(GRAPH.format(routes=ROUTES))
    data_dir = tmp / "af"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(gguf_model_file.path.parent, target_is_directory=True)
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{tmp}/ledger.db")
    examples = [Example(text=t, label=n) for n, ts in ROUTES.items() for t in ts]
    cached = head_for("router", examples, encoder, settings)
    kept_path = data_dir / "heads" / "router-1.json"
    kept = EncoderHead.train(examples[::2], encoder, "router")
    with Ledger(settings.resolved_database_url) as ledger:
        ledger.setup()
        sha = kept.save(kept_path, key=signing_key(settings))
        ledger.record_head_version("router", sha, str(kept_path), {}, True)
    yield {
        "tmp": tmp,
        "graph": str(graph),
        "settings": settings,
        "cached": cache_path("router", examples, encoder.sha256, settings)[0],
        "cached_sha": cached.sha256,
        "kept": kept_path,
        "kept_sha": sha,
    }


def _check(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *extra: str, **env: str
) -> tuple[int, dict[str, str]]:
    """Run the command; its exit code and its lines by artifact."""
    settings: Settings = world["settings"]
    for name in ("SIGNING_KEY", "ENCODER_PATH", "ENCODER_SHA256", "GGUF_PATH", "GGUF_SHA256"):
        monkeypatch.delenv(f"AGENTFLOW_{name}", raising=False)
    monkeypatch.setenv("AGENTFLOW_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AGENTFLOW_DATABASE_URL", settings.resolved_database_url)
    for name, value in env.items():
        monkeypatch.setenv(f"AGENTFLOW_{name}", value)
    args = ["models", "check", "--graph", world["graph"], *(extra or ["--no-decode"])]
    result = CliRunner().invoke(app, args)
    lines = {}
    for line in result.stdout.splitlines():
        status, rest = line.split(maxsplit=1)
        what = rest.split("  ")[0].strip()
        lines[what] = line
        assert status in {"ok", "absent", "problem"}, line
    return result.exit_code, lines


def _attack(path: Path) -> None:
    raw = json.loads(path.read_text())
    signature = raw.pop("signature")
    raw.pop("sha256")
    raw["intercept"][0] += 8.0
    path.write_text(json.dumps({**raw, "sha256": content_digest(raw), "signature": signature}))


@pytest.fixture
def restore(world: dict[str, Any]) -> Iterator[None]:
    """Put the heads back whatever a test did to them."""
    saved = {p: p.read_bytes() for p in (world["cached"], world["kept"])}
    yield
    for path, content in saved.items():
        path.write_bytes(content)


def test_a_clean_setup_passes_with_one_line_per_artifact(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, lines = _check(world, monkeypatch, "--decode")
    assert code == 0, lines
    settings: Settings = world["settings"]
    key = signing_key(settings)
    assert lines["signing key"].startswith("ok") and f"key id {key.key_id}" in lines["signing key"]
    assert str(settings.data_dir.resolve() / "signing" / "key") in lines["signing key"]
    assert f"sha256={EMBEDDED_ENCODER.sha256}" in lines["encoder"]
    assert f"sha256={EMBEDDED_GGUF.sha256}" in lines["gguf"]
    kept, cached = lines["head router (kept)"], lines["head router (cached)"]
    assert kept.startswith("ok") and str(world["kept"]) in kept and world["kept_sha"] in kept
    assert cached.startswith("ok") and str(world["cached"]) in cached
    assert world["cached_sha"] in cached
    # Roles whose heads were never built are made on first use: noted, not a problem.
    assert lines["head loop_evaluator (cached)"].startswith("absent")
    assert lines["llama.cpp decode"].startswith("ok")
    result = CliRunner().invoke(app, ["models", "check", "--graph", world["graph"], "--no-decode", "--json"])  # fmt: skip
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"] is True
    assert {a["artifact"] for a in report["artifacts"]} >= {"encoder", "gguf", "head router (kept)"}


@pytest.mark.usefixtures("restore")
@pytest.mark.parametrize("which", ["cached", "kept"])
def test_an_edited_head_fails_the_check(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    _attack(world[which])
    code, lines = _check(world, monkeypatch)
    assert code == 1
    line = lines[f"head router ({which})"]
    assert line.startswith("problem") and str(world[which]) in line
    assert "changed after it was signed" in line and "fix:" in line
    other = lines[f"head router ({'kept' if which == 'cached' else 'cached'})"]
    assert other.startswith("ok")


def test_heads_signed_with_another_key_fail_the_check(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, lines = _check(world, monkeypatch, SIGNING_KEY="cd" * 32)
    assert code == 1
    assert "AGENTFLOW_SIGNING_KEY" in lines["signing key"] and lines["signing key"].startswith("ok")
    for which in ("kept", "cached"):
        assert "signed with another key" in lines[f"head router ({which})"]


def test_a_wrong_gguf_fails_the_check(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, gguf_model_file: ModelFile
) -> None:
    path = str(gguf_model_file.path)
    code, lines = _check(world, monkeypatch, "--decode", GGUF_PATH=path, GGUF_SHA256="0" * 64)
    assert code == 1 and lines["gguf"].startswith("problem") and path in lines["gguf"]
    assert "llama.cpp decode" not in lines  # nothing unverified is loaded


def test_a_tampered_tokenizer_fails_the_check_and_its_heads_are_refused(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "minilm"
    shutil.copytree(encoder_file(Settings()).path, folder)
    trusted = folder_digest(folder)
    assert trusted == EMBEDDED_ENCODER.sha256  # a faithful copy: the heads are bound to it
    code, lines = _check(world, monkeypatch, ENCODER_PATH=str(folder), ENCODER_SHA256=trusted)
    assert code == 0, lines

    vocab = folder / "vocab.txt"  # swap two tokens: the same weights now read other words
    words = vocab.read_text().splitlines()
    a, b = words.index("money"), words.index("order")
    words[a], words[b] = words[b], words[a]
    vocab.write_text("\n".join(words) + "\n")
    changed = folder_digest(folder)
    assert changed != trusted
    code, lines = _check(world, monkeypatch, ENCODER_PATH=str(folder), ENCODER_SHA256=trusted)
    assert code == 1 and lines["encoder"].startswith("problem") and changed in lines["encoder"]

    # Someone pins the changed folder: it loads, but no head trained on the real one does.
    code, lines = _check(world, monkeypatch, ENCODER_PATH=str(folder), ENCODER_SHA256=changed)
    assert code == 1 and lines["encoder"].startswith("ok")
    kept = lines["head router (kept)"]
    assert kept.startswith("problem") and f"trained on encoder {trusted[:16]}" in kept
    swapped = Settings(
        data_dir=world["settings"].data_dir,
        database_url=world["settings"].database_url,
        encoder_path=folder,
        encoder_sha256=changed,
    )
    tampered = load_encoder(swapped)
    assert tampered.sha256 == changed
    with pytest.raises(ArtifactError, match="encoder"):
        active_head("router", swapped, tampered)


def test_models_hash_prints_what_the_encoder_setting_must_be(gguf_model_file: ModelFile) -> None:
    folder = encoder_file(Settings()).path
    result = CliRunner().invoke(app, ["models", "hash", str(folder)])
    assert result.exit_code == 0 and result.stdout.strip() == EMBEDDED_ENCODER.sha256
    result = CliRunner().invoke(app, ["models", "hash", str(gguf_model_file.path)])
    assert result.stdout.strip() == sha256_file(gguf_model_file.path) == EMBEDDED_GGUF.sha256
