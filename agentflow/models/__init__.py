"""The small-model runtime: registry (sha256-verified files), encoder heads, GGUF and
remote generative SLMs, calibration, and the LLM factory."""
