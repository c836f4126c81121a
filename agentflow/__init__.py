"""agentflow: SLM-first agentic workflows on LangGraph.

The light core (settings, errors, decisions, consequence classes, recording) is imported
eagerly. Graph state (it pulls in LangGraph) and the top floor (the ``agent`` builder, the runtime, tools and node types) is
exported lazily, because ``nodes/``, ``tools/`` and ``checkpoints/`` themselves import the
core, and importing them here eagerly would make every such import circular.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from agentflow.consequence import ConsequenceClass, ToolAnnotations, apply_floor
from agentflow.decision import Decision, EscalationPolicy, ModelRef, Resolution, resolve
from agentflow.errors import (
    AgentflowError,
    ApprovalError,
    ArtifactError,
    ConfigurationError,
    DataError,
    DigestMismatchError,
    IdempotencyError,
    KeyInFlightError,
    KeyMismatchError,
    LedgerError,
    ModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelOutputError,
    NativeLibraryError,
    OutcomeUnknownError,
    SignatureError,
    StoreUnavailableError,
    ToolError,
    ToolExecutionError,
    ToolRegistrationError,
    UnknownApprovalError,
)
from agentflow.extraction import FieldCalibration, probability_bin
from agentflow.recording import Recorder, RunContext
from agentflow.settings import Settings, get_settings

if TYPE_CHECKING:
    from agentflow.builder import AgentParts, agent
    from agentflow.nodes.approval import ApprovalAnswer, ApprovalRequest
    from agentflow.nodes.loop_evaluator import LoopGuards
    from agentflow.nodes.planner import Flow, MissingFields
    from agentflow.nodes.router import Route
    from agentflow.runtime import AgentRuntime, RunResult
    from agentflow.state import AgentState, Plan, PlanStep
    from agentflow.tools.contract import ToolContext, ToolRegistry, ToolSpec, tool
    from agentflow.tools.executor import GuardedExecutor

_LAZY = {
    "AgentState": "agentflow.state",
    "Plan": "agentflow.state",
    "PlanStep": "agentflow.state",
    "agent": "agentflow.builder",
    "AgentParts": "agentflow.builder",
    "AgentRuntime": "agentflow.runtime",
    "RunResult": "agentflow.runtime",
    "ApprovalAnswer": "agentflow.nodes.approval",
    "ApprovalRequest": "agentflow.nodes.approval",
    "LoopGuards": "agentflow.nodes.loop_evaluator",
    "Flow": "agentflow.nodes.planner",
    "MissingFields": "agentflow.nodes.planner",
    "Route": "agentflow.nodes.router",
    "ToolContext": "agentflow.tools.contract",
    "ToolRegistry": "agentflow.tools.contract",
    "ToolSpec": "agentflow.tools.contract",
    "tool": "agentflow.tools.contract",
    "GuardedExecutor": "agentflow.tools.executor",
}

__all__ = [
    "AgentParts",
    "AgentRuntime",
    "AgentState",
    "AgentflowError",
    "ApprovalAnswer",
    "ApprovalError",
    "ApprovalRequest",
    "ArtifactError",
    "ConfigurationError",
    "ConsequenceClass",
    "DataError",
    "Decision",
    "DigestMismatchError",
    "EscalationPolicy",
    "FieldCalibration",
    "Flow",
    "GuardedExecutor",
    "IdempotencyError",
    "KeyInFlightError",
    "KeyMismatchError",
    "LedgerError",
    "LoopGuards",
    "MissingFields",
    "ModelError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelOutputError",
    "ModelRef",
    "NativeLibraryError",
    "OutcomeUnknownError",
    "Plan",
    "PlanStep",
    "Recorder",
    "Resolution",
    "Route",
    "RunContext",
    "RunResult",
    "Settings",
    "SignatureError",
    "StoreUnavailableError",
    "ToolAnnotations",
    "ToolContext",
    "ToolError",
    "ToolExecutionError",
    "ToolRegistrationError",
    "ToolRegistry",
    "ToolSpec",
    "UnknownApprovalError",
    "agent",
    "apply_floor",
    "get_settings",
    "probability_bin",
    "resolve",
    "tool",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agentflow' has no attribute {name!r}")
