"""Aliyun SMS end to end: a red warning → warnd's dispatcher → the real Aliyun SDK → the
simulator (which checks the request's signature) → its SmsReport push to
/providers/aliyun_sms/reports → the delivery is delivered → the phone's reply "1" pushed
as SmsUp to /providers/aliyun_sms/replies → the grid's confirmation is confirmed. The
outside view (what the simulator received and pushed) is checked against warnd's rows."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from factories import NO_APPROVAL
from test_engine import until
from test_twilio_flow import XML, count, directory, free_port, live, phone

from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.sim.aliyun import AliyunSimulator, Phone
from warnd.store.migrate import upgrade
from warnd.store.schema import confirmations, deliveries, inbound

KEY, SECRET, SIGN = "LTAI5tEndToEndKeyId", "end-to-end-access-key-secret", "县预警中心"
TOKEN = "e2e-push-token-0123456789"
APPROVED = {"SMS_100": "${drill}${level}${event}预警：${area}，请立即组织防范。${confirm}"}
TEMPLATE = {"code": "SMS_100", "params": {"drill": "drill", "level": "level", "event": "event", "area": "area",
                                         "confirm": "confirm"}}


@pytest.fixture
async def county(tmp_path):
    """A node with two grid responsibles reached by Aliyun SMS, and the simulator: the
    first person replies "1" to the warning, the second never answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sim = AliyunSimulator(KEY, SECRET, sign_names=(SIGN,), templates=APPROVED, report_after=0.05,
                          report_url=f"{base}/providers/aliyun_sms/reports?token={TOKEN}",
                          up_url=f"{base}/providers/aliyun_sms/replies?token={TOKEN}",
                          phones={phone(0)[3:]: Phone(reply="1", reply_after=0.05)})
    endpoint = await sim.start()
    url = f"sqlite:///{tmp_path / 'aliyun.db'}"
    upgrade(url)
    config = load_config(
        None, database_url=url, public_base_url=base, port=port,
        aliyun_sms={"enabled": True, "access_key_id": KEY, "access_key_secret": SECRET, "sign_name": SIGN,
                    "endpoint": endpoint, "protocol": "http", "push_token": TOKEN,
                    "templates": {"warning": TEMPLATE}, "rate_per_second": 1000,
                    "retry": {"max_attempts": 5, "base_seconds": 0.05, "max_seconds": 0.2}},
        sms={"enabled": False}, voice={"enabled": False}, webhook={"enabled": False},
        dispatcher={"poll_seconds": 0.05},
        routing=[{"levels": ["red"], "channels": ["aliyun_sms"], "roles": ["grid_responsible"]}],
        approval=NO_APPROVAL)
    node = Node(config)
    await node.directory.import_data(directory(2))
    server = TestServer(build_app(node), host="127.0.0.1", port=port)
    await server.start_server()
    await node.start()
    yield node, sim, base
    await node.stop()
    await server.close()
    await sim.stop()


async def _at_least(value, n: int) -> bool:  # noqa: ANN001
    return (await value) >= n


async def test_send_report_and_reply_1_confirms(county):
    node, sim, base = county
    sim.fail("isv.BUSINESS_LIMIT_CONTROL")  # the first send meets flow control: retried, not lost
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _at_least(count(node, deliveries, deliveries.c.state == "delivered"), 2), timeout=30)
    await until(lambda: _at_least(count(node, confirmations, confirmations.c.state == "confirmed"), 1), timeout=30)
    await sim.wait_idle()

    # outside: each person got one SMS, from the approved template, asking for the reply
    assert sorted(m.phone for m in sim.messages) == [phone(0)[3:], phone(1)[3:]]
    assert sim.stats.injected == 1 and sim.stats.refused == 0 and sim.stats.pushes_failed == 0
    assert all(m.template_code == "SMS_100" and m.text.startswith("【县预警中心】红色暴雨预警")
               and m.params["confirm"].startswith("回复1确认") for m in sim.messages)
    async with node.db.read() as conn:
        rows = (await conn.execute(sa.select(deliveries).where(deliveries.c.channel == "aliyun_sms"))).all()
        confirmed = (await conn.execute(sa.select(confirmations).where(confirmations.c.state == "confirmed"))).all()
    # inside: the deliveries carry the BizIds the reports named, under the OutIds sent
    by_phone = {m.phone: m for m in sim.messages}
    for row in rows:
        record = by_phone[row.address[3:]]
        assert (row.state, row.provider_ref, row.last_code) == ("delivered", record.biz_id, "aliyun.delivered")
        assert record.out_id == f"{row.id}.{row.attempts}"
    assert [r.person_id for r in confirmed] == ["p0"]
    assert await count(node, inbound, inbound.c.outcome == "confirmed") == 1


async def test_a_replayed_or_unauthenticated_push_changes_nothing(county):
    node, sim, base = county
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _at_least(count(node, confirmations, confirmations.c.state == "confirmed"), 1), timeout=30)
    await sim.wait_idle()
    [(_, reply_push, _)] = [p for p in sim.pushes if p[0] == "replies"]
    before = await count(node, inbound)
    async with ClientSession() as http:
        async with http.post(f"{base}/providers/aliyun_sms/replies?token={TOKEN}", json=reply_push) as answer:
            assert answer.status == 200 and json.loads(await answer.text()) == {"code": 0, "msg": "成功"}
        for token in ("", "?token=wrong"):
            async with http.post(f"{base}/providers/aliyun_sms/replies{token}",
                                 json=[{**reply_push[0], "sequence_id": 999}]) as answer:
                assert answer.status == 403
        async with http.post(f"{base}/providers/aliyun_sms/reports?token={TOKEN}", data=b"{not json") as answer:
            assert answer.status == 400
    assert await count(node, inbound) == before  # the same sequence_id is applied once
    assert await count(node, confirmations, confirmations.c.state == "confirmed") == 1
