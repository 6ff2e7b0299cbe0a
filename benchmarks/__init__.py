"""Benchmarks of balanced-batches against the I/O limit and the original per-region workflow.

Run ``python -m benchmarks.harness --help`` from the repository root; BENCHMARKS.md holds the
results and how to reproduce them.
"""
