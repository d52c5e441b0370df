"""Benchmarks and profiling scripts (not part of the installed package)."""
