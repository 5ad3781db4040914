"""The benchmarks' smoke mode (bench.run_all --smoke, which .ci/run runs): every benchmark
declares small parameters, and a smoke run judges correctness, never performance targets.

No benchmark is run here (CI runs them after the tests); this checks the judging itself.
"""
from __future__ import annotations

import inspect
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not installed: it lives beside warnd in the checkout
    sys.path.append(str(ROOT))  # last, so that nothing installed is shadowed

from bench import run_all  # noqa: E402
from bench.common import BenchError, Result, print_table  # noqa: E402

BENCHMARKS = run_all.benchmarks()


def test_every_benchmark_is_found():
    assert {m.NAME for m in BENCHMARKS} >= {"webhook_fanout", "sms_fanout", "speaker_fanout",
                                            "confirmation_ingest", "escalation_lag"}


@pytest.mark.parametrize("module", BENCHMARKS, ids=lambda m: m.NAME)
def test_every_benchmark_declares_smaller_smoke_parameters_it_accepts(module):
    params = inspect.signature(module.run_benchmark).parameters
    assert isinstance(module.SMOKE, dict) and module.SMOKE
    assert set(module.SMOKE) <= set(params) - {"db"}
    sizes = {k: v for k, v in module.SMOKE.items() if isinstance(params[k].default, int)}
    assert sizes, "a smoke run names at least one size"
    assert all(0 < v <= params[k].default for k, v in sizes.items()), sizes
    assert any(v < params[k].default for k, v in sizes.items()), "smaller than the full run"


def judged(smoke: bool) -> Result:
    result = Result("b", smoke=smoke)
    result.add("ratio", 0.1, "", "target ≥ 0.5")
    result.target("ratio", False)
    return result


def test_a_missed_target_fails_a_full_run_but_not_a_smoke_run():
    full, smoke = judged(False), judged(True)
    assert full.ok and full.missed == ["ratio"] and not full.passed
    assert smoke.ok and smoke.missed == ["ratio"] and smoke.passed


@pytest.mark.parametrize("smoke", [False, True])
def test_lost_messages_errors_and_missing_comparisons_fail_every_run(smoke):
    lost = Result("b", smoke=smoke, ok=False)
    error = Result("b", smoke=smoke, error="BenchError: sink never answered")
    uncomputed = Result("b", smoke=smoke)
    uncomputed.compare("ratio warnd / baseline", None)
    untargeted = Result("b", smoke=smoke)
    untargeted.add("p99", None, "s")
    untargeted.target("p99", None)
    for result in (lost, error, uncomputed, untargeted):
        assert not result.passed
    assert not uncomputed.ok and not untargeted.ok and not untargeted.missed


def test_judging_a_figure_that_was_never_added_is_an_error():
    with pytest.raises(BenchError):
        Result("b").target("ratio", True)


def test_the_smoke_table_marks_targets_and_comparisons_as_not_judged():
    result = judged(True)
    result.compare("ratio bare / warnd", 2.0)
    out = io.StringIO()
    print_table([result], file=out)
    text = out.getvalue()
    assert text.startswith("smoke run:")
    assert "[smoke: not judged] target ≥ 0.5" in text and "[smoke]" in text
    verdict = next(line for line in text.splitlines() if "verdict" in line)
    assert " ok " in verdict and "FAILED" not in verdict

    full = io.StringIO()
    print_table([judged(False)], file=full)
    assert "[smoke" not in full.getvalue() and "target missed: ratio" in full.getvalue()


def test_a_benchmark_without_smoke_parameters_fails_the_smoke_run():
    module = SimpleNamespace(NAME="new_one", run=lambda db=None: Result("new_one"))
    result = run_all.run_one(module, None, smoke=True)
    assert result.error and "SMOKE" in result.error and not result.passed


def test_the_smoke_run_passes_each_module_its_own_parameters():
    seen = {}

    def run_benchmark(db=None, count=10_000, spread=60.0):
        seen.update(db=db, count=count, spread=spread)
        return Result("small")

    module = SimpleNamespace(NAME="small", SMOKE={"count": 20, "spread": 2.0}, run=None, run_benchmark=run_benchmark)
    run_all.run_one(module, "sqlite://", smoke=True)
    assert seen == {"db": "sqlite://", "count": 20, "spread": 2.0}
