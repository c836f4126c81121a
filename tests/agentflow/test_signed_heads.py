"""Signed heads in the runtime: a cached head nothing vouches for is rebuilt from its
examples (and the log says so); a head `agentflow train` kept is refused, never replaced.

Real MiniLM, real files, a real SQLite ledger; the attacker edits files the way anyone
with write access to the data folder could.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from agentflow.checkpoints.ledger import Ledger
from agentflow.errors import SignatureError
from agentflow.examples import Example, load_examples
from agentflow.heads import cache_path, head_for
from agentflow.models.artifact import content_digest, write_signed
from agentflow.models.encoder import Encoder
from agentflow.models.head import EncoderHead
from agentflow.retrain import active_head, head_in_use, train
from agentflow.settings import Settings
from agentflow.signing import signing_key

BANKING = Path(__file__).resolve().parents[1] / "data" / "banking77_five_intents.csv"
GRAPH = '''"""Routes only: the examples of the kept head's role."""
from agentflow.nodes.router import Route

ROUTES = {routes!r}


def routes():
    return [Route(name=n, description=n, examples=tuple(ts)) for n, ts in ROUTES.items()]
'''


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    """Twelve messages of each of five banking intents: a head trains in seconds."""
    rows: dict[str, list[Example]] = {}
    for ex in load_examples(BANKING):
        rows.setdefault(ex.label, []).append(ex)
    return [ex for label in sorted(rows) for ex in rows[label][:12]]


def _attack(path: Path, label_index: int) -> None:
    """Favour one label by editing its intercept, then recompute the sha256 the file
    carries, as the consequence head was once edited to call an undeclared tool safe."""
    raw = json.loads(path.read_text())
    signature = raw.pop("signature")
    raw.pop("sha256")
    raw["intercept"][label_index] += 8.0
    path.write_text(json.dumps({**raw, "sha256": content_digest(raw), "signature": signature}))


def test_a_cached_head_nothing_vouches_for_is_rebuilt_from_its_examples_and_logged(
    tmp_path: Path, encoder: Encoder, examples: list[Example], caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "af")
    genuine = head_for("router", examples, encoder, settings)
    path, trained_on = cache_path("router", examples, encoder.sha256, settings)
    assert path.is_file() and genuine.training_sha256 == trained_on
    key = signing_key(settings)
    other = signing_key(Settings(data_dir=tmp_path / "another-deployment"))
    unsigned = genuine._content()
    wrong_data = EncoderHead.train(examples[:-3], encoder, "router")

    def edited() -> None:
        _attack(path, genuine.labels.index("card_arrival"))

    attacks = {
        "changed after it was signed": edited,
        "signed with another key": lambda: write_signed(path, genuine._content(), other),
        "not signed": lambda: path.write_text(json.dumps({**unsigned, "sha256": "x"})),
        # Validly signed, but for other examples: not the head these examples make.
        "other training data": lambda: wrong_data.save(path, key=key),
    }
    probe = "my new card still hasn't come in the post"
    for why, attack in attacks.items():
        attack()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agentflow.heads"):
            rebuilt = head_for("router", examples, encoder, settings)
        assert any(why in r.getMessage() and "rebuilding the cached router head" in r.getMessage() for r in caplog.records), (why, caplog.text)  # fmt: skip
        # The rebuilt head is the examples' own, signed with this deployment's key.
        assert np.allclose(rebuilt.intercept, genuine.intercept)
        assert rebuilt.decide(probe, encoder).value == genuine.decide(probe, encoder).value
        assert EncoderHead.load(path, encoder, key=key).sha256 == rebuilt.sha256
    # A cache that verifies is read, not retrained, and logs nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agentflow.heads"):
        again = head_for("router", examples, encoder, settings)
    assert again.sha256 == rebuilt.sha256 and not caplog.records


def test_a_kept_head_that_does_not_verify_is_refused_not_replaced(
    tmp_path: Path, encoder: Encoder, examples: list[Example]
) -> None:
    settings = Settings(data_dir=tmp_path / "af", database_url=f"sqlite:///{tmp_path}/l.db")
    key = signing_key(settings)
    labels = sorted({ex.label for ex in examples})
    kept = EncoderHead.train(examples[::2], encoder, "router")
    path = tmp_path / "af" / "heads" / "router-1.json"
    with Ledger(settings.resolved_database_url) as ledger:
        ledger.setup()
        ledger.record_head_version("router", kept.save(path, key=key), str(path), {}, True)
    # As kept: verified, and the hash decisions record is the verified one.
    head = head_in_use("router", examples, labels, encoder, settings)
    assert head.sha256 == kept.sha256
    assert head.decide("top up failed", encoder).model.sha256 == kept.sha256  # type: ignore[union-attr]

    # The deployment key was rotated (here: given in the settings): the kept head's
    # signature is another key's, and nothing falls back to the examples' head.
    rotated = Settings(
        data_dir=settings.data_dir, database_url=settings.database_url, signing_key="ab" * 32
    )
    before = path.read_bytes()
    for attempt in (
        lambda: active_head("router", rotated, encoder),
        lambda: head_in_use("router", examples, labels, encoder, rotated),
    ):
        with pytest.raises(SignatureError, match="signed with another key") as err:
            attempt()
        text = str(err.value)
        assert str(path) in text and "`agentflow train --role router --graph GRAPH`" in text
        assert "AGENTFLOW_SIGNING_KEY was rotated" in text
    assert path.read_bytes() == before
    assert not cache_path("router", examples, encoder.sha256, settings)[0].exists()

    # The fix the error names works: `agentflow train` keeps a head signed with the new key.
    graph = tmp_path / "banking_graph.py"
    routes: dict[str, list[str]] = {}
    for ex in examples:
        routes.setdefault(ex.label, []).append(ex.text)
    graph.write_text(GRAPH.format(routes=routes))
    result = train("router", rotated, graph=str(graph), encoder=encoder)
    assert result.accepted and result.old_sha256 is None
    retrained = active_head("router", rotated, encoder)
    assert retrained is not None and retrained.sha256 == result.sha256

    # Edited by someone who also fixed the ledger's record: the signature still refuses it.
    _attack(path, 0)
    with Ledger(settings.resolved_database_url) as ledger:
        raw = json.loads(path.read_text())
        ledger.record_head_version("router", raw["sha256"], str(path), {}, True)
    with pytest.raises(SignatureError, match="changed after it was signed"):
        head_in_use("router", examples, labels, encoder, settings)
