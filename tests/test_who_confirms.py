"""Who confirms what (issue 11): a reply, a key press or a link confirms what its sender was
asked — their own grid as its responsible person (A角), or the grids a rung of the ladder
asked them about (the backup, B角; the township duty officer). A backup's answer to the
first wave confirms nothing they were not asked, unless it names the grid or
`confirmation.backups_confirm_first_wave` says so. The record says who confirmed for whom
and how; drills say 演练 / EXERCISE in each recipient's language.

Real databases (SQLite and PostgreSQL), the real engine on a manual clock, real HTTP for
the key-press answer; no mocks.
"""
from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from factories import COUNTY, NO_APPROVAL, T0, TOWNSHIP, VILLAGE, alert
from twilio.request_validator import RequestValidator

from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.confirmation import Kind
from warnd.domain.directory import Household, Person, Region
from warnd.domain.model import MsgType, Reference, Status
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.sim.twilio_api import parse_twiml
from warnd.store.schema import confirmations, deliveries, inbound, rungs
from warnd_channels.twilio_common import speech_for

XML = "application/cap+xml"
TOKEN = "who-confirms-token"
G1, G2, G3 = (f"{VILLAGE}00{i}" for i in (1, 2, 3))
A1, A2, A3, HEAD, DUTY = "+8613800000001", "+8613800000002", "+8613800000003", "+8613800000100", "+8613800000009"


def directory() -> DirectoryData:
    """Three grids. The village head backs up 一组 and 二组; 李四, A角 of 二组, backs up his
    neighbour's 三组 (whose A角 reads English); the township duty officer is asked at 5 min."""
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(G1, "一组", "grid", VILLAGE),
                 Region(G2, "二组", "grid", VILLAGE), Region(G3, "三组", "grid", VILLAGE)),
        people=(Person("a1", "张三", G1, ("grid_responsible",), A1, backup="head"),
                Person("a2", "李四", G2, ("grid_responsible",), A2, backup="head"),
                Person("a3", "Wang Wu", G3, ("grid_responsible",), A3, "en", backup="a2"),
                Person("head", "村主任", VILLAGE, ("village_head",), HEAD),
                Person("duty", "镇值班员", TOWNSHIP, ("township_duty",), DUTY)),
        households=(Household("h1", G1, "河口村一组1号", None),))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def make(database, clock):
    """make(**config) → a started node (nothing dispatched: the rows are what is asserted)."""
    made: list[Node] = []

    async def start(port: int = 8080, **extra) -> Node:  # noqa: ANN003
        config = load_config(None, database_url=database.url, node_id=f"n{len(made)}", port=port,
                             public_base_url=f"http://127.0.0.1:{port}",
                             twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9",
                                     "auth_token": TOKEN},
                             sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                             # the first wave reaches the A角 and the village head (B角 of two grids)
                             routing=[{"levels": ["red"], "channels": ["sms", "voice"],
                                       "roles": ["grid_responsible", "village_head"]}],
                             approval=NO_APPROVAL, **extra)
        node = Node(config, clock=clock)
        if not made:
            await node.directory.import_data(directory())
        await node.start(dispatch=False)
        made.append(node)
        return node

    yield start
    for node in made:
        await node.stop()


async def submit(node: Node, identifier: str = "W1", **kw) -> int:  # noqa: ANN003
    xml = alert_to_xml(alert(identifier, codes=(VILLAGE,), **kw)).encode()
    return (await node.intake.submit(xml, XML, admin_scope()))[0].warning_id


async def rows(node: Node, table, *where) -> list:  # noqa: ANN001
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(table).where(*where).order_by(table.c.id))).all()


async def grids(node: Node, wid: int) -> dict[str, tuple]:
    """grid → (state, confirmed_by, channel)."""
    return {r.grid: (r.state, r.confirmed_by, r.channel)
            for r in await rows(node, confirmations, confirmations.c.warning_id == wid)}


async def at(node: Node, clock, minutes: float) -> None:  # noqa: ANN001
    clock.set(T0 + timedelta(minutes=minutes))
    await node.escalate()


async def call_to(node: Node, person: str, purpose: str = "warning", grid: str | None = None) -> int:
    d = deliveries.c
    where = [d.channel == "voice", d.recipient_id == person, d.purpose == purpose]
    (row,) = await rows(node, deliveries, *where, *([d.grid == grid] if grid else []))
    return row.id


OPEN = ("open", None, None)


async def test_a_backups_reply_to_the_first_wave_confirms_no_grid_it_was_not_asked_about(make):
    node = await make()
    wid = await submit(node)
    answer = await node.answers.sms_reply(HEAD, "1", "SM1")
    assert answer.decision.kind is Kind.NOT_ASKED and "网格责任人确认" in answer.text
    # the neighbour's "收到" is his own grid's, not the grid he backs up
    assert (await node.answers.sms_reply(A2, "收到", "SM2")).decision.kind is Kind.CONFIRM
    assert await grids(node, wid) == {G1: OPEN, G2: ("confirmed", "a2", "sms"), G3: OPEN}
    outcomes = {r.provider_ref: (r.outcome, r.person_id) for r in await rows(node, inbound)}
    assert outcomes == {"SM1": ("not_asked", "head"), "SM2": ("confirmed", "a2")}  # both shown, as they were


async def test_silent_grids_go_on_the_not_woken_list_and_then_whoever_the_rung_asked_confirms(make, clock):
    node = await make()
    wid = await submit(node)
    await node.answers.sms_reply(HEAD, "收到", "SM1")  # the first wave: asked for nothing yet
    await node.answers.sms_reply(A2, "1", "SM2")
    await at(node, clock, 5)  # the rung asks the backups and the township duty officer
    not_woken = {r.grid for r in await rows(node, confirmations, confirmations.c.not_woken_at.is_not(None))}
    assert not_woken == {G1, G3}  # 未叫醒: nobody confirmed them for their silent A角
    asked = await node.answers.sms_reply(HEAD, "1", "SM3")
    assert asked.decision.kind is Kind.CONFIRM and "代河口村一组确认" in asked.text
    assert (await node.answers.sms_reply(A2, "收到", "SM4")).decision.kind is Kind.CONFIRM  # asked for 三组 now
    assert await grids(node, wid) == {G1: ("confirmed", "head", "sms"), G2: ("confirmed", "a2", "sms"),
                                      G3: ("confirmed", "a2", "sms")}
    report = {g["grid"]: g for g in (await node.coverage.report(wid))["grids"]}
    # who confirmed for whom, and how: the report says it
    assert [(report[g]["person_id"], report[g]["confirmed_by"], report[g]["channel"]) for g in (G1, G3)] == [
        ("a1", "head", "sms"), ("a3", "a2", "sms")]
    ladder = {r.step: r.state for r in await rows(node, rungs, rungs.c.grid == G1)}
    assert ladder == {0: "fired", 1: "skipped", 2: "skipped"}  # the rest of the ladder stops


async def test_a_backup_confirms_a_grid_by_naming_it(make):
    node = await make()
    wid = await submit(node)
    named = await node.answers.sms_reply(HEAD, "收到，一组已通知", "SM1")
    assert named.decision.kind is Kind.CONFIRM
    assert await grids(node, wid) == {G1: ("confirmed", "head", "sms"), G2: OPEN, G3: OPEN}
    await node.answers.sms_reply(HEAD, f"{G2} 收到", "SM2")  # the grid's code names it too
    assert (await grids(node, wid))[G2] == ("confirmed", "head", "sms")


async def test_configuration_can_let_backups_confirm_from_the_first_wave(make):
    node = await make(confirmation={"backups_confirm_first_wave": True})
    wid = await submit(node)
    await node.answers.sms_reply(HEAD, "1", "SM1")
    assert await grids(node, wid) == {G1: ("confirmed", "head", "sms"), G2: ("confirmed", "head", "sms"),
                                      G3: OPEN}


async def test_the_township_duty_officer_confirms_the_grids_the_rung_asked_about(make, clock):
    node = await make()
    wid = await submit(node)
    assert (await node.answers.sms_reply(DUTY, "1", "SM1")).decision.kind is Kind.NOTHING_OPEN  # not asked yet
    await at(node, clock, 5)
    await node.answers.sms_reply(DUTY, "一组已通知", "SM2")  # one grid named: that one only
    assert await grids(node, wid) == {G1: ("confirmed", "duty", "sms"), G2: OPEN, G3: OPEN}
    await node.answers.sms_reply(DUTY, "收到", "SM3")
    assert await grids(node, wid) == {G1: ("confirmed", "duty", "sms"), G2: ("confirmed", "duty", "sms"),
                                      G3: ("confirmed", "duty", "sms")}


async def test_a_key_press_confirms_what_the_call_asked(make, clock):
    node = await make()
    wid = await submit(node)
    first = await node.answers.key_press(await call_to(node, "head"), "1", HEAD, "CA1")
    assert first.kind is Kind.NOT_ASKED and not first.confirmed  # the head's own first-wave call
    own = await node.answers.key_press(await call_to(node, "a2"), "1", A2, "CA2")
    assert own.confirmed  # the neighbour's key press on his own call: his grid, not the one he backs up
    assert await grids(node, wid) == {G1: OPEN, G2: ("confirmed", "a2", "voice"), G3: OPEN}
    await at(node, clock, 5)
    asked = await node.answers.key_press(await call_to(node, "head", "door_ask", G1), "1", HEAD, "CA3")
    assert asked.confirmed and asked.text == "已确认收到预警，谢谢。"
    assert await grids(node, wid) == {G1: ("confirmed", "head", "voice"), G2: ("confirmed", "a2", "voice"),
                                      G3: OPEN}
    other = await node.answers.key_press(await call_to(node, "a3"), "2", A3, "CA4")
    assert other.kind is Kind.NOT_A_CONFIRMATION and other.text.startswith("Not confirmed")  # in English
    by_ref = {r.provider_ref: r.outcome for r in await rows(node, inbound)}
    assert by_ref == {"CA1": "not_asked", "CA2": "confirmed", "CA3": "confirmed", "CA4": "ignored"}


async def test_a_reply_applied_late_answers_what_its_sender_was_asked_when_they_sent_it(make, clock):
    node = await make()
    wid = await submit(node)
    await at(node, clock, 6)  # the rung asked the head at 5 min
    late = await node.answers.sms_reply(HEAD, "1", "SM1", received_at=T0 + timedelta(minutes=4))
    assert late.decision.kind is Kind.NOT_ASKED
    assert (await grids(node, wid))[G1] == OPEN
    now = await node.answers.sms_reply(HEAD, "1", "SM2")
    assert now.decision.kind is Kind.CONFIRM and (await grids(node, wid))[G1] == ("confirmed", "head", "sms")


async def test_a_link_tap_confirms_what_its_person_was_asked(make, clock):
    node = await make()
    wid = await submit(node)
    assert await node.answers.open_for("head", wid) == []  # what the confirmation page offers the head
    assert await node.answers.link_confirm(wid, "head") == 0
    await at(node, clock, 5)
    assert [i.grid for i in await node.answers.open_for("head", wid)] == [G1, G2]
    assert await node.answers.link_confirm(wid, "head") == 2
    assert {g: v[1:] for g, v in (await grids(node, wid)).items()} == {
        G1: ("head", "link"), G2: ("head", "link"), G3: (None, None)}


async def test_an_ask_under_the_first_version_holds_for_its_update(make, clock):
    node = await make()
    await submit(node)
    await at(node, clock, 6)
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    update = await submit(node, "W1-u", msg_type=MsgType.UPDATE, references=ref)
    assert (await node.answers.sms_reply(HEAD, "1", "SM1")).decision.kind is Kind.CONFIRM
    assert {g: v[:2] for g, v in (await grids(node, update)).items()} == {
        G1: ("confirmed", "head"), G2: ("confirmed", "head"), G3: ("open", None)}


async def test_drill_answers_say_so_in_each_recipients_language(make):
    port = free_port()
    node = await make(port=port)
    wid = await submit(node, status=Status.EXERCISE)
    zh = await node.answers.sms_reply(A1, "1", "SM1")
    en = await node.answers.sms_reply(A3, "what is this?", "SM2")
    assert zh.text.startswith("【演练】已确认收到") and "（演练）" in zh.text
    assert en.text.startswith("[EXERCISE]") and en.decision.kind is Kind.QUESTION
    server = TestServer(build_app(node), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        said = {}
        for person, number, sid in (("a2", A2, "CA1"), ("a3", A3, "CA2")):
            url = node.callback_url("voice-gather", await call_to(node, person))
            form = {"CallSid": sid, "Digits": "1", "To": number, "From": "+15005550006"}
            signature = RequestValidator(TOKEN).compute_signature(url, form)
            async with ClientSession() as http, http.post(url, data=form,
                                                          headers={"X-Twilio-Signature": signature}) as resp:
                assert resp.status == 200
                (say,) = parse_twiml(await resp.text()).says
                said[person] = (say.text, say.language)
    finally:
        await server.close()
    voice = {lang: speech_for(lang, node.config.voice.tts).language for lang in ("zh-CN", "en")}
    assert said == {"a2": ("演练。已确认收到预警，谢谢。本次为演练。", voice["zh-CN"]),
                    "a3": ("Exercise. Your confirmation is recorded. Thank you. This is an exercise.", voice["en"])}
    assert {g: v[0] for g, v in (await grids(node, wid)).items()} == {G1: "confirmed", G2: "confirmed",
                                                                     G3: "confirmed"}


@pytest.mark.parametrize("first_wave", [False, True])
async def test_only_who_may_confirm_is_asked_to_reply_1(make, clock, first_wave):
    """The SMS says 回复1确认 (and carries the link) to whoever's 1 would count: the A角
    always; the backup only in a rung's send, or from the first wave when config says so."""
    node = await make(confirmation={"backups_confirm_first_wave": first_wave})
    await submit(node)
    first = {r.recipient_id: r.must_confirm for r in await node.deliveries.claim("sms", 100, 60)}
    assert first == {"a1": True, "a2": True, "a3": True, "head": first_wave}
    await at(node, clock, 5)  # the rung asks the backups and the township duty officer
    asked = {(r.recipient_id, r.must_confirm) for r in await node.deliveries.claim("sms", 100, 60)
             if r.recipient_id in ("head", "duty")}
    assert asked == {("head", True), ("duty", True)}


async def test_a_key_press_on_a_call_of_before_an_update_confirms_the_update_unless_it_raised_the_level(make, clock):
    node = await make()
    first = await submit(node)
    first_call = await call_to(node, "a1")
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    update = await submit(node, "W1-u", msg_type=MsgType.UPDATE, references=ref)  # red again
    assert (await node.answers.key_press(first_call, "1", A1, "CA1")).kind is Kind.CONFIRM
    assert (await grids(node, update))[G1][:2] == ("confirmed", "a1")
    assert await node.answers.store.answered_version(first) == update
    # an orange warning raised to red: an answer to the orange one never told of red
    orange = await submit(node, "O1", severity="Severe")
    ref = (Reference("dept@example.cn", "O1", "2026-07-01T00:00:00+00:00"),)
    await submit(node, "O1-u", msg_type=MsgType.UPDATE, references=ref)
    assert await node.answers.store.answered_version(orange) == orange
