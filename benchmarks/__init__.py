"""Benchmarks of the attention backends: time, peak memory, and the machine's floor.

Run from the repository root: ``pytest benchmarks/ --benchmark-only``,
``python -m benchmarks.scaling``, ``python -m benchmarks.memory``,
``python -m benchmarks.floor``. See benchmarks/README.md.
"""
