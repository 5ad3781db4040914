"""Cron schedules: scheduled drills, the daily summary, the yearly roster refresh, retention.

The node registers each job with its scheduler as a cron job in the display time zone
(`jobs`). Any node may run any job, and two may run the same firing (a restart, a second
node): each job names its firing by the *scheduled* time (`fire_time`, the latest time the
cron expression matched, up to an hour back), never by when it happened to run, and writes
under that name once:
- a drill's CAP identifier is `warnd-drill-<name>-<UTC minute>`, so intake's (sender,
  identifier) de-duplication makes a second submission the same warning;
- the summary's and the roster's rows are unique per round (warnd/store/roster.py).
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from apscheduler.triggers.cron import CronTrigger

from warnd.config import DrillSchedule
from warnd.domain.authority import Scope
from warnd.domain.directory import Person
from warnd.domain.errors import error
from warnd.domain.model import Alert, Area, Info, MsgType, Status
from warnd.ingest.capxml import alert_to_xml
from warnd.render import render
from warnd.store.retention import Purged, purge
from warnd.store.roster import Asked, DayCounts, Notice, RosterStore
from warnd.store.schema import tokens
from warnd.store.tokens import scope_of_row
from warnd.store.warnings import Submitted

log = logging.getLogger("warnd.schedules")
LOOKBACK = timedelta(hours=1)  # a job run this late still belongs to its scheduled firing
CAP_XML = "application/cap+xml"

Job = Callable[[], Awaitable[object]]


def fire_time(cron: str, now: datetime, zone: timezone | object) -> datetime:
    """The firing a run at `now` belongs to: the latest match of `cron` within LOOKBACK, else
    (a run by hand) `now` to the minute. In UTC."""
    trigger = CronTrigger.from_crontab(cron, timezone=zone)
    last, t = None, trigger.get_next_fire_time(None, now - LOOKBACK)
    while t is not None and t <= now:
        last, t = t, trigger.get_next_fire_time(t, t + timedelta(seconds=1))
    return (last or now.replace(second=0, microsecond=0)).astimezone(timezone.utc)


def round_name(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def drill_alert(drill: DrillSchedule, sender: str, at: datetime) -> Alert:
    """The Exercise (演练) alert of one firing: the same bytes on every node for the same minute."""
    t = drill.template
    info = Info("zh-CN", (t.category,), t.event, t.urgency, t.severity, t.certainty,
                expires=at + timedelta(hours=t.expires_hours), sender_name=drill.department,
                headline=t.headline or None, description=t.description or None, instruction=t.instruction or None,
                parameters=(("warnd:level", t.level),),
                areas=(Area(f"演练区域 drill area: {' '.join(drill.regions)}",
                            geocodes=tuple(("GB2260", code) for code in drill.regions)),))
    return Alert(f"warnd-drill-{drill.name}-{at.astimezone(timezone.utc):%Y%m%dT%H%MZ}", sender, at, Status.EXERCISE,
                 MsgType.ALERT, "Public", note=f"scheduled drill {drill.name} (定期演练)", infos=(info,))


class Schedules:
    def __init__(self, node) -> None:  # noqa: ANN001 - the Node
        self.node = node
        self.roster_store = RosterStore(node.db, node.clock)

    @property
    def config(self):  # noqa: ANN201 - ScheduleConfig
        return self.node.config.schedules

    def jobs(self) -> list[tuple[Job, str, str]]:
        """(job, cron expression, job name): one per configured schedule."""
        out: list[tuple[Job, str, str]] = [(self._drill_job(d), d.cron, f"drill:{d.name}") for d in self.config.drills]
        if self.config.summary is not None:
            out.append((self.summary, self.config.summary.cron, "summary"))
        if self.config.roster is not None:
            out.append((self.roster, self.config.roster.cron, "roster"))
        if self.config.retention is not None:
            out.append((self.retention, self.config.retention.cron, "retention"))
        return out

    def _drill_job(self, drill: DrillSchedule) -> Job:
        async def job() -> Submitted:
            return await self.drill(drill)
        job.__name__ = f"drill_{drill.name}"
        return job

    def _fired(self, cron: str) -> datetime:
        return fire_time(cron, self.node.clock.now(), self.node.config.display_zone)

    # 1. scheduled drills

    async def drill(self, drill: DrillSchedule) -> Submitted:
        """Submit this firing's drill with its department's authority (approval applies); a
        second run for the same minute returns the warning the first made."""
        at = self._fired(drill.cron)
        scope = await self.department_scope(drill.department, f"schedule:drill:{drill.name}")
        sender = drill.sender or next((s for s in scope.senders if s != "*"), None)
        if sender is None:
            raise error("request.invalid", f"schedules.drills.{drill.name}.sender",
                        f"{drill.department} may issue as any sender: name the drill's sender",
                        f"{drill.department} 可使用任意发布者标识：请为演练配置 sender")
        xml = alert_to_xml(drill_alert(drill, sender, at)).encode("utf-8")
        submitted, _ = await self.node.intake.submit(xml, CAP_XML, scope)
        log.info("scheduled drill submitted", extra={"drill": drill.name, "warning": submitted.warning_id,
                                                     "created": submitted.created, "awaiting": submitted.awaiting})
        return submitted

    async def department_scope(self, department: str, actor: str) -> Scope:
        """The department's authority, as its API token has it: its newest token in force (not a
        person's own). Without one the department cannot issue, here as through the API."""
        t, now = tokens.c, self.node.clock.now()
        q = (sa.select(tokens).where(t.department == department, t.revoked_at.is_(None), t.user_name.is_(None),
                                     sa.or_(t.expires_at.is_(None), t.expires_at > now))
             .order_by(t.id.desc()).limit(1))
        async with self.node.db.read() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            raise error("auth.invalid", "department", f"{department} has no token in force: a schedule issues with "
                        "its department's token's authority", f"{department} 没有有效令牌，定期演练无法以其权限发布")
        return scope_of_row(row, actor)

    # 2. the daily summary

    async def summary(self) -> tuple[DayCounts, int]:
        """The last `hours` up to this firing, told to every person of the configured roles."""
        cfg, zone = self.config.summary, self.node.config.display_zone
        at = self._fired(cfg.cron)
        counts = await self.roster_store.day_counts(at - timedelta(hours=cfg.hours), at)
        people = await self._people(cfg.to)
        context = {"signature": self.node.config.sms.signature, "c": counts,
                   "since": counts.since.astimezone(zone).strftime("%m-%d %H:%M"),
                   "until": counts.until.astimezone(zone).strftime("%m-%d %H:%M")}
        items = [Notice(p, channel, summary_text(p.language, context)) for p in people if p.phone
                 for channel in cfg.channels]
        written = await self.roster_store.write_notices("summary", round_name(at), items)
        log.info("daily summary", extra={"round": round_name(at), "people": len(people), "notices": written,
                                         **{k: v for k, v in counts.__dict__.items() if isinstance(v, int)}})
        return counts, written

    # 3. the yearly roster refresh

    async def roster(self) -> Asked:
        cfg, zone = self.config.roster, self.node.config.display_zone
        at = self._fired(cfg.cron)
        due = at + timedelta(days=cfg.confirm_days)
        await self.roster_store.settle()  # the rounds before this one keep their answers
        people = await self._people(cfg.roles)
        names = await self.roster_store.region_names([p.region for p in people])
        signature, due_text = self.node.config.sms.signature, due.astimezone(zone).strftime("%Y-%m-%d %H:%M")

        def body(p: Person) -> str:
            return render("notices", "roster", p.language, {"signature": signature, "name": p.name,
                                                        "region": names.get(p.region, p.region), "due": due_text})
        asked = await self.roster_store.ask(round_name(at), people, due, cfg.channels, body, "schedule:roster")
        log.info("roster refresh", extra={"round": asked.round, "asked": asked.asked, "notices": asked.notices})
        return asked

    async def roster_status(self, round_: str | None = None) -> dict | None:
        """A round (the latest by default), with the replies recorded so far counted."""
        await self.roster_store.settle()
        round_ = round_ or await self.roster_store.latest_round()
        return None if round_ is None else await self.roster_store.round_status(round_, self.node.clock.now())

    # 4. retention

    async def retention(self) -> Purged:
        cfg, now = self.config.retention, self.node.clock.now()
        await self.roster_store.settle()  # replies that confirm a roster ask are counted before they go
        purged = await purge(self.node.db, now, now - timedelta(days=cfg.days), cfg.batch, "schedule:retention")
        log.info("retention purge", extra={"cutoff": purged.cutoff.isoformat(), **purged.rows})
        return purged

    async def _people(self, roles: list[str]) -> list[Person]:
        seen: dict[str, Person] = {}
        for role in roles:
            for p in await self.node.directory.list_people(role=role):
                seen.setdefault(p.id, p)
        return list(seen.values())


def summary_text(language: str, context: dict) -> str:
    return render("notices", "summary", language, context)
