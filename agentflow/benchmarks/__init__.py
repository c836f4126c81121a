"""Benchmarks behind `agentflow bench` (measured, never asserted in tests)."""
