"""Loudspeakers through the whole engine: warnd's dispatcher publishes over a real
Mosquitto to simulated speakers, their played-acks settle deliveries, offline
speakers leave their grid uncovered (which escalates), and a Cancel stops them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from factories import COUNTY, NO_APPROVAL, TOWNSHIP, VILLAGE, alert
from mosquitto import running_mosquitto
from test_engine import until

from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Household, Person, Region, Speaker
from warnd.domain.model import MsgType, Reference
from warnd.engine.node import Node
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.sim.speakers import Behaviour, SpeakerFleet
from warnd.store.schema import call_lists, confirmations, deliveries, rungs

XML = "application/cap+xml"
GRIDS_N, PER_GRID = 50, 10


def grid(i: int) -> str:
    return f"{VILLAGE}{i:03d}"


def speaker(i: int) -> str:
    return f"spk-{i:05d}"


def directory() -> DirectoryData:
    regions = [Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
               Region(VILLAGE, "河口村", "village", TOWNSHIP)]
    regions += [Region(grid(g), f"{g}组", "grid", VILLAGE) for g in range(GRIDS_N)]
    people = [Person(f"p{g}", f"网格员{g}", grid(g), ("grid_responsible", "liaison"), f"+86138{g:08d}")
              for g in range(GRIDS_N)]
    homes = [Household(f"h{g}", grid(g), f"{g}组1号", None) for g in range(GRIDS_N)]
    speakers = [Speaker(speaker(i), grid(i // PER_GRID)) for i in range(GRIDS_N * PER_GRID)]
    return DirectoryData(regions=tuple(regions), people=tuple(people), households=tuple(homes),
                         speakers=tuple(speakers))


def live(identifier: str = "W1", **kw) -> bytes:  # noqa: ANN003
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return alert_to_xml(alert(identifier, sent=now, expires=now + timedelta(hours=6), **kw)).encode()


@pytest.fixture
async def setup(tmp_path):
    started = []

    async def start(behaviours: dict[str, Behaviour] | None = None, **speaker_cfg):  # noqa: ANN003, ANN202
        broker_cm = running_mosquitto(tmp_path)
        broker = await broker_cm.__aenter__()
        fleet = SpeakerFleet(GRIDS_N * PER_GRID, behaviours=behaviours or {})
        await fleet.start(broker.url)
        config = load_config(None, database_url=f"sqlite:///{tmp_path / 'spk.db'}", webhook={"enabled": False},
                             mqtt={"url": broker.url}, speaker={"enabled": True, **speaker_cfg},
                             dispatcher={"poll_seconds": 0.05}, sweeps={"speaker_seconds": 0.2},
                             routing=[{"levels": ["red"], "channels": ["speaker"]}], approval=NO_APPROVAL)
        from warnd.store.migrate import upgrade
        upgrade(config.database_url)
        node = Node(config)
        await node.directory.import_data(directory())
        await node.start()
        started.append((node, fleet, broker_cm))
        return node, fleet

    yield start
    for node, fleet, broker_cm in started:
        await node.stop()
        await fleet.stop()
        await broker_cm.__aexit__(None, None, None)


async def count(node: Node, table, *where) -> int:  # noqa: ANN001
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar()


async def _ge(coro, n: int) -> bool:  # noqa: ANN001
    return (await coro) >= n


async def test_500_speakers_each_play_once_and_every_delivery_settles_by_its_played_ack(setup):
    node, fleet = await setup()
    await node.intake.submit(live(), XML, admin_scope())
    await fleet.wait_until(lambda f: f.played_count() >= 500, timeout=60)
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "delivered"), 500), timeout=60)
    assert set(fleet.play_counts().values()) == {1} and fleet.duplicates == 0
    assert await count(node, confirmations, confirmations.c.uncovered_at.is_not(None)) == 0


async def test_an_offline_speaker_leaves_its_grid_uncovered_and_it_escalates_door_to_door(setup):
    node, fleet = await setup({speaker(3): Behaviour(offline=True)})
    wid = (await node.intake.submit(live(), XML, admin_scope()))[0].warning_id
    await until(lambda: _ge(count(node, confirmations, confirmations.c.uncovered_at.is_not(None)), 1), timeout=30)
    async with node.db.read() as conn:
        (row,) = (await conn.execute(sa.select(confirmations).where(confirmations.c.uncovered_at.is_not(None)))).all()
    assert (row.warning_id, row.grid, row.uncovered_reason) == (wid, grid(0), "speaker_offline")
    await until(lambda: _ge(count(node, call_lists, call_lists.c.grid == grid(0)), 1), timeout=30)
    assert await count(node, rungs, rungs.c.ladder == "uncovered") == 2


async def test_a_cancel_stops_the_speakers_and_ends_rebroadcast(setup):
    node, fleet = await setup(rebroadcast_minutes={"red": 0.001})
    await node.intake.submit(live("W1"), XML, admin_scope())
    await fleet.wait_until(lambda f: f.played_count() >= 1000, timeout=60)  # played, then replayed
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    cancel = (await node.intake.submit(live("W1-cancel", msg_type=MsgType.CANCEL, references=ref), XML,
                                       admin_scope()))[0].warning_id
    await until(lambda: _ge(count(node, deliveries, deliveries.c.warning_id == cancel,
                                  deliveries.c.state == "delivered"), 500), timeout=60)
    async with node.db.read() as conn:
        cancelled_at = (await conn.execute(sa.select(sa.func.max(deliveries.c.created_at))
                                           .where(deliveries.c.warning_id == cancel))).scalar()
    await node.watch_speakers()
    assert await count(node, deliveries, deliveries.c.warning_id != cancel,
                       deliveries.c.created_at > cancelled_at) == 0  # no replay after the cancel
    assert await count(node, deliveries, deliveries.c.state == "pending") == 0
    assert sum(len(s) for s in fleet.stopped.values()) + sum(
        1 for sp in fleet.speakers.values() if sp.forgotten) >= 500  # every speaker was told to stop
