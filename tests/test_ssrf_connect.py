"""The SSRF guard at connect time (issue 10): the webhook channel connects only to
addresses the guard accepts, whatever the URL said when it was registered.
连接时的 SSRF 防护：无论注册时 URL 如何，只连接通过检查的地址。

Every target is on loopback. The one fake is `FakeDNS`, the DNS server at the
edge of the world; everything of warnd's is real, sockets included.
"""
from __future__ import annotations

import asyncio
import socket

import pytest
import sqlalchemy as sa
from aiohttp.abc import AbstractResolver, ResolveResult
from factories import COUNTY, GRIDS, NO_APPROVAL, TOWNSHIP, VILLAGE, alert

from warnd.config import WebhookConfig, load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Region, Subscriber
from warnd.domain.urlsafety import UnsafeAddress
from warnd.engine.node import Node
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.sim.webhook_sink import WebhookSink
from warnd.store.directory import DirectoryStore
from warnd.store.schema import deliveries
from warnd_channels import conformance as kit
from warnd_channels.base import Outcome, Recipient, SendResult
from warnd_channels.webhook import (UNSAFE_ADDRESS, GuardedConnector, GuardedResolver, WebhookChannel, classify,
                                    guarded_session, new_secret)

SECRET = new_secret()
PUBLIC = "93.184.216.34"  # only ever resolved, never connected to: the network reaches nothing
STRICT = WebhookConfig(allow_private_urls=False, timeout_seconds=1)
RELAXED = WebhookConfig(allow_private_urls=True, timeout_seconds=1)


class Trap:
    """A listening socket nobody accepts on.

    A TCP connection to it completes in the kernel and waits in the accept queue,
    so an empty queue right after a send proves nothing connected: no waiting.
    无人 accept 的监听套接字：发送后队列为空，即证明没有任何连接。
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def url(self, host: str | None = None, path: str = "/hook") -> str:
        host = host or self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}{path}"

    def connections(self) -> int:
        """How many connections arrived (and are taken off the queue)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


class FakeDNS(AbstractResolver):
    """A DNS server under the test's control: each lookup gives the next answer (the last repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = answers
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        answer = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [_result(host, ip, port) for ip in answer]

    async def close(self) -> None:
        pass


def _result(host: str, ip: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return {"hostname": host, "host": ip, "port": port, "family": family, "proto": 0, "flags": 0}


@pytest.fixture
def trap():
    t = Trap()
    yield t
    t.close()


@pytest.fixture
async def sink():
    s = WebhookSink(SECRET, keep_bodies=True)
    await s.start()
    yield s
    await s.stop()


async def send(config: WebhookConfig, url: str, dns: AbstractResolver | None = None) -> SendResult:
    """One delivery through a fresh channel (with the system DNS unless `dns` is given)."""
    factory = (lambda: guarded_session(config, dns)) if dns is not None else None
    channel = WebhookChannel(config, factory)
    message = kit.sample_message(Recipient("subscriber", "sub-1", url, format="json", secret=SECRET))
    try:
        return await channel.send(message, channel.render(message))
    finally:
        await channel.close()


def assert_refused(result: SendResult) -> None:
    kit.check_result(result, "refused")
    assert (result.outcome, result.code) == (Outcome.FAILED, UNSAFE_ADDRESS), result
    assert "refused to connect" in result.detail and "拒绝连接" in result.detail


# --- the resolver wrapper and the connector, with the DNS under control


async def test_rebinding_the_connector_is_given_only_the_public_answer():
    """DNS rebinding: public at first, loopback the next time. The second answer never gets through."""
    guarded = GuardedResolver(FakeDNS([PUBLIC], ["127.0.0.1"]), allow_private=False)
    assert [r["host"] for r in await guarded.resolve("rebind.example", 443)] == [PUBLIC]
    with pytest.raises(UnsafeAddress) as caught:
        await guarded.resolve("rebind.example", 443)
    assert (caught.value.host, caught.value.refused) == ("rebind.example", (("127.0.0.1", "loopback"),))


async def test_unsafe_addresses_are_dropped_from_a_mixed_answer():
    dns = FakeDNS([PUBLIC, "127.0.0.1", "::ffff:10.0.0.1", "169.254.169.254", "::1"])
    guarded = GuardedResolver(dns, allow_private=False)
    assert [r["host"] for r in await guarded.resolve("mixed.example", 443)] == [PUBLIC]


async def test_an_all_private_answer_is_the_stable_permanent_error():
    guarded = GuardedResolver(FakeDNS(["127.0.0.1", "::1", "10.0.0.1", "::ffff:127.0.0.1"]), allow_private=False)
    with pytest.raises(UnsafeAddress) as caught:
        await guarded.resolve("inside.example", 443)
    assert len(caught.value.refused) == 4
    result = classify(None, caught.value, {})
    assert (result.outcome, result.code, result.retry_after) == (Outcome.FAILED, UNSAFE_ADDRESS, None)


async def test_allow_private_lets_loopback_answers_through_but_never_metadata():
    guarded = GuardedResolver(FakeDNS(["127.0.0.1", "169.254.169.254"]), allow_private=True)
    assert [r["host"] for r in await guarded.resolve("demo.example", 80)] == ["127.0.0.1"]


async def test_the_dns_cache_cannot_bypass_the_guard():
    """aiohttp answers from its DNS cache without asking the resolver: the connector screens
    those answers too. (`_resolve_host` is the aiohttp method the guard hooks; this pins it.)"""
    dns = FakeDNS([PUBLIC, "127.0.0.1"], ["127.0.0.1"])
    connector = GuardedConnector(allow_private=False, dns=dns, ttl_dns_cache=300)
    try:
        for _ in range(3):  # one lookup, then cache hits: only ever the public address
            assert [r["host"] for r in await connector._resolve_host("rebind.example", 443)] == [PUBLIC]
        assert dns.lookups == 1
        connector.clear_dns_cache()
        with pytest.raises(UnsafeAddress):  # the rebound answer, looked up afresh
            await connector._resolve_host("rebind.example", 443)
        # An entry the resolver never screened, as if something had filled the cache around it:
        connector._cached_hosts.add(("poisoned.example", 443), [_result("poisoned.example", "127.0.0.1", 443)])
        with pytest.raises(UnsafeAddress):
            await connector._resolve_host("poisoned.example", 443)
    finally:
        await connector.close()


async def test_a_name_rebound_to_loopback_is_never_connected_to(trap):
    result = await send(STRICT, f"http://rebind.example:{trap.port}/hook", FakeDNS(["127.0.0.1"]))
    assert_refused(result)
    assert trap.connections() == 0


async def test_the_fake_dns_does_reach_a_loopback_sink_when_private_urls_are_allowed(sink):
    """The control for the test above: the same path delivers once the guard allows loopback."""
    port = sink.url().rsplit(":", 1)[1].split("/")[0]
    result = await send(RELAXED, f"http://rebind.example:{port}/sub", FakeDNS(["127.0.0.1"]))
    assert (result.outcome, result.code) == (Outcome.DELIVERED, "http.200")
    assert len(sink.received("/sub")) == 1


# --- literal addresses (aiohttp skips the resolver for them) and the system DNS


@pytest.mark.parametrize("host", ["127.0.0.1", "::ffff:127.0.0.1", "::ffff:7f00:1", "localhost", "0x7f000001"])
async def test_loopback_in_any_spelling_is_refused(trap, host):
    assert_refused(await send(STRICT, trap.url(host)))
    assert trap.connections() == 0


async def test_another_loopback_address_is_refused():
    trap = Trap("127.0.0.2")
    try:
        assert_refused(await send(STRICT, trap.url()))
        assert trap.connections() == 0
    finally:
        trap.close()


async def test_ipv6_loopback_is_refused():
    try:
        trap = Trap("::1")
    except OSError as exc:  # a host without IPv6
        pytest.skip(f"cannot listen on ::1: {exc}")
    try:
        assert_refused(await send(STRICT, trap.url()))
        assert trap.connections() == 0
    finally:
        trap.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::ffff:127.0.0.1"])
async def test_with_allow_private_urls_a_loopback_sink_still_receives(sink, host):
    port = sink.url().rsplit(":", 1)[1].split("/")[0]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/sub"
    result = await send(RELAXED, url)
    assert (result.outcome, result.code) == (Outcome.DELIVERED, "http.200")
    assert len(sink.received("/sub")) == 1


# --- end to end: a subscriber stored by an older, more permissive node


async def until_sent(node: Node, recipient_id: str, timeout: float = 15.0):  # noqa: ANN201
    """The delivery's row once its first attempt is recorded: a bounded wait for a condition."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with node.db.read() as conn:
            row = (await conn.execute(sa.select(deliveries)
                                      .where(deliveries.c.recipient_id == recipient_id))).first()
        if row is not None and row.attempts >= 1 and row.state != "sending":
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"the delivery to {recipient_id} was not attempted in {timeout}s")


def _directory(*subs: Subscriber) -> DirectoryData:
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(GRIDS[0], "一组", "grid", VILLAGE)),
        subscribers=subs)


async def test_a_subscriber_stored_while_private_urls_were_allowed_is_never_connected_to(database, clock, trap):
    # Stored the way a node running with `allow_private_urls: true` stored it …
    await DirectoryStore(database, clock, allow_private_urls=True).import_data(
        _directory(Subscriber("old", trap.url(), SECRET)))
    # … and sent by a node restarted with `allow_private_urls: false`.
    config = load_config(None, database_url=database.url, approval=NO_APPROVAL, dispatcher={"poll_seconds": 0.05},
                         webhook={"allow_private_urls": False, "timeout_seconds": 1.0,
                                  "retry": {"max_attempts": 4, "base_seconds": 1, "max_seconds": 60}})
    node = Node(config, clock=clock)
    await node.start()
    try:
        await node.intake.submit(alert_to_xml(alert()).encode(), "application/cap+xml", admin_scope())
        row = await until_sent(node, "old")
    finally:
        await node.stop()
    assert (row.state, row.attempts, row.last_code) == ("failed", 1, UNSAFE_ADDRESS)  # permanent: no retry
    assert "loopback" in row.last_detail and "回环地址" in row.last_detail
    assert trap.connections() == 0
