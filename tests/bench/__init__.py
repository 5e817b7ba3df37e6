"""Benchmarks: real processes on loopback, measured, never asserted on.

``python -m tests.bench.sidecar_latency`` measures the sidecar's added latency against direct calls
and against the LiteLLM proxy (docs/benchmarks.md). Nothing here runs under pytest: wall-clock
figures belong in a report, not in a pass/fail test.
"""
