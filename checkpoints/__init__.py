"""Durable state: LangGraph checkpoint savers and the SQL ledger, from one database URL.

``AGENTFLOW_DATABASE_URL`` (default: a SQLite file under ``.agentflow/``) names the
database; ``agentflow setup`` creates everything explicitly::

    from agentflow.checkpoints import Ledger, open_saver, setup_savers

    setup_savers(url)          # checkpoint tables, idempotent
    Ledger(url).setup()        # ledger tables via Alembic migrations, idempotent

    with open_saver(url) as saver:        # SqliteSaver / PostgresSaver
        graph = builder.compile(checkpointer=saver)

    ledger = Ledger(url)                  # an agentflow.recording.Recorder
    ledger.decisions(role="router", since=...)

This package stands on ``agentflow`` core only (errors, settings, decision, recording).
"""

from agentflow.checkpoints.ledger import Ledger
from agentflow.checkpoints.savers import (
    DatabaseUrl,
    open_async_saver,
    open_saver,
    parse_database_url,
    setup_savers,
)
from agentflow.checkpoints.schema import (
    ApprovalRow,
    DecisionRow,
    HeadVersionRow,
    LabeledInput,
    LabelRow,
    LabelSource,
    LlmCallRow,
    ToolCallRow,
)

__all__ = [
    "ApprovalRow",
    "DatabaseUrl",
    "DecisionRow",
    "HeadVersionRow",
    "LabelRow",
    "LabelSource",
    "LabeledInput",
    "Ledger",
    "LlmCallRow",
    "ToolCallRow",
    "open_async_saver",
    "open_saver",
    "parse_database_url",
    "setup_savers",
]
