"""What schedules tell people: the roster refresh (名册核对) and the daily summary, as rows.

Each firing is a *round*, named by its scheduled time, so a job fired twice for the same
minute (two nodes, a restart) asks nobody twice: the unique keys of `roster_asks` and
`notices` say so, and the second writer finds the rows there. The messages themselves are
`notices` (an outbox like `deliveries`, but belonging to no warning); they stay `pending`
until the dispatcher sends notices (see the README's *Schedules*).

A person asked counts as confirmed once warnd recorded an SMS from their number (in
`inbound`, where every reply is kept, matched or not) between the ask and its due time: the
reply proves the number reaches them, whatever it says. So nothing in the answer path has
to know about the roster, and replies fetched from the provider after a restart count too.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from warnd.clock import Clock
from warnd.domain.delivery import State
from warnd.domain.directory import Person
from warnd.domain.model import MsgType, Status
from warnd.store import audit
from warnd.store.database import Database
from warnd.domain.sending import Audience, InboundKind
from warnd.store.schema import alarms, confirmations, deliveries, inbound, notices, regions, roster_asks, warnings
from warnd_channels.registry import SPECS

CHUNK = 500  # values per IN (…)
# answers that come from a phone number: the person-audience channels that take replies
REPLY_CHANNELS = tuple(name for name, spec in SPECS.items()
                       if spec.audience is Audience.PERSON and spec.takes(InboundKind.REPLIES))
DRILLS = (Status.EXERCISE.value, Status.TEST.value)
SETTLE_DAYS = timedelta(days=400)  # older rounds are settled for good (their replies are purged by now)


@dataclass(frozen=True)
class Notice:
    person: Person
    channel: str
    body: str


@dataclass(frozen=True)
class Asked:
    round: str
    asked: int  # people asked in this call (0: the round was already asked)
    notices: int


@dataclass(frozen=True)
class DayCounts:
    """The daily summary's numbers, over [since, until)."""

    since: datetime
    until: datetime
    issued: int  # real warnings (Actual) published, updates and cancels included
    drills: int
    grids: int  # requirements (叫应) opened
    confirmed: int
    covered: int  # door-to-door visit done
    open: int  # still waiting
    not_woken: int  # put on the 未叫醒 list
    failed: int  # sends that failed for good
    open_alarms: int  # not acknowledged (of any age)


def _chunks(values: list) -> list[list]:
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


class RosterStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def write_notices(self, kind: str, round_: str, items: list[Notice]) -> int:
        """The round's messages, once: those already written (another node, an earlier run) are kept."""
        now = self.clock.now()
        try:
            async with self.db.write() as conn:
                return await _insert_notices(conn, kind, round_, items, now)
        except IntegrityError:  # another node wrote the same round meanwhile
            return 0

    async def ask(self, round_: str, people: list[Person], due_at: datetime, channels: list[str],
                  body: Callable[[Person], str], actor: str) -> Asked:
        """Ask every one of `people` (those without a phone are listed at once as not asked)."""
        now = self.clock.now()
        r = roster_asks.c
        try:
            async with self.db.write() as conn:
                if (await conn.execute(sa.select(r.id).where(r.round == round_).limit(1))).first() is not None:
                    return Asked(round_, 0, 0)  # asked already: by another node, or before a restart
                rows = [dict(round=round_, person_id=p.id, name=p.name, region=p.region, phone=p.phone or None,
                             asked_at=now, due_at=due_at) for p in people]
                for chunk in _chunks(rows):
                    await conn.execute(sa.insert(roster_asks), chunk)
                items = [Notice(p, channel, body(p)) for p in people if p.phone for channel in channels]
                written = await _insert_notices(conn, "roster", round_, items, now)
                await audit.append(conn, self.db, now, actor, "roster.ask", f"roster:{round_}",
                                   {"people": len(rows), "notices": written, "due_at": due_at.isoformat()})
        except IntegrityError:  # another node wrote the same round meanwhile
            return Asked(round_, 0, 0)
        return Asked(round_, len(rows), written)

    async def settle(self) -> int:
        """Mark confirmed every open ask whose person's number sent warnd an SMS between the ask and
        its due time. Returns how many were confirmed now."""
        r, i = roster_asks.c, inbound.c
        done = 0
        async with self.db.write() as conn:
            open_asks = (await conn.execute(sa.select(r.id, r.phone, r.asked_at, r.due_at).where(
                r.confirmed_at.is_(None), r.phone.is_not(None),
                r.due_at >= self.clock.now() - SETTLE_DAYS))).all()
            by_phone: dict[str, list] = {}
            for ask in open_asks:
                by_phone.setdefault(ask.phone, []).append(ask)
            if not by_phone:
                return 0
            since = min(a.asked_at for a in open_asks)
            replies: dict[str, list] = {}
            for chunk in _chunks(sorted(by_phone)):
                q = (sa.select(i.id, i.from_address, i.at).where(i.from_address.in_(chunk), i.at >= since,
                                                                  i.channel.in_(REPLY_CHANNELS)).order_by(i.at))
                for row in await conn.execute(q):
                    replies.setdefault(row.from_address, []).append(row)
            for phone, asks in by_phone.items():
                for ask in asks:
                    reply = next((x for x in replies.get(phone, ()) if ask.asked_at <= x.at <= ask.due_at), None)
                    if reply is not None:
                        await conn.execute(sa.update(roster_asks).where(r.id == ask.id, r.confirmed_at.is_(None))
                                           .values(confirmed_at=reply.at, inbound_id=reply.id))
                        done += 1
        return done

    async def region_names(self, codes: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        async with self.db.read() as conn:
            for chunk in _chunks(sorted(set(codes))):
                out.update((await conn.execute(sa.select(regions.c.code, regions.c.name)
                                               .where(regions.c.code.in_(chunk)))).all())
        return out

    async def latest_round(self) -> str | None:
        r = roster_asks.c
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(r.round).order_by(r.asked_at.desc(), r.id.desc()).limit(1))).scalar()

    async def round_status(self, round_: str, now: datetime) -> dict | None:
        """One round: counts, and everyone not confirmed (why: no phone, no reply yet, no reply in time)."""
        r = roster_asks.c
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(roster_asks).where(r.round == round_)
                                       .order_by(r.region, r.person_id))).all()
        if not rows:
            return None
        unconfirmed = [{"person_id": x.person_id, "name": x.name, "region": x.region, "phone": x.phone,
                        "asked_at": x.asked_at.isoformat(), "due_at": x.due_at.isoformat(),
                        "reason": "no_phone" if x.phone is None else ("waiting" if now <= x.due_at else "no_reply")}
                       for x in rows if x.confirmed_at is None]
        return {"round": round_, "asked_at": min(x.asked_at for x in rows).isoformat(),
                "due_at": max(x.due_at for x in rows).isoformat(), "people": len(rows),
                "confirmed": len(rows) - len(unconfirmed), "unconfirmed": unconfirmed}

    async def notices(self, kind: str | None, limit: int) -> list[dict]:
        n = notices.c
        q = sa.select(notices).order_by(n.id.desc()).limit(limit)
        if kind is not None:
            q = q.where(n.kind == kind)
        async with self.db.read() as conn:
            return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()}
                    for row in await conn.execute(q)]

    async def day_counts(self, since: datetime, until: datetime) -> DayCounts:
        w, c, d, a = warnings.c, confirmations.c, deliveries.c, alarms.c
        window = sa.and_(w.published_at >= since, w.published_at < until)
        opened = sa.and_(c.created_at >= since, c.created_at < until)

        def count(*where: sa.ColumnElement[bool]) -> sa.ScalarSelect:
            return sa.select(sa.func.count()).where(*where).scalar_subquery()

        q = sa.select(
            count(window, w.status == Status.ACTUAL.value).label("issued"),
            count(window, w.status.in_(DRILLS), w.msg_type != MsgType.CANCEL.value).label("drills"),
            sa.select(sa.func.count()).select_from(confirmations).where(opened).scalar_subquery().label("grids"),
            *(sa.select(sa.func.count()).select_from(confirmations).where(opened, c.state == s).scalar_subquery()
              .label(s) for s in ("confirmed", "covered", "open")),
            sa.select(sa.func.count()).select_from(confirmations)
            .where(c.not_woken_at >= since, c.not_woken_at < until).scalar_subquery().label("not_woken"),
            sa.select(sa.func.count()).select_from(deliveries)
            .where(d.state == State.FAILED.value, d.done_at >= since, d.done_at < until).scalar_subquery()
            .label("failed"),
            sa.select(sa.func.count()).select_from(alarms).where(a.acknowledged_at.is_(None)).scalar_subquery()
            .label("open_alarms"))
        async with self.db.read() as conn:
            row = (await conn.execute(q)).one()
        return DayCounts(since, until, **row._mapping)


async def _insert_notices(conn, kind: str, round_: str, items: list[Notice], now: datetime) -> int:  # noqa: ANN001
    n = notices.c
    have = set((await conn.execute(sa.select(n.person_id, n.channel).where(n.kind == kind, n.round == round_))).all())
    rows = [dict(kind=kind, round=round_, person_id=x.person.id, channel=x.channel, address=x.person.phone or "",
                 language=x.person.language, body=x.body, state="pending", created_at=now, updated_at=now)
            for x in items if (x.person.id, x.channel) not in have]
    for chunk in _chunks(rows):
        await conn.execute(sa.insert(notices), chunk)
    return len(rows)
