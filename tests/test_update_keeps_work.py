"""An Update keeps the work done (issue 11): the pure rule (`domain.updates.keep`) by a table
and by properties, then the rule through the real store on SQLite and PostgreSQL with a
manual clock: confirmations that hold are carried, the ladder goes on from where the grid
was, lists and queued escalation sends move, grids leave and join the area.

Times in the table are minutes after the first publication (T0)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from factories import COUNTY, NO_APPROVAL, SENDER, T0, TOWNSHIP, VILLAGE, alert
from hypothesis import given, settings
from hypothesis import strategies as st
from test_pages import _item_ids, site  # noqa: F401 - the fixture: a node behind a real HTTP server
from test_simulate import simulate

from warnd.config import Config, load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Household, Person, Region
from warnd.domain.escalation import Fired, Step, steps
from warnd.domain.model import Level, MsgType, Reference
from warnd.domain.updates import PriorGrid, PriorRung, keep
from warnd.engine.node import Node
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.store import audit
from warnd.store.call_lists import CallListStore
from warnd.store.schema import alarms, call_list_items, call_lists, confirmations, deliveries, rungs, warnings

RED, ORANGE, YELLOW = Level.RED, Level.ORANGE, Level.YELLOW
CONFIRM = {RED: 5, ORANGE: 15, YELLOW: 30}  # the default deadlines, minutes
LADDERS = {level: steps(Config().ladder(level.label)) for level in (RED, ORANGE, YELLOW)}  # yellow: none


def m(minutes: float):  # noqa: ANN201
    return T0 + timedelta(minutes=minutes)


def prior(level: Level, state: str, deadline: float, ladder: list[tuple] = ()) -> PriorGrid:  # noqa: B006
    """ladder: (ladder name, action, due minute, fired minute or None, [skipped])."""
    rows = tuple(PriorRung(i + 1, name, i, action, {}, m(due),
                           "skipped" if rest else ("fired" if fired is not None else "pending"),
                           Fired(m(fired), "n0", {"sends": 1}) if fired is not None else None)
                 for i, (name, action, due, fired, *rest) in enumerate(ladder))
    return PriorGrid(7, 1, level, state, m(deadline), m(0), "resp" if state == "confirmed" else None, rungs=rows)


def default_ladder(level: Level, fired_until: float) -> list[tuple]:
    """The level's default ladder from T0, each rung fired (on time) if due by `fired_until`."""
    dues = [s.after.total_seconds() / 60 for s in LADDERS[level]]
    return [(level.label, s.action, due, due if due <= fired_until else None) for s, due in zip(LADDERS[level], dues)]


# (case, prior requirement, new level, now) → None (start afresh) or (state, deadline, rungs as
# (ladder, action, due, "fired"|"pending"), sorted by due then action)
TABLE = [
    ("same level, confirmed: carried, no ladder",
     prior(RED, "confirmed", 5), RED, 7, ("confirmed", 5, [])),
    ("same level, covered door to door: carried as covered",
     prior(RED, "covered", 5), RED, 20, ("covered", 5, [])),
    ("lower level, confirmed: carried",
     prior(RED, "confirmed", 5), ORANGE, 7, ("confirmed", 5, [])),
    ("raised level, confirmed: a new confirmation and ladder from the raise",
     prior(ORANGE, "confirmed", 15), RED, 20, None),
    ("raised level, covered: a new confirmation",
     prior(ORANGE, "covered", 15), RED, 40, None),
    ("same level, open at 7: the ladder goes on unchanged, fired stays fired, deadline kept",
     prior(RED, "open", 5, default_ladder(RED, 7)), RED, 7,
     ("open", 5, [("red", "notify", 5, "fired"), ("red", "door_to_door", 10, "pending"),
                  ("red", "alarm", 15, "pending")])),
    ("same level, open at 12 with the list being walked: the alarm stays at 15, not 12 + 15",
     prior(RED, "open", 5, default_ladder(RED, 12)), RED, 12,
     ("open", 5, [("red", "notify", 5, "fired"), ("red", "door_to_door", 10, "fired"),
                  ("red", "alarm", 15, "pending")])),
    ("lower level, open at 7: the red pace and deadline are kept (never later)",
     prior(RED, "open", 5, default_ladder(RED, 7)), ORANGE, 7,
     ("open", 5, [("red", "notify", 5, "fired"), ("orange", "door_to_door", 10, "pending"),
                  ("orange", "alarm", 15, "pending")])),
    ("raised early (orange → red at 2): red from the raise, deadline 2 + 5",
     prior(ORANGE, "open", 15, default_ladder(ORANGE, 2)), RED, 2,
     ("open", 7, [("red", "notify", 7, "pending"), ("red", "door_to_door", 12, "pending"),
                  ("red", "alarm", 17, "pending")])),
    ("raised at 12, before orange's deadline: red aligned on the old deadline 15",
     prior(ORANGE, "open", 15, default_ladder(ORANGE, 12)), RED, 12,
     ("open", 15, [("red", "notify", 15, "pending"), ("red", "door_to_door", 20, "pending"),
                   ("red", "alarm", 25, "pending")])),
    ("raised at 20, already late (orange notify fired at 15): the door list now, the alarm at 25",
     prior(ORANGE, "open", 15, default_ladder(ORANGE, 20)), RED, 20,
     ("open", 15, [("orange", "notify", 15, "fired"), ("red", "door_to_door", 20, "pending"),
                   ("red", "alarm", 25, "pending")])),
    ("raised at 29, list being walked: the alarm overdue by the red pace fires now (due 25)",
     prior(ORANGE, "open", 15, default_ladder(ORANGE, 29)), RED, 29,
     ("open", 15, [("orange", "notify", 15, "fired"), ("orange", "door_to_door", 25, "fired"),
                   ("red", "alarm", 25, "pending")])),
    ("yellow (no ladder) raised to red at 20, not yet late: red from the raise, not all at once",
     prior(YELLOW, "open", 30), RED, 20,
     ("open", 25, [("red", "notify", 25, "pending"), ("red", "door_to_door", 30, "pending"),
                   ("red", "alarm", 35, "pending")])),
    ("yellow raised to red at 40, late since 30: red aligned on 30, what is past fires now",
     prior(YELLOW, "open", 30), RED, 40,
     ("open", 30, [("red", "notify", 30, "pending"), ("red", "door_to_door", 35, "pending"),
                   ("red", "alarm", 40, "pending")])),
    ("the uncovered ladder (silent speakers) goes on as it was across a raise",
     prior(ORANGE, "open", 15, [("uncovered", "door_to_door", 3, 3), ("uncovered", "alarm", 13, None),
                               *default_ladder(ORANGE, 4)]), RED, 4,
     ("open", 9, [("uncovered", "door_to_door", 3, "fired"), ("red", "notify", 9, "pending"),
                  ("uncovered", "alarm", 13, "pending"), ("red", "door_to_door", 14, "pending"),
                  ("red", "alarm", 19, "pending")])),
    ("an old rung the new ladder lacks keeps its time; skipped ones are gone",
     prior(ORANGE, "open", 15, [("orange", "notify", 15, None), ("orange", "notify", 20, None),
                               ("orange", "alarm", 30, None), ("orange", "door_to_door", 40, None, "skipped")]),
     RED, 2,
     ("open", 7, [("red", "notify", 7, "pending"), ("red", "door_to_door", 12, "pending"),
                  ("red", "alarm", 17, "pending"), ("orange", "notify", 20, "pending")])),
]


@pytest.mark.parametrize("case,before,level,now,expected", TABLE, ids=[row[0] for row in TABLE])
def test_what_an_update_keeps(case, before, level, now, expected):
    got = keep(before, level, timedelta(minutes=CONFIRM[level]), level.label, LADDERS[level], m(now))
    if expected is None:
        assert got is None
        return
    state, deadline, ladder = expected
    assert got.from_id == before.confirmation_id
    assert (got.state, got.deadline) == (state, m(deadline))
    shown = sorted(((r.ladder, r.action, (r.due_at - T0).total_seconds() / 60, "fired" if r.fired else "pending")
                    for r in got.rungs), key=lambda r: (r[2], r[1]))
    assert shown == sorted(ladder, key=lambda r: (r[2], r[1]))


def test_a_same_level_update_keeps_the_marks_and_the_first_question():
    before = PriorGrid(7, 1, RED, "open", m(5), m(0), None, not_woken_at=m(5), uncovered_at=m(2),
                       uncovered_reason="speaker_offline")
    got = keep(before, RED, timedelta(minutes=5), "red", LADDERS[RED], m(7))
    assert (got.since, got.not_woken_at, got.uncovered_at, got.uncovered_reason) == \
        (m(0), m(5), m(2), "speaker_offline")  # a reply sent before the Update still answers it
    raised = keep(PriorGrid(7, 1, ORANGE, "open", m(15), m(0), None, not_woken_at=m(15)), RED,
                  timedelta(minutes=5), "red", LADDERS[RED], m(16))
    assert raised.since == m(16) and raised.not_woken_at == m(15)  # an orange answer does not confirm red


ACTIONS = ("notify", "door_to_door", "alarm")
ladders = st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 60)), max_size=5).map(
    lambda xs: tuple(Step(timedelta(minutes=after), action, {}) for action, after in sorted(xs, key=lambda x: x[1])))


@settings(max_examples=300, deadline=None)
@given(old_level=st.sampled_from([YELLOW, ORANGE, RED]), new_level=st.sampled_from([YELLOW, ORANGE, RED]),
       old=ladders, new=ladders, confirm_old=st.integers(1, 30), confirm_new=st.integers(1, 30),
       now=st.integers(0, 90), state=st.sampled_from(["open", "confirmed", "covered"]))
def test_an_update_never_makes_a_rung_later_nor_unfires_one(old_level, new_level, old, new, confirm_old,
                                                            confirm_new, now, state):
    rows = []
    for i, s in enumerate(old):  # the old ladder from T0, fired on time up to now
        due = T0 + s.after
        fired = Fired(due, "n", None) if due <= m(now) else None
        rows.append(PriorRung(i + 1, old_level.label, i, s.action, {}, due, "fired" if fired else "pending", fired))
    before = PriorGrid(7, 1, old_level, state, m(confirm_old), m(0), None,
                       rungs=tuple(rows) if state == "open" else ())
    got = keep(before, new_level, timedelta(minutes=confirm_new), new_level.label, new, m(now))
    if state != "open":
        assert (got is None) == (new_level > old_level)
        return
    assert got.deadline <= before.deadline and got.deadline <= m(now + confirm_new)
    by_origin = {r.from_rung: r for r in got.rungs if r.from_rung is not None}
    for r in rows:  # every old rung goes on: fired stays fired, pending never later
        assert r.id in by_origin, r
        if r.fired:
            assert by_origin[r.id].fired == r.fired and by_origin[r.id].due_at == r.due_at
        else:
            assert by_origin[r.id].fired is None and by_origin[r.id].due_at <= r.due_at
    if new_level == old_level:
        assert len(got.rungs) == len(rows)
    else:  # every rung of the new ladder is there (or its fired counterpart), none later than the raise + offset
        assert len([r for r in got.rungs if r.ladder == new_level.label or r.fired]) >= len(new)
        for r in got.rungs:
            if r.fired is None and r.ladder == new_level.label:
                assert r.due_at <= m(now) + new[r.step].after


# ---- through the store: SQLite and PostgreSQL, a manual clock -------------------------------------------

G1, G2 = VILLAGE + "001", VILLAGE + "002"
XML = "application/cap+xml"


def directory() -> DirectoryData:
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(G1, "一组", "grid", VILLAGE),
                 Region(G2, "二组", "grid", VILLAGE)),
        people=(Person("r1", "张三", G1, ("grid_responsible",), "+8613800000001", backup="b1"),
                Person("b1", "李四", G1, ("liaison",), "+8613800000002"),
                Person("r2", "王五", G2, ("grid_responsible",), "+8613800000003"),
                Person("duty", "王镇长", TOWNSHIP, ("township_duty",), "+8613800000009")),
        households=(Household("h1", G1, "河口村一组1号", "+8613900000001"),
                    Household("h2", G1, "河口村一组2号", None, vulnerable=True),
                    Household("h3", G2, "河口村二组1号", None)))


@pytest.fixture
async def node(database, clock):
    config = load_config(None, database_url=database.url, node_id="n0",
                         twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9"},
                         sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                         routing=[{"levels": ["red", "orange", "yellow"], "channels": ["sms", "voice"],
                                   "roles": ["grid_responsible"]}], approval=NO_APPROVAL)
    made = Node(config, clock=clock)
    await made.directory.import_data(directory())
    await made.start(dispatch=False)
    yield made
    await made.stop()


class Chain:
    """One warning and its Updates, each referencing the one before."""

    def __init__(self, node: Node, clock) -> None:  # noqa: ANN001
        self.node, self.clock, self.n, self.ids = node, clock, 0, []

    async def issue(self, severity: str = "Extreme", codes: tuple[str, ...] = (VILLAGE,)) -> int:
        self.n += 1
        refs = (Reference(SENDER, f"W{self.n - 1}", "2026-07-01T00:00:00+00:00"),) if self.n > 1 else ()
        a = alert(f"W{self.n}", severity=severity, codes=codes, references=refs,
                  msg_type=MsgType.UPDATE if refs else MsgType.ALERT)
        submitted, _ = await self.node.intake.submit(alert_to_xml(a).encode(), XML, admin_scope())
        self.ids.append(submitted.warning_id)
        return submitted.warning_id

    async def at(self, minutes: float) -> None:
        self.clock.set(m(minutes))
        await self.node.escalate()
        await self.node.escalate()  # a second sweep fires nothing more

    async def rows(self, table, *where):  # noqa: ANN001, ANN201
        async with self.node.db.read() as conn:
            return (await conn.execute(sa.select(table).where(*where).order_by(table.c.id))).all()

    async def requirement(self, wid: int, grid: str = G1):  # noqa: ANN201
        (req,) = await self.rows(confirmations, confirmations.c.warning_id == wid, confirmations.c.grid == grid)
        return req

    async def ladder(self, wid: int, grid: str = G1) -> list[tuple]:
        """(ladder, action, due minute, state) of a grid's rungs, by due time."""
        out = [(r.ladder, r.action, (r.due_at - T0).total_seconds() / 60, r.state)
               for r in await self.rows(rungs, rungs.c.warning_id == wid, rungs.c.grid == grid)]
        return sorted(out, key=lambda r: (r[2], r[1]))


@pytest.fixture
def chain(node, clock):
    return Chain(node, clock)


async def test_a_same_level_update_goes_on_where_the_ladder_was(chain):
    w1 = await chain.issue()
    await chain.at(7)  # the notify rung (due 5) fires: backup and duty officer asked to the door, 未叫醒
    w2 = await chain.issue()
    req = await chain.requirement(w2)
    assert (req.state, req.deadline, req.not_woken_at, req.created_at) == ("open", m(5), m(7), m(0))
    assert await chain.ladder(w2) == [("red", "notify", 5, "fired"), ("red", "door_to_door", 10, "pending"),
                                      ("red", "alarm", 15, "pending")]
    assert (await chain.requirement(w1)).state == "closed"
    await chain.at(10)
    (cl,) = await chain.rows(call_lists, call_lists.c.grid == G1)
    assert (cl.warning_id, cl.confirmation_id) == (w2, req.id)
    await chain.at(15)  # the alarm at 15 as the first version had it, for the version in force
    assert [(a.warning_id, a.grid, a.at) for a in await chain.rows(alarms)] == [(w2, G1, m(15)), (w2, G2, m(15))]
    # each rung once: the door asks still queued (nothing dispatches here) moved to the Update, none repeated
    asks = await chain.rows(deliveries, deliveries.c.purpose == "door_ask", deliveries.c.grid == G1)
    assert sorted((d.warning_id, d.state) for d in asks) == [(w1, "superseded")] * 4 + [(w2, "pending")] * 4
    assert {(d.channel, d.recipient_id) for d in asks if d.warning_id == w2} == \
        {(ch, who) for ch in ("sms", "voice") for who in ("b1", "duty")}


async def test_queued_escalation_sends_move_to_the_update_and_the_list_keeps_its_id(chain):
    w1 = await chain.issue()
    await chain.at(11)  # the door list and the calls to households are queued, not yet sent
    (cl,) = await chain.rows(call_lists, call_lists.c.grid == G1)
    queued = {(d.channel, d.recipient_id, d.purpose, str(d.params))
              for d in await chain.rows(deliveries, deliveries.c.warning_id == w1, deliveries.c.grid == G1,
                                        deliveries.c.purpose != "warning")}
    w2 = await chain.issue()
    moved = {(d.channel, d.recipient_id, d.purpose, str(d.params))
             for d in await chain.rows(deliveries, deliveries.c.warning_id == w2, deliveries.c.grid == G1,
                                       deliveries.c.purpose != "warning", deliveries.c.state == "pending")}
    assert moved == queued and ("sms", "b1", "door_to_door", str({"list_id": cl.id})) in moved
    assert {d.state for d in await chain.rows(deliveries, deliveries.c.warning_id == w1)} == {"superseded"}
    (after,) = await chain.rows(call_lists, call_lists.c.grid == G1)
    assert (after.id, after.warning_id) == (cl.id, w2)
    (publish,) = await audit.entries(chain.node.db, audit.Filter(action="warning.publish", subject=f"warning:{w2}"))
    escalation_sends = await chain.rows(deliveries, deliveries.c.warning_id == w1, deliveries.c.purpose != "warning")
    assert {k: publish.detail[k] for k in ("kept", "lists_moved", "sends_requeued")} == \
        {"kept": 2, "lists_moved": 2, "sends_requeued": len(escalation_sends)}


async def test_a_rung_send_in_flight_at_the_update_that_comes_back_as_a_retry_is_sent_under_the_update(chain):
    w1 = await chain.issue()
    await chain.at(11)  # the door list's SMS to the walker is queued …
    in_flight = [d for d in await chain.node.deliveries.claim("sms", 100, 60) if d.purpose == "door_to_door"]
    assert [d.recipient_id for d in in_flight if d.warning_id == w1] != []
    w2 = await chain.issue()  # … and being sent as the Update is accepted
    for d in in_flight:  # the provider answered 429: try again
        await chain.node.receipts.apply("sms", d.id, "retry", "twilio.429", "SMx", attempt=1)
    await chain.node.deliveries.retire_stale()
    after = await chain.rows(deliveries, deliveries.c.id.in_([d.id for d in in_flight]))
    assert {(d.warning_id, d.state) for d in after} == {(w2, "pending")}
    assert {r.action: r.state for r in await chain.rows(rungs, rungs.c.warning_id == w2, rungs.c.grid == G1)
            }["door_to_door"] == "fired"  # the rung is not fired again: its send goes on


async def test_a_raise_of_a_late_grid_goes_on_at_the_new_pace_and_needs_a_new_confirmation(chain):
    w1 = await chain.issue("Severe")  # orange: deadline 15, notify 15, door 25, alarm 30
    await chain.at(20)
    w2 = await chain.issue("Extreme")  # red at 20
    req = await chain.requirement(w2)
    assert (req.state, req.deadline, req.created_at) == ("open", m(15), m(20))
    assert await chain.ladder(w2) == [("orange", "notify", 15, "fired"), ("red", "door_to_door", 20, "pending"),
                                      ("red", "alarm", 25, "pending")]
    await chain.at(20)  # due now: the door list, under the red version
    assert [(c.warning_id, c.grid) for c in await chain.rows(call_lists)] == [(w2, G1), (w2, G2)]
    await chain.at(25)
    assert {(a.warning_id, a.code, a.at) for a in await chain.rows(alarms)} == {
        (w2, "escalation.red.unconfirmed", m(25))}
    assert w1 != w2


async def test_a_confirmed_grid_raised_starts_afresh_a_lowered_one_keeps_its_confirmation(chain):
    await chain.issue("Severe")
    await chain.at(3)
    assert (await chain.node.answers.sms_reply("+8613800000001", "1", None)).decision.kind.value == "confirmed"
    lower = await chain.issue("Moderate")  # yellow
    kept = await chain.requirement(lower)
    assert (kept.state, kept.channel, kept.confirmed_by) == ("confirmed", "carried", "r1")
    assert (await chain.requirement(lower, G2)).state == "open"  # G2 never confirmed: still open
    await chain.at(4)
    raised = await chain.issue("Extreme")
    fresh = await chain.requirement(raised)
    assert (fresh.state, fresh.deadline) == ("open", m(9))
    assert await chain.ladder(raised) == [("red", "notify", 9, "pending"), ("red", "door_to_door", 14, "pending"),
                                          ("red", "alarm", 19, "pending")]


async def test_grids_that_leave_the_area_end_and_grids_that_join_start_fresh(chain):
    w1 = await chain.issue(codes=(G1,))
    await chain.at(11)  # G1's list exists
    w2 = await chain.issue(codes=(G2,))
    assert (await chain.requirement(w1)).closed_reason == "superseded"
    assert {r.state for r in await chain.rows(rungs, rungs.c.warning_id == w1, rungs.c.state != "fired")} \
        == {"skipped"}
    (cl,) = await chain.rows(call_lists)
    assert cl.warning_id == w1  # left behind with the version that had the grid: the walk is over
    joined = await chain.requirement(w2, G2)
    assert (joined.state, joined.deadline) == ("open", m(16))
    assert await chain.ladder(w2, G2) == [("red", "notify", 16, "pending"), ("red", "door_to_door", 21, "pending"),
                                          ("red", "alarm", 26, "pending")]
    await chain.at(30)
    assert [(a.warning_id, a.grid) for a in await chain.rows(alarms)] == [(w2, G2)]


async def test_a_rung_fired_by_another_node_while_the_update_was_read_is_kept_fired(chain, node):
    """The re-check after retiring: what `prior_grids` read may be stale by then."""
    from warnd.store.updates import changed_meanwhile, prior_grids
    w1 = await chain.issue()
    async with node.db.read() as conn:
        before = await prior_grids(conn, [w1], lock=False)
    await chain.at(6)  # another node fires the notify rung
    async with node.db.read() as conn:
        now = await changed_meanwhile(conn, before)
    notify = [r for r in now[G1].rungs if r.action == "notify"]
    assert [r.state for r in notify] == ["fired"] and now[G1].not_woken_at == m(6)
    await node.answers.sms_reply("+8613800000003", "1", None)  # G2 confirmed meanwhile
    async with node.db.read() as conn:
        now = await changed_meanwhile(conn, before)
    assert (now[G2].state, now[G2].confirmed_by) == ("confirmed", "r2")
    async with node.db.read() as conn:
        assert await changed_meanwhile(conn, await prior_grids(conn, [w1], lock=False)) is None
    assert (await chain.requirement(w1)).state == "open"
    assert (await chain.rows(warnings, warnings.c.id == w1))[0].state == "active"


# ---- the rehearsal: an Update lands while the door-to-door list is half walked, over real HTTP -----------

async def _half_walked(site) -> tuple[int, int, str, list[int]]:  # noqa: ANN001
    """A red warning whose grid nobody confirms: at 10 the list; two of three households marked
    through the page; at 12 an Update at the same level. (W1, W2, the page's path, its items)."""
    w1 = await site.submit("W1")
    _, path = await site.door_list()
    items = _item_ids((await site.page(path))[2])
    for minute, item in zip((11, 11.5), items[:2]):
        await site.at(minute)
        status, _, location, _ = await site.post(f"{path}/items/{item}", {"mark": "notified"})
        assert status == 303 and location == f"{path}#i{item}"
    await site.at(12)
    w2 = await site.submit("W2", msg_type=MsgType.UPDATE,
                           references=(Reference(SENDER, "W1", "2026-07-01T00:00:00+00:00"),))
    return w1, w2, path, items


async def test_rehearsal_the_half_walked_list_and_its_link_survive_the_update(site):
    w1, w2, path, items = await _half_walked(site)
    status, _, html = await site.page(path)  # the link sent at 10 still opens the list, now of W2
    assert status == 200 and "已标记 2/3" in html and _item_ids(html) == items
    (cl,) = await site.rows(call_lists)
    req = (await site.rows(confirmations, confirmations.c.warning_id == w2))[0]
    assert (cl.warning_id, cl.confirmation_id, cl.completed_at) == (w2, req.id, None)
    (alarm,) = await site.rows(rungs, rungs.c.warning_id == w2, rungs.c.action == "alarm")
    assert (alarm.state, alarm.due_at) == ("pending", m(15))  # not 12 + 15 = 27
    await site.at(13)
    status, _, location, _ = await site.post(f"{path}/items/{items[2]}", {"mark": "notified"})
    assert status == 303 and location == f"{path}#i{items[2]}"  # accepted, not "warning ended"
    req = (await site.rows(confirmations, confirmations.c.warning_id == w2))[0]
    assert (req.state, req.covered_at) == ("covered", m(13))
    assert "已标记 3/3" in (await site.page(path))[2]
    await site.at(30)
    assert await site.rows(alarms) == []  # every door knocked on: no alarm, neither at 15 nor at 27
    report = await site.node.coverage.report(w2)
    (grid,) = report["grids"]
    assert grid["door_to_door"]["marked"] == grid["door_to_door"]["total"] == 3
    assert [(r["action"], r["state"]) for r in grid["rungs"]] == \
        [("notify", "fired"), ("door_to_door", "fired"), ("alarm", "skipped")]
    assert (await site.rows(warnings, warnings.c.id == w1))[0].state == "superseded"


async def test_rehearsal_the_alarm_does_not_move_later_when_the_walk_stalls(site):
    _, w2, path, items = await _half_walked(site)
    await site.at(14.9)
    assert await site.rows(alarms) == []
    await site.at(15)
    (alarm,) = await site.rows(alarms)
    assert (alarm.warning_id, alarm.at, alarm.code) == (w2, m(15), "escalation.red.unconfirmed")
    status, *_ = await site.post(f"{path}/items/{items[2]}", {"mark": "notified"})  # the walk goes on after it
    assert status == 303


# ---- the same rehearsal played by `warnd simulate` (real processes; slow) ---------------------------------

SCENARIO = Path(__file__).resolve().parents[1] / "docs" / "update-mid-walk.yaml"


@pytest.mark.slow
def test_simulated_update_mid_walk_keeps_the_walk_and_raises_no_alarm(tmp_path):
    code, report, stderr = simulate(tmp_path, SCENARIO.read_text(encoding="utf-8"))
    assert code == 0, stderr
    assert report["verdict"] == {"ok": True, "reasons": []} and report["lost"] == []
    (walk,) = report["door_to_door_walks"]  # one list, walked once, through one link, to the end
    assert (walk["outcome"], walk["marked"], walk["households"]) == ("done", 4, 4), walk
    first, update = sorted((w for w in report["warnings"] if w["chain"] == "rain"), key=lambda w: w["judged"])
    assert update["judged"] and not first["judged"]
    assert walk["started_at"] < update["issued_at_seconds"] < walk["finished_at"]  # it landed mid-walk
    grids = {g["grid"]: g for g in update["grids"]}
    walked, answered = grids["421126100201001"], grids["421126100201002"]
    assert walked["state"] == "covered" and walked["door_to_door"]["list_id"] == walk["list_id"]
    assert walked["door_to_door"]["marked"] == 4
    fired = [r.split("@")[0] for r in walked["rungs_fired"]]
    assert fired == ["red:notify", "red:door_to_door"]  # carried from the first version, not fired again
    assert all(float(r.split("@")[1]) < 12.5 * 60 for r in walked["rungs_fired"])
    assert answered["how"] == "carried from the earlier version"
    assert not any("alarm" in r for w in report["warnings"] for g in w["grids"] for r in g["rungs_fired"])


async def test_a_covered_grid_stays_covered_with_its_list_and_a_level_without_confirmation_ends_all(chain, node):
    w1 = await chain.issue()
    await chain.at(10)
    (cl,) = await chain.rows(call_lists, call_lists.c.grid == G1)
    for item in await chain.rows(call_list_items, call_list_items.c.list_id == cl.id):
        await CallListStore(node.db).mark(cl.id, item.id, "notified", m(11))
    assert (await chain.requirement(w1)).state == "covered"
    w2 = await chain.issue()
    kept = await chain.requirement(w2)
    assert (kept.state, kept.channel) == ("covered", "carried") and await chain.ladder(w2) == []
    (moved,) = await chain.rows(call_lists, call_lists.c.grid == G1)
    assert (moved.id, moved.warning_id, moved.confirmation_id, moved.completed_at) == (cl.id, w2, kept.id, m(11))
    blue = await chain.issue("Minor")  # blue asks nobody to confirm: every grid's ladder ends
    assert await chain.rows(confirmations, confirmations.c.warning_id == blue) == []
    assert {r.action: r.state for r in await chain.rows(rungs, rungs.c.warning_id == w2, rungs.c.grid == G2)} \
        == {"notify": "fired", "door_to_door": "fired", "alarm": "skipped"}
    await chain.at(60)
    assert await chain.rows(alarms) == []
