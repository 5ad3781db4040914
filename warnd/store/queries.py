"""The read side: warnings with their deliveries and confirmations, as plain dicts for the API."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from warnd.domain.model import Level
from warnd.store.database import Database
from warnd.store.schema import approvals, confirmations, deliveries, warnings

WARNING_FIELDS = ("id", "sender", "identifier", "sent", "status", "msg_type", "event", "headline",
                  "expires", "state", "root_id", "previous_id", "department", "regions", "notes",
                  "created_at", "submitted_by", "approvals_needed", "approved_at", "published_at",
                  "rejected_reason")


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def record_json(record: object) -> dict:
    """A flat dataclass for the API: times as ISO 8601, tuples as lists."""
    return _jsonable({k: list(v) if isinstance(v, tuple) else v for k, v in record.__dict__.items()})


def _warning_dict(row) -> dict:  # noqa: ANN001 - a Row
    out = _jsonable({k: row._mapping[k] for k in WARNING_FIELDS})
    level = Level(row.level)
    out["level"] = level.label
    out["level_zh"] = level.zh
    return out


class Queries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def warning(self, warning_id: int, *, delivery_limit: int = 500,
                      with_confirmations: bool = True) -> dict | None:
        """A warning with its counts, its first `delivery_limit` deliveries and (unless not
        `with_confirmations`) every requirement: a province's red warning has 100,000 of
        them, 40 MB of JSON, which the answer to its POST leaves out (counts instead)."""
        w, d, c = warnings.c, deliveries.c, confirmations.c
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(warnings).where(w.id == warning_id))).first()
            if row is None:
                return None
            out = _warning_dict(row)
            counts = await conn.execute(sa.select(d.channel, d.state, sa.func.count())
                                        .where(d.warning_id == warning_id).group_by(d.channel, d.state))
            summary: dict[str, dict[str, int]] = {}
            for channel, state, n in counts:
                summary.setdefault(channel, {})[state] = n
            out["deliveries_by_channel"] = summary
            out["approvals"] = [_jsonable(dict(r._mapping)) for r in await conn.execute(
                sa.select(approvals.c.approver, approvals.c.decision, approvals.c.reason, approvals.c.at)
                .where(approvals.c.warning_id == warning_id).order_by(approvals.c.id))]
            first = (await conn.execute(sa.select(sa.func.min(d.sent_at)).where(d.warning_id == warning_id))).scalar()
            out["first_sent_at"] = first.isoformat() if first else None
            rows = await conn.execute(
                sa.select(d.id, d.channel, d.recipient_kind, d.recipient_id, d.state, d.attempts,
                          d.next_attempt_at, d.last_code, d.provider_ref, d.sent_at, d.done_at)
                .where(d.warning_id == warning_id).order_by(d.id).limit(delivery_limit))
            out["deliveries"] = [_jsonable(dict(r._mapping)) for r in rows]
            out["confirmations_by_state"] = {state: n for state, n in await conn.execute(
                sa.select(c.state, sa.func.count()).where(c.warning_id == warning_id).group_by(c.state))}
            if with_confirmations:
                rows = await conn.execute(sa.select(confirmations).where(c.warning_id == warning_id).order_by(c.id))
                out["confirmations"] = [_jsonable({k: v for k, v in r._mapping.items() if k != "version"})
                                        for r in rows]
            out["cap_xml"] = row.cap_xml
        return out

    async def department_of(self, warning_id: int) -> tuple[str | None] | None:
        """(department,) of a warning, or None if there is no such warning: who may read it."""
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(warnings.c.department).where(warnings.c.id == warning_id))).first()
        return None if row is None else (row.department,)

    async def warnings(self, *, status: str | None = None, state: str | None = None,
                       level: Level | None = None, event: str | None = None, since: datetime | None = None,
                       department: str | None = None, limit: int = 50, offset: int = 0) -> list[dict]:
        w = warnings.c
        q = sa.select(warnings).order_by(w.id.desc()).limit(limit).offset(offset)
        for column, value in ((w.status, status), (w.state, state), (w.event, event), (w.department, department)):
            if value is not None:
                q = q.where(column == value)
        if level is not None:
            q = q.where(w.level == int(level))
        if since is not None:
            q = q.where(w.created_at >= since)
        async with self.db.read() as conn:
            return [_warning_dict(r) for r in await conn.execute(q)]
