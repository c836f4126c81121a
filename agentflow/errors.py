"""The one exception tree of agentflow.

Every error says what went wrong *and* what to do about it (``hint``), so a message
printed by the CLI or returned by the server is actionable on its own::

    AgentflowError
    ├── ConfigurationError          a setting is missing or contradicts another
    ├── ModelError
    │   ├── ModelNotFoundError      a model file or package is not installed
    │   ├── ModelIntegrityError     a model file's sha256 is not the expected one
    │   ├── NativeLibraryError      llama.cpp's native library crashes or fails on this CPU
    │   └── ModelOutputError        a model answered something that fails validation
    ├── ArtifactError               a trained head is corrupt, tampered or for another encoder
    │   └── SignatureError          a head's signature is missing or not this deployment's
    ├── DataError                   an example/workload file cannot be read
    │   └── MissingFields           a request lacks a field its flow needs (agentflow.nodes.planner)
    ├── ToolError
    │   ├── ToolRegistrationError   a tool declaration is unsafe or inconsistent
    │   └── ToolExecutionError      a tool raised; carries whether a retry is allowed
    ├── IdempotencyError
    │   ├── StoreUnavailableError   the idempotency store cannot be reached (fail closed)
    │   ├── KeyInFlightError        another worker holds the key's lease (409-like)
    │   ├── KeyMismatchError        same key, other arguments (422-like)
    │   └── OutcomeUnknownError     a lease expired without a result: a human must decide
    ├── ApprovalError
    │   ├── UnknownApprovalError    no pending approval with that id / thread
    │   └── DigestMismatchError     the digest approved is not the pending action's
    ├── LedgerError                 the ledger database cannot be read or written
    └── UnfinishedRunError          a thread's last run stopped mid-graph: retry it first
"""

from __future__ import annotations

__all__ = [
    "AgentflowError",
    "ApprovalError",
    "ArtifactError",
    "ConfigurationError",
    "DataError",
    "DigestMismatchError",
    "IdempotencyError",
    "KeyInFlightError",
    "KeyMismatchError",
    "LedgerError",
    "ModelError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelOutputError",
    "NativeLibraryError",
    "OutcomeUnknownError",
    "SignatureError",
    "StoreUnavailableError",
    "ToolError",
    "ToolExecutionError",
    "ToolRegistrationError",
    "UnfinishedRunError",
    "UnknownApprovalError",
]


class AgentflowError(Exception):
    """Root of every error agentflow raises on purpose.

    ``hint`` tells the reader what to do next; it is appended to ``str(error)``.
    """

    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.hint})" if self.hint else self.message


class ConfigurationError(AgentflowError):
    """A setting is missing, malformed, or contradicts another."""

    default_hint = "check the AGENTFLOW_* environment variables (see README 'Configuration')"


class ModelError(AgentflowError):
    """Base for problems with a small or large model."""


class ModelNotFoundError(ModelError):
    """A model file or the package that ships it is not installed."""


class ModelIntegrityError(ModelError):
    """A model file exists but its sha256 is not the expected one (tampered or truncated)."""


class NativeLibraryError(ModelError):
    """llama.cpp's native library is missing, crashes or hangs when it loads or decodes."""

    default_hint = "rebuild llama-cpp-python portable: `rm -rf .venv && make install`"


class ModelOutputError(ModelError):
    """A model answered, but its output failed validation; callers escalate on it."""

    default_hint = "the decision escalates to the LLM; retrain or calibrate the small model"


class ArtifactError(AgentflowError):
    """A trained head artifact is unreadable, tampered, or was trained on another encoder."""

    default_hint = "retrain the head with `agentflow train` or point to the right artifact"


class SignatureError(ArtifactError):
    """A head artifact is unsigned, or its signature does not verify with the deployment's
    signing key: it was modified after it was signed, or signed by another key."""

    default_hint = (
        "retrain it with `agentflow train`, or delete the file if it is a cached head (it is "
        "rebuilt from its examples); if AGENTFLOW_SIGNING_KEY was rotated, every head signed "
        "with the old key must be rebuilt"
    )


class DataError(AgentflowError):
    """An examples, workload or tool-definition file cannot be read as documented."""


class ToolError(AgentflowError):
    """Base for tool declaration and execution problems."""


class ToolRegistrationError(ToolError):
    """A tool was declared in a way that cannot be executed safely."""


class ToolExecutionError(ToolError):
    """A tool raised while running. ``retryable`` says whether running it again is allowed."""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class IdempotencyError(AgentflowError):
    """Base for idempotency-store answers that stop a call from running."""


class StoreUnavailableError(IdempotencyError):
    """The idempotency store cannot be reached; only ``safe`` tools may run."""

    default_hint = (
        "start Redis/Valkey or fix AGENTFLOW_REDIS_URL / REDIS_URL, then resume the thread "
        "(`agentflow resume THREAD`); nothing with a side effect ran"
    )


class KeyInFlightError(IdempotencyError):
    """Another execution holds this key's lease right now (HTTP 409 in the IETF draft)."""

    default_hint = "wait for the other execution to finish, then retry with the same key"

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s
        """Time left on the other holder's lease, when the store said."""


class KeyMismatchError(IdempotencyError):
    """The key was used before with different arguments (HTTP 422 in the IETF draft)."""

    default_hint = "a derived key must map to one set of arguments; this is a bug in the caller"


class OutcomeUnknownError(IdempotencyError):
    """A lease expired without a recorded result: the effect may or may not have happened."""

    default_hint = "check the downstream system, then approve a re-run or mark it done by hand"


class ApprovalError(AgentflowError):
    """Base for refused approval answers; the pending action is left untouched."""


class UnknownApprovalError(ApprovalError):
    """There is no pending approval with that id on that thread."""

    default_hint = "list pending approvals with `agentflow approvals`"


class DigestMismatchError(ApprovalError):
    """The digest in the answer is not the digest of the pending action."""

    default_hint = "re-read the pending action (`agentflow approvals`) and approve its digest"


class LedgerError(AgentflowError):
    """The ledger database cannot be opened, migrated, read or written."""

    default_hint = "run `agentflow setup` and check AGENTFLOW_DATABASE_URL"


class UnfinishedRunError(AgentflowError):
    """A new message was sent to a thread whose last run stopped mid-graph (a crash, the
    store down): a new turn would plan afresh, under new keys, beside a step that may have
    had its effect."""

    default_hint = (
        "finish the thread first: `agentflow resume THREAD` with no answer (or "
        "AgentRuntime.retry), then send the new message"
    )
