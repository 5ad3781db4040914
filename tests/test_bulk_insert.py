"""insert_rows writes exactly what SQLAlchemy's own executemany would, on both dialects."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from warnd.store.bulk import insert_rows
from warnd.store.schema import confirmations, deliveries, rungs, warnings

NOW = datetime(2024, 7, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)


async def _warning(conn) -> int:  # noqa: ANN001
    return (await conn.execute(sa.insert(warnings).values(
        sender="s", identifier="i", sent=NOW, status="Actual", msg_type="Alert", level=4, event="e",
        state="active", department="d", cap_xml="<alert/>", regions=[], notes=[], created_at=NOW, version=1,
    ).returning(warnings.c.id))).scalar_one()


@pytest.mark.parametrize("table", ["deliveries", "confirmations", "rungs"])
async def test_rows_read_back_as_sqlalchemy_wrote_them(database, table):
    async with database.write() as conn:
        wid = await _warning(conn)
        if table == "deliveries":
            t, shared = deliveries, dict(warning_id=wid, priority=4, state="pending", attempts=0,
                                         next_attempt_at=NOW, expires=None, created_at=NOW, updated_at=NOW,
                                         version=1)
            own = [dict(channel="webhook", recipient_kind="subscriber", grid=None, recipient_id=f"s{i}",
                        address=f"http://x/{i}", language="zh-CN") for i in range(3)]
        elif table == "confirmations":
            t, shared = confirmations, dict(warning_id=wid, late=False, version=1, created_at=NOW)
            own = [dict(grid=f"g{i}", person_id=f"p{i}", backup_id=None, deadline=NOW + timedelta(minutes=5),
                        state=state, confirmed_at=at, channel=channel)
                   for i, (state, at, channel) in enumerate([("open", None, None), ("confirmed", NOW, "carried")])]
        else:
            cid = (await conn.execute(sa.insert(confirmations).values(
                warning_id=wid, grid="g", deadline=NOW, state="open", version=1).returning(confirmations.c.id))
                   ).scalar_one()
            t, shared = rungs, dict(ladder="red", step=0, action="notify", params={"to": ["backup"], "n": 1},
                                    due_at=NOW, state="pending", version=1)
            own = [dict(confirmation_id=cid, warning_id=wid, grid="g")] * 2
        await insert_rows(conn, t, shared, own)
        await conn.execute(sa.insert(t), [{**shared, **row} for row in own])  # the reference
        # As stored, not as read back through the column types: SQLite compares times as text.
        got = [row[1:] for row in (await conn.exec_driver_sql(f"SELECT * FROM {t.name} ORDER BY id")).all()]
        if table == "deliveries":
            purpose = (await conn.execute(sa.select(deliveries.c.purpose).distinct())).scalars().all()
            assert purpose == ["warning"]  # a Python-side default, filled in
    assert len(got) == 2 * len(own)
    assert got[:len(own)] == got[len(own):]


async def test_nothing_to_insert_is_no_statement(database):
    async with database.write() as conn:
        await insert_rows(conn, deliveries, {"warning_id": 1}, [])
        assert (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar() == 0
