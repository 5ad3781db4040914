"""Run every benchmark in bench/ and print one table.

    python -m bench.run_all [--db URL] [--only NAME ...] [--json FILE] [--smoke]

A benchmark is any module in this package that defines `NAME` and
`run(db=None) -> bench.common.Result`. Exit status 0 only if every benchmark
finished and met its checks.

--smoke runs every benchmark once with the small parameters its module declares
as `SMOKE` (passed to its `run_benchmark(db, **SMOKE)`), and judges correctness
only: everything delivered or confirmed, nothing lost, nothing duplicated, every
comparison with the baseline computed. Performance targets are printed, not
judged: small counts make rates and ratios meaningless. CI runs it (.ci/run).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from types import ModuleType

import bench
from bench.common import Result, print_table, write_json

NOT_BENCHMARKS = {"common", "run_all"}


def benchmarks() -> list[ModuleType]:
    found = []
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name in NOT_BENCHMARKS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if hasattr(module, "NAME") and callable(getattr(module, "run", None)):
            found.append(module)
    return found


def run_one(module: ModuleType, db: str | None, smoke: bool) -> Result:
    """The full run (`run(db)`), or the smoke run (`run_benchmark(db, **SMOKE)`)."""
    if not smoke:
        return module.run(db=db)
    params = getattr(module, "SMOKE", None)
    if not isinstance(params, dict) or not callable(getattr(module, "run_benchmark", None)):
        return Result(module.NAME, ok=False, error="no smoke run: the module needs `SMOKE = {...}` (small "
                      "parameters, next to its defaults) and `run_benchmark(db, **SMOKE)`")
    return module.run_benchmark(db, **params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="database URL passed to every benchmark (default: SQLite in a temp dir)")
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    parser.add_argument("--json", help="also write every benchmark's figures to this file")
    parser.add_argument("--smoke", action="store_true", help="each benchmark once with its small SMOKE "
                        "parameters; correctness only, performance targets not judged (what CI runs)")
    args = parser.parse_args(argv)
    modules = [m for m in benchmarks() if not args.only or m.NAME in args.only]
    if not modules:
        parser.error("no benchmark matched")
    results: list[Result] = []
    for module in modules:
        print(f"running {module.NAME}{' (smoke)' if args.smoke else ''} …", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = run_one(module, args.db, args.smoke)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            result = Result(module.NAME, ok=False, error=f"{type(exc).__name__}: {exc}")
        result.smoke = args.smoke
        result.add("benchmark wall time", time.monotonic() - started, "s", "setup included")
        results.append(result)
    print_table(results)
    if args.json:
        write_json(results, args.json)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
