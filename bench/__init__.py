"""Benchmarks for warnd, each run against real processes on loopback.

Every benchmark module here exposes `NAME` and `run(db=None) -> Result`
(see bench/common.py); `python -m bench.run_all` runs them all.
"""
