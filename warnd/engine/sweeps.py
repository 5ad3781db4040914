"""Periodic work on apscheduler: the sweeps and feed polls as interval jobs, schedules as cron jobs.

The scheduler only says *when* to look. Every deadline lives in the database and each job
reads what is due, so jobs are kept in apscheduler's memory store only: any node may run
any job, and a node that dies loses nothing a job would not find again on the next node.

- One instance of a job at a time (``max_instances=1``); runs that fell due meanwhile are
  folded into one (``coalesce=True``), so a slow run delays the next instead of piling up.
  apscheduler warns of every run it skips that way (every 0.5 s for the escalate sweep
  behind a slow run); that warning is dropped here. A long run is not a fault: under load
  the escalate sweep drains rungs as they fall due for tens of seconds in one run. A run
  lasting over ``LONG_RUN`` intervals is logged once at DEBUG, when it ends, with how many
  runs it held back.
- Interval jobs run however late (``misfire_grace_time=None``): a sweep reads what is due,
  so a late run is never wrong and dropping it only adds an interval of lag; coalescing
  already keeps a stalled loop from unleashing a burst. Cron jobs (drills, summaries) keep
  a grace of ``CRON_GRACE`` seconds, the hour within which warnd/engine/schedules.py still
  counts a run as its scheduled firing; later it is skipped (apscheduler's "was missed by"
  warning stays on).
- A failing run is logged with the job's name; the next comes as usual.
- ``stop()`` takes no new runs, waits for the runs under way (none is cut off halfway
  through its transaction), then shuts the scheduler down.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("warnd.sweeps")

Job = Callable[[], Awaitable[object]]
DEFAULT_ZONE = "Asia/Shanghai"  # config.display_timezone's default; no import, so config may use cron_trigger
CRON_GRACE = 3600  # seconds a cron run may start late: schedules.LOOKBACK (a whole number for apscheduler)
LONG_RUN = 10  # a run lasting this many of its intervals is logged (DEBUG)


class _DropSkippedRuns(logging.Filter):
    """apscheduler's 'Execution of job … skipped: maximum number of running instances reached':
    expected whenever a run outlasts its interval, so not a warning (see Sweeps._run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and "maximum number of running instances" in record.msg)


_DROP_SKIPPED = _DropSkippedRuns()


def _quiet_apscheduler() -> None:
    """apscheduler logs every add, run and success at INFO: keep it to WARNING unless the
    operator's logging configuration already chose a level for it."""
    quiet = logging.getLogger("apscheduler")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if _DROP_SKIPPED not in scheduler_log.filters:
        scheduler_log.addFilter(_DROP_SKIPPED)


def cron_trigger(expression: str, zone: tzinfo | str = DEFAULT_ZONE) -> CronTrigger:
    """A 5-field crontab expression ("minute hour day month day-of-week") in `zone`;
    ValueError naming the expression if it is not one (for config validation too)."""
    if not isinstance(expression, str):
        raise ValueError(f"cron expression must be a string, not {expression!r}")
    try:
        return CronTrigger.from_crontab(expression, timezone=zone)
    except ValueError as exc:
        raise ValueError(f"bad cron expression {expression!r} (minute hour day month day-of-week): {exc}") from None


class Sweeps:
    def __init__(self, timezone: tzinfo | str = DEFAULT_ZONE) -> None:
        self.zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self._scheduler: AsyncIOScheduler | None = None  # made on the first job, in the running loop
        self._running: set[asyncio.Task] = set()
        self._stopping = False

    def every(self, seconds: float, job: Job, name: str | None = None) -> None:
        """Run `job` every `seconds`, the first time one interval from now."""
        if not seconds > 0:
            raise ValueError(f"interval must be positive, not {seconds!r}")
        name = name or getattr(job, "__name__", "sweep")
        trigger = IntervalTrigger(seconds=seconds, timezone=self.zone)
        self._add(trigger, job, name, grace=None, interval=seconds)

    def cron(self, expression: str, job: Job, name: str) -> None:
        """Run `job` at the times a 5-field crontab expression names, in the display time zone."""
        try:
            trigger = cron_trigger(expression, self.zone)
        except ValueError as exc:
            raise ValueError(f"schedule {name!r}: {exc}") from None
        self._add(trigger, job, name, grace=CRON_GRACE, interval=None)

    def next_run_time(self, name: str) -> datetime | None:
        """When the job of that name runs next (None: no such job, or stopped)."""
        job = self._scheduler.get_job(name) if self._scheduler else None
        return job.next_run_time if job else None

    def _add(self, trigger: BaseTrigger, job: Job, name: str, *, grace: int | None, interval: float | None) -> None:
        scheduler = self._started()
        if scheduler.get_job(name):
            raise ValueError(f"a job named {name!r} is already scheduled")
        scheduler.add_job(self._run, trigger, args=(job, name, interval), id=name, name=name,
                          max_instances=1, coalesce=True, misfire_grace_time=grace)

    def _started(self) -> AsyncIOScheduler:
        if self._scheduler is None:
            _quiet_apscheduler()
            self._scheduler = AsyncIOScheduler(timezone=self.zone)  # memory job store only
            self._scheduler.start()  # on the running loop
            self._stopping = False
        return self._scheduler

    async def _run(self, job: Job, name: str, interval: float | None) -> None:
        if self._stopping:  # submitted just before stop(): not started, so not run
            return
        task = asyncio.current_task()
        self._running.add(task)
        started = time.monotonic()
        try:
            await job()
        except Exception:  # noqa: BLE001 - the next run may well succeed (database back, say)
            log.exception("sweep failed", extra={"sweep": name})
        finally:
            self._running.discard(task)
        took = time.monotonic() - started
        if interval and took > LONG_RUN * interval:
            log.debug("sweep ran long", extra={"sweep": name, "seconds": round(took, 3),
                                                 "runs_held_back": int(took // interval)})

    async def stop(self) -> None:
        """Take no new runs, wait for those under way, shut the scheduler down. Idempotent."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        self._stopping = True
        scheduler.pause()
        me = asyncio.current_task()
        while True:
            await asyncio.sleep(0)  # a run submitted just before the pause starts, sees _stopping, returns
            under_way = self._running - {me}
            if not under_way:
                break
            await asyncio.wait(under_way)
        scheduler.shutdown(wait=False)  # nothing is running: its executor has nothing to cancel
        await asyncio.sleep(0)  # apscheduler shuts down in a loop callback
