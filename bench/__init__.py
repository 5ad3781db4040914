"""Benchmarks for warnd, each run against real processes on loopback.

Every benchmark module here exposes `NAME` and `run(db=None) -> Result`
(see bench/common.py); `python -m bench.run_all` runs them all. Each also
declares `SMOKE`, small parameters for its `run_benchmark`:
`python -m bench.run_all --smoke` (what CI runs) uses them and judges
correctness only.
"""
