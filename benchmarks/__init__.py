"""Benchmark scripts that print JSON; run from the repository as `python -m benchmarks.<name>`."""
