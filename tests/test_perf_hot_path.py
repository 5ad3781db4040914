"""The dispatcher's hot path writes with the DB-API driver, past SQLAlchemy's type processing:
its values must be exactly what SQLAlchemy would have stored, and read back alike."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from warnd.store.database import Database
from warnd.store.schema import TS, deliveries, warnings

MOMENTS = [datetime(2026, 7, 1, 1, 2, 3, tzinfo=timezone.utc),  # no microseconds
           datetime(2026, 7, 1, 1, 2, 3, 5, tzinfo=timezone.utc),
           datetime(2026, 7, 1, 9, 2, 3, 123456, tzinfo=timezone(timedelta(hours=8)))]


@pytest.mark.parametrize("url", ["sqlite:////tmp/unused.db", "postgresql://postgres@127.0.0.1:5432/unused"])
def test_stamp_is_what_sqlalchemy_binds(url):
    db = Database(url)
    bind = TS._cached_bind_processor(db.engine.dialect) or (lambda v: v)
    for moment in MOMENTS:
        assert db.stamp(moment) == bind(moment)
        assert db.unstamp(db.stamp(moment)) == moment
        assert db.unstamp(db.stamp(moment)).tzinfo is timezone.utc


async def test_prepared_statements_read_and_write_like_sqlalchemy(database):
    d = deliveries.c
    rows = [dict(warning_id=1, channel="webhook", recipient_kind="subscriber", recipient_id=f"s{i}",
                 address="http://x", language="zh-CN", priority=4, state="pending", attempts=0,
                 next_attempt_at=MOMENTS[i], created_at=MOMENTS[i], updated_at=MOMENTS[i],
                 params={"list_id": i} if i else None) for i in range(len(MOMENTS))]
    async with database.write() as conn:
        await conn.execute(sa.insert(warnings).values(
            id=1, sender="s", identifier="i", sent=MOMENTS[0], status="Actual", msg_type="Alert", level=4,
            event="e", state="active", cap_xml="<alert/>", notes=[], regions=[], created_at=MOMENTS[0]))
        await conn.execute(sa.insert(deliveries), rows)
    select = database.prepare(sa.select(d.id, d.next_attempt_at, d.params).where(d.next_attempt_at <= sa.bindparam(
        "b_at", type_=d.next_attempt_at.type)).order_by(d.id))
    update = database.prepare(sa.update(deliveries).where(d.id == sa.bindparam("b_id"))
                              .values(updated_at=sa.bindparam("b_at", type_=d.updated_at.type)))
    got = await database.transact(lambda tx: tx.rows(select, {"b_at": database.stamp(MOMENTS[1])}))
    assert [(database.unstamp(r[1]), database.unjson(r[2])) for r in got] == [(MOMENTS[0], None),
                                                                               (MOMENTS[1], {"list_id": 1})]
    changed = await database.transact(lambda tx: tx.many(update, [
        {"b_id": r[0], "b_at": database.stamp(MOMENTS[2])} for r in got]).rowcount)
    assert changed == 2
    async with database.read() as conn:  # SQLAlchemy reads and compares what the driver wrote
        back = (await conn.execute(sa.select(d.updated_at).where(d.updated_at == MOMENTS[2]))).scalars().all()
    assert back == [MOMENTS[2]] * 3
