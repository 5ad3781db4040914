"""Notices (the daily summary, roster asks) go out through a text channel — the real Twilio
SDK against warnd's simulator — once each, at the channel's shared rate; a refusal is tried
again later, a notice a dead node left in flight is never sent twice."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from factories import COUNTY, GRIDS, NO_APPROVAL, TOWNSHIP, VILLAGE

from warnd.config import load_config
from warnd.domain.directory import Person, Region
from warnd.engine.node import Node
from warnd.ingest.directory import DirectoryData
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Scenario
from warnd.store.schema import notices

SID, TOKEN, FROM = "AC" + "2" * 32, "notices-auth-token", "+15005550006"
MORNING = datetime(2026, 7, 2, 0, 0, 20, tzinfo=timezone.utc)  # 08:00:20 in Shanghai


@pytest.fixture
async def rig(database, clock):
    started = []

    async def start(faults: dict | None = None):  # noqa: ANN202
        plan = Scenario()
        if faults:
            plan.update({"faults": faults})
        sim = TwilioSimulator(SID, TOKEN, plan)
        sim_url = await sim.start()
        clock.set(MORNING)
        config = load_config(None, database_url=database.url, approval=NO_APPROVAL, webhook={"enabled": False},
                             twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": sim_url,
                                     "from_number": FROM},
                             sms={"enabled": True, "rate_per_second": 100},
                             schedules={"summary": {"cron": "0 8 * * *", "to": ["county_duty"]},
                                        "roster": {"cron": "0 8 * * *", "confirm_days": 14}})
        node = Node(config, clock=clock)
        await node.directory.import_data(DirectoryData(
            regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                     Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(GRIDS[0], "一组", "grid", VILLAGE)),
            people=(Person("p1", "张三", GRIDS[0], ("grid_responsible",), "+8613800000001"),
                    Person("d1", "赵六", COUNTY, ("county_duty",), "+8613800000009"),
                    Person("d2", "Sun Qi", COUNTY, ("county_duty",), "+8613800000010", language="en"))))
        node.secret_key = b"k" * 32
        started.append((node, sim))
        return node, sim

    yield start
    for node, sim in started:
        await node.notices.close()
        await node.channels["sms"].close()
        await node.db.close()
        await sim.stop()


async def _states(node: Node) -> dict[str, str]:
    n = notices.c
    async with node.db.read() as conn:
        return {f"{r.kind}:{r.person_id}": r.state for r in await conn.execute(sa.select(n.kind, n.person_id, n.state))}


async def test_the_summary_and_the_roster_reach_the_phones_once(rig):
    node, sim = await rig()
    await node.schedules.summary()
    await node.schedules.roster()
    assert await node.notices.send_due() == 3
    bodies = {m.to: m.body for m in sim.messages.values()}
    assert set(bodies) == {"+8613800000009", "+8613800000010", "+8613800000001"}
    assert "值班日报" in bodies["+8613800000009"] and "warnings issued" in bodies["+8613800000010"]
    assert await _states(node) == {"summary:d1": "sent", "summary:d2": "sent", "roster:p1": "sent"}
    await node.schedules.summary()  # the same firing again, and another sweep: nobody is told twice
    assert await node.notices.send_due() == 0 and len(sim.messages) == 3


async def test_a_refused_notice_is_tried_again_and_one_left_in_flight_is_not(rig, clock):
    node, sim = await rig({"rate_429": 1.0, "retry_after": 1})
    await node.schedules.summary()
    assert await node.notices.send_due() == 0
    assert set((await _states(node)).values()) == {"pending"} and not sim.messages  # refused: nothing sent
    sim.scenario.update({"faults": {"rate_429": 0.0}})
    n = notices.c
    async with node.db.write() as conn:  # a node died while sending d2's
        await conn.execute(sa.update(notices).where(n.person_id == "d2").values(state="sending",
                                                                                updated_at=clock.now()))
    assert await node.notices.send_due() == 1  # d1's, now accepted
    clock.advance(timedelta(minutes=11).total_seconds())
    assert await node.notices.send_due() == 0
    assert await _states(node) == {"summary:d1": "sent", "summary:d2": "uncertain"}
    assert [m.to for m in sim.messages.values()] == ["+8613800000009"]
