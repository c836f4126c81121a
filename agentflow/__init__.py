"""agentflow: SLM-first agentic workflows on LangGraph."""
