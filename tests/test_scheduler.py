"""Sweeps on apscheduler (warnd/engine/sweeps.py): real asyncio, short intervals, and every
wait a bounded wait for a condition. The few "nothing more happens" checks wait a fixed
handful of intervals, which is the only way to see an absence."""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from warnd.engine import sweeps as sweeps_module
from warnd.engine.sweeps import Sweeps, cron_trigger

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def until(predicate, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s")
        await asyncio.sleep(0.005)


@pytest.fixture
async def sweeps():
    s = Sweeps()
    yield s
    await s.stop()


class Counter:
    """A job that counts its runs and how many of it ran at once."""

    def __init__(self, hold: float = 0.0, fail_first: int = 0) -> None:
        self.hold, self.fail_first = hold, fail_first
        self.started = self.finished = self.active = self.most_at_once = 0

    async def __call__(self) -> None:
        self.started += 1
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        try:
            if self.started <= self.fail_first:
                raise RuntimeError("database away")
            await asyncio.sleep(self.hold)
            self.finished += 1
        finally:
            self.active -= 1


async def test_interval_job_runs_repeatedly_first_after_one_interval(sweeps: Sweeps) -> None:
    job = Counter()
    before = datetime.now(timezone.utc)
    sweeps.every(0.4, job, name="slowish")
    first = sweeps.next_run_time("slowish")
    assert job.started == 0
    assert timedelta(seconds=0.3) <= first - before <= timedelta(seconds=0.5)  # not at once: like the old loop
    fast = Counter()
    sweeps.every(0.02, fast, name="fast")
    await until(lambda: fast.finished >= 5)


async def test_name_defaults_to_the_function_and_must_be_unique(sweeps: Sweeps) -> None:
    async def heartbeat() -> None:
        pass
    sweeps.every(1.0, heartbeat)
    assert sweeps.next_run_time("heartbeat") is not None
    with pytest.raises(ValueError, match="'heartbeat' is already scheduled"):
        sweeps.every(2.0, heartbeat)
    with pytest.raises(ValueError, match="positive"):
        sweeps.every(0, heartbeat, name="never")


async def test_slow_job_never_overlaps_itself_and_skips_are_not_warned(sweeps: Sweeps, caplog) -> None:
    caplog.set_level(logging.INFO)
    job = Counter(hold=0.1)  # five intervals per run
    sweeps.every(0.02, job, name="slow")
    await until(lambda: job.finished >= 3)
    assert job.most_at_once == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "a held-back run is no warning"


async def test_a_run_much_longer_than_its_interval_is_logged_once_at_debug(sweeps: Sweeps, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="warnd.sweeps")
    job = Counter(hold=0.3)  # 30 intervals
    sweeps.every(0.01, job, name="stuck")
    await until(lambda: job.finished >= 2)
    await sweeps.stop()
    long = [r for r in caplog.records if r.getMessage() == "sweep ran long"]
    assert len(long) == job.finished  # one per run, not one per held-back run
    assert long[0].sweep == "stuck" and long[0].runs_held_back >= sweeps_module.LONG_RUN
    assert all(r.levelno == logging.DEBUG for r in long)


async def test_failing_job_is_logged_with_its_name_and_runs_again(sweeps: Sweeps, caplog) -> None:
    job = Counter(fail_first=2)
    sweeps.every(0.02, job, name="flaky")
    await until(lambda: job.finished >= 2)
    failed = [r for r in caplog.records if r.getMessage() == "sweep failed"]
    assert len(failed) == 2
    assert all(r.sweep == "flaky" and r.levelno == logging.ERROR and r.exc_info for r in failed)
    assert not [r for r in caplog.records if r.name.startswith("apscheduler")], "logged once, by warnd"


async def test_stop_waits_for_the_running_job_and_nothing_runs_after() -> None:
    sweeps = Sweeps()
    inside, release = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    async def transaction() -> None:
        runs.append("begin")
        inside.set()
        await release.wait()
        runs.append("commit")

    other = Counter()
    sweeps.every(0.02, transaction, name="transaction")
    sweeps.every(0.02, other, name="other")
    await asyncio.wait_for(inside.wait(), 5)
    stopping = asyncio.create_task(sweeps.stop())
    await asyncio.sleep(0.1)  # five intervals: stop() must still be waiting
    assert not stopping.done()
    assert runs == ["begin"]
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert runs == ["begin", "commit"]  # finished, not cut off
    counted = other.started
    await asyncio.sleep(0.1)  # five more intervals
    assert (runs, other.started) == (["begin", "commit"], counted)
    assert sweeps.next_run_time("transaction") is None
    await sweeps.stop()  # twice is fine


async def test_stop_before_any_job_and_start_again() -> None:
    sweeps = Sweeps()
    await sweeps.stop()
    job = Counter()
    sweeps.every(0.02, job, name="again")
    await until(lambda: job.finished >= 1)
    await sweeps.stop()
    sweeps.every(0.02, job, name="again")  # a new scheduler after a stop
    await until(lambda: job.finished >= 2)
    await sweeps.stop()


def _next_at(now: datetime, hour: int, minute: int) -> datetime:
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


async def test_cron_job_fires_in_the_display_zone(sweeps: Sweeps) -> None:
    async def summary() -> None:
        pass
    sweeps.cron("30 9 * * *", summary, "daily_summary")
    at = sweeps.next_run_time("daily_summary")
    assert at.utcoffset() == timedelta(hours=8)
    assert at == _next_at(datetime.now(SHANGHAI), 9, 30)
    utc = Sweeps(timezone="UTC")
    try:
        utc.cron("30 9 * * *", summary, "daily_summary")
        assert utc.next_run_time("daily_summary") == _next_at(datetime.now(timezone.utc), 9, 30)
    finally:
        await utc.stop()


async def test_cron_first_of_month_drill(sweeps: Sweeps) -> None:
    async def drill() -> None:
        pass
    sweeps.cron("0 10 1 * *", drill, "monthly_drill")
    at = sweeps.next_run_time("monthly_drill").astimezone(SHANGHAI)
    assert (at.day, at.hour, at.minute) == (1, 10, 0)
    assert at - datetime.now(SHANGHAI) <= timedelta(days=31)


@pytest.mark.parametrize("expression", ["61 * * * *", "* * * *", "0 9 * * funday", "every day", ""])
async def test_bad_cron_expression_is_refused(sweeps: Sweeps, expression: str) -> None:
    async def drill() -> None:
        pass
    with pytest.raises(ValueError, match=re.escape(f"schedule 'drill': bad cron expression {expression!r}")):
        sweeps.cron(expression, drill, "drill")
    assert sweeps.next_run_time("drill") is None
    with pytest.raises(ValueError, match="bad cron expression"):
        cron_trigger(expression)


async def test_no_apscheduler_info_at_info_level(caplog) -> None:
    caplog.set_level(logging.INFO)
    sweeps = Sweeps()
    ok, failing, slow = Counter(), Counter(fail_first=1), Counter(hold=0.06)
    sweeps.every(0.02, ok, name="ok")
    sweeps.every(0.02, failing, name="failing")
    sweeps.every(0.02, slow, name="slow")

    async def drill() -> None:
        pass
    sweeps.cron("0 10 1 * *", drill, "drill")
    await until(lambda: ok.finished >= 3 and failing.finished >= 1 and slow.finished >= 2)
    await sweeps.stop()
    assert logging.getLogger("apscheduler.scheduler").getEffectiveLevel() == logging.WARNING
    assert [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")] == []
