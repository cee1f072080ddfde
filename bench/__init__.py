"""Benchmarks of ci-orchestrator against its peers; `python bench/run.py` runs them all."""
