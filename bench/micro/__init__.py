"""Micro-benchmarks and cost checks on the tiny model: ingest, offline stage, online loop, scorer, per-sample
delta cost, and the selection regime (cost and pipeline checks, never quality evidence)."""
