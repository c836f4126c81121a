"""Benchmarks behind ``agentflow bench``: each module has ``run(...) -> dict`` of measurements."""
