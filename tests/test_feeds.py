"""The feed poller against a local feed server: a real Node on a real database (SQLite and
PostgreSQL), real HTTP, real XML signatures. The clock is manual, so backoff and alarms are
decided by moving it, not by sleeping. Index parsing is also checked, purely, on the corpus."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, GRIDS, NO_APPROVAL, SENDER, TOWNSHIP, VILLAGE, alert
from lxml import etree

from warnd.config import FeedConfig, load_config
from warnd.domain.authority import Role, Scope
from warnd.domain.directory import Region
from warnd.domain.errors import WarndError
from warnd.domain.model import Level, MsgType, Reference
from warnd.engine.node import Node
from warnd.feeds.fetch import Validators, backoff_seconds
from warnd.feeds.index import parse_index
from warnd.feeds.poller import feed_scope
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.store.schema import alarms, feed_entries, feed_status, warnings

INTERVAL = 60.0


# --- a feed server -------------------------------------------------------------------------

@dataclass
class Served:
    body: bytes
    content_type: str = "application/atom+xml"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class FeedServer:
    """Serves whatever a test puts in `paths`; honours If-None-Match; records every request."""

    def __init__(self) -> None:
        self.paths: dict[str, Served] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.chunked: set[str] = set()  # answered without Content-Length
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers)))
        served = self.paths.get(request.path)
        if served is None:
            return web.Response(status=404)
        etag = served.headers.get("ETag")
        if served.status == 200 and etag and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        if request.path in self.chunked:
            response = web.StreamResponse(status=served.status, headers=served.headers)
            response.content_type = served.content_type
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(served.body), 1024):
                await response.write(served.body[start:start + 1024])
            await response.write_eof()
            return response
        return web.Response(body=served.body, status=served.status, headers=served.headers,
                            content_type=served.content_type)


@pytest.fixture
async def server():
    s = FeedServer()
    await s.start()
    yield s
    await s.stop()


def atom(*entries: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            '<id>urn:test:feed</id><title>县气象局预警</title><updated>2026-07-01T00:00:00Z</updated>'
            + "".join(entries) + "</feed>").encode()


def linked(ident: str, href: str, updated: str = "2026-07-01T00:00:00Z") -> str:
    return (f"<entry><id>urn:test:{ident}</id><title>{ident}</title><updated>{updated}</updated>"
            f'<link rel="alternate" type="application/cap+xml" href="{href}"/></entry>')


def embedded(ident: str, cap: bytes) -> str:
    body = cap.decode().split("?>", 1)[1]  # without its XML declaration
    return (f"<entry><id>urn:test:{ident}</id><title>{ident}</title><updated>2026-07-01T00:00:00Z</updated>"
            f'<content type="text/xml">{body}</content></entry>')


def cap(identifier: str, **kw) -> bytes:  # noqa: ANN003
    return alert_to_xml(alert(identifier, **kw)).encode()


# --- a node with a directory ---------------------------------------------------------------

@pytest.fixture
async def make_node(database, clock):
    nodes = []

    async def make(*feeds: dict, **overrides) -> Node:  # noqa: ANN003
        config = load_config(None, database_url=database.url, approval=overrides.pop("approval", NO_APPROVAL),
                             feeds=[{"department": "县气象局", "senders": [SENDER], "interval_seconds": INTERVAL,
                                     **f} for f in feeds], **overrides)
        node = Node(config, clock=clock)
        if not nodes:
            await node.directory.import_data(DirectoryData(regions=(
                Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(GRIDS[0], "一组", "grid", VILLAGE))))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.db.close()


async def rows(node: Node, table: sa.Table, *where) -> list:  # noqa: ANN002
    async with node.db.read() as conn:
        return list(await conn.execute(sa.select(table).where(*where).order_by(*table.primary_key.columns)))


async def warning_states(node: Node) -> dict[str, str]:
    return {r.identifier: r.state for r in await rows(node, warnings)}


# --- applying ------------------------------------------------------------------------------

async def test_a_new_entry_is_applied_once_across_polls_and_restarts(make_node, server, clock):
    server.paths["/feed.atom"] = Served(atom(linked("W1", server.url("/cap/W1.xml"))))
    server.paths["/cap/W1.xml"] = Served(cap("W1"), "application/cap+xml")
    feed = {"name": "met", "url": server.url("/feed.atom")}
    node = await make_node(feed)
    assert await node.feeds.poll("met") == "ok"
    clock.advance(INTERVAL)
    assert await node.feeds.poll("met") == "ok"
    again = await make_node(feed)  # a restart, or another node on the same database
    clock.advance(INTERVAL)
    assert await again.feeds.poll("met") == "ok"
    assert await warning_states(node) == {"W1": "active"}
    assert len(server.hits("/cap/W1.xml")) == 1  # fetched once, applied once
    (entry,) = await rows(node, feed_entries)
    assert (entry.sender, entry.identifier, entry.code, entry.ref) == (SENDER, "W1", None, "urn:test:W1")
    (status,) = await rows(node, feed_status)
    assert status.last_new_alert_at == clock.now() - timedelta(seconds=2 * INTERVAL)
    assert status.last_success_at == clock.now() and status.consecutive_failures == 0
    assert node.metrics.registry.get_sample_value("warnd_feed_alerts_total", {"feed": "met"}) == 1


async def test_the_same_cap_in_a_changed_entry_or_another_feed_is_not_applied_again(make_node, server, clock):
    server.paths["/a.atom"] = Served(atom(embedded("W1", cap("W1"))))
    server.paths["/b.atom"] = Served(atom(embedded("W1-copy", cap("W1"))))
    node = await make_node({"name": "a", "url": server.url("/a.atom")}, {"name": "b", "url": server.url("/b.atom")})
    assert await node.feeds.poll("a") == "ok"
    assert await node.feeds.poll("b") == "ok"
    assert await warning_states(node) == {"W1": "active"}
    assert [r.code for r in await rows(node, feed_entries)] == [None, "duplicate"]


async def test_304_answers_are_honoured_and_nothing_is_applied_again(make_node, server, clock):
    server.paths["/feed.atom"] = Served(atom(embedded("W1", cap("W1"))),
                                        headers={"ETag": '"v1"', "Last-Modified": "Wed, 01 Jul 2026 00:00:00 GMT"})
    node = await make_node({"name": "met", "url": server.url("/feed.atom")})
    assert await node.feeds.poll("met") == "ok"
    clock.advance(INTERVAL)
    assert await node.feeds.poll("met") == "not_modified"
    first, second = server.hits("/feed.atom")
    assert "If-None-Match" not in first and "If-Modified-Since" not in first
    assert second["If-None-Match"] == '"v1"'
    assert second["If-Modified-Since"] == "Wed, 01 Jul 2026 00:00:00 GMT"
    assert await warning_states(node) == {"W1": "active"}
    (status,) = await rows(node, feed_status)
    assert (status.etag, status.last_success_at) == ('"v1"', clock.now())
    assert node.metrics.registry.get_sample_value("warnd_feed_polls_total",
                                                  {"feed": "met", "result": "not_modified"}) == 1


def test_validators_keep_the_newest_of_each():
    known = Validators('"v1"', "Wed, 01 Jul 2026 00:00:00 GMT")
    assert known.merged({"ETag": '"v2"'}) == Validators('"v2"', "Wed, 01 Jul 2026 00:00:00 GMT")
    assert known.merged({"Last-Modified": "Thu, 02 Jul 2026 00:00:00 GMT"}) == \
        Validators('"v1"', "Thu, 02 Jul 2026 00:00:00 GMT")
    assert known.merged({}) == known
    assert Validators().request_headers() == {}


async def test_an_update_and_a_cancel_in_the_feed_are_applied(make_node, server, clock):
    server.paths["/feed.atom"] = Served(atom(embedded("W1", cap("W1"))))
    node = await make_node({"name": "met", "url": server.url("/feed.atom")})
    await node.feeds.poll("met")
    w1 = (Reference(SENDER, "W1", "2026-07-01T00:00:00+00:00"),)
    w2 = (Reference(SENDER, "W2", "2026-07-01T00:10:00+00:00"),)
    t = datetime(2026, 7, 1, 0, 10, tzinfo=timezone.utc)
    server.paths["/feed.atom"] = Served(atom(embedded("W1", cap("W1")),
                                             embedded("W2", cap("W2", msg_type=MsgType.UPDATE, references=w1, sent=t))))
    clock.advance(INTERVAL)
    await node.feeds.poll("met")
    assert await warning_states(node) == {"W1": "superseded", "W2": "active"}
    server.paths["/feed.atom"] = Served(atom(embedded("W3", cap("W3", msg_type=MsgType.CANCEL, references=w2,
                                                               sent=t + timedelta(minutes=5)))))
    clock.advance(INTERVAL)
    await node.feeds.poll("met")
    # as through the API: the cancelled warning is cancelled, the Cancel itself goes out to those who had it
    assert await warning_states(node) == {"W1": "superseded", "W2": "cancelled", "W3": "active"}
    assert node.metrics.registry.get_sample_value("warnd_feed_alerts_total", {"feed": "met"}) == 3


async def test_a_malformed_entry_is_refused_with_the_api_code_and_the_rest_is_applied(make_node, server):
    not_cap = b'<?xml version="1.0"?><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>X</identifier>'
    schema_bad = cap("W2").replace(b"<status>Actual</status>", b"<status>Sometimes</status>")
    server.paths["/feed.atom"] = Served(atom(linked("X", server.url("/cap/broken.xml")), embedded("W2", schema_bad),
                                             linked("W1", server.url("/cap/W1.xml")),
                                             linked("W4", "http://elsewhere.example/cap/W4.xml"),
                                             embedded("W5", cap("W5", codes=("110101",)))))
    server.paths["/cap/broken.xml"] = Served(not_cap, "application/cap+xml")
    server.paths["/cap/W1.xml"] = Served(cap("W1"), "application/cap+xml")
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "regions": [COUNTY]})
    assert await node.feeds.poll("met") == "ok"  # the feed itself was read: a successful poll
    assert await warning_states(node) == {"W1": "active"}
    codes = {r.ref: r.code for r in await rows(node, feed_entries)}
    assert codes == {"urn:test:X": "cap.not_xml", "urn:test:W2": "cap.schema", "urn:test:W1": None,
                     "urn:test:W4": "feed.link_refused", "urn:test:W5": "auth.region_out_of_scope"}
    assert node.metrics.registry.get_sample_value("warnd_feed_entries_refused_total",
                                                  {"feed": "met", "code": "cap.schema"}) == 1
    (status,) = await rows(node, feed_status)
    assert status.consecutive_failures == 0 and status.last_error_code is not None


async def test_the_feed_acts_with_its_departments_authority(make_node, server):
    server.paths["/feed.atom"] = Served(atom(embedded("W1", cap("W1")), embedded("W2", cap("W2", event="地震"))))
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "events": ["暴雨"], "max_level": "red"},
                           approval={"levels": {"red": 1, "orange": 1, "yellow": 0, "blue": 0}})
    scope = feed_scope(node.config.feeds[0])
    assert (scope.role, scope.department, scope.senders, scope.supersede) == (Role.DEPARTMENT, "县气象局",
                                                                              (SENDER,), False)
    await node.feeds.poll("met")
    assert await warning_states(node) == {"W1": "awaiting"}  # the department's approval policy holds it
    codes = {r.ref: r.code for r in await rows(node, feed_entries)}
    assert codes["urn:test:W2"] == "auth.event_out_of_scope"
    (w1,) = await rows(node, warnings)
    assert w1.department == "县气象局"


# --- limits, failures, alarms --------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_feed_is_refused_without_being_read_whole(make_node, server, chunked):
    big = atom(*(linked(f"W{i}", server.url(f"/cap/W{i}.xml")) for i in range(200)))
    assert len(big) > 20_000
    server.paths["/feed.atom"] = Served(big)
    if chunked:
        server.chunked.add("/feed.atom")
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "max_index_bytes": 4096})
    assert await node.feeds.poll("met") == "feed.too_large"
    assert await warning_states(node) == {}
    assert not [p for p, _ in server.requests if p.startswith("/cap/")]
    (status,) = await rows(node, feed_status)
    assert (status.last_error_code, status.consecutive_failures) == ("feed.too_large", 1)


async def test_an_oversized_message_is_refused_and_recorded(make_node, server):
    server.paths["/feed.atom"] = Served(atom(linked("W1", server.url("/cap/W1.xml"))))
    server.paths["/cap/W1.xml"] = Served(cap("W1") + b" " * 5000, "application/cap+xml")
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "max_message_bytes": 2048})
    assert await node.feeds.poll("met") == "ok"
    (entry,) = await rows(node, feed_entries)
    assert entry.code == "feed.too_large"


async def test_a_feed_that_goes_down_backs_off_and_raises_the_alarm_once(make_node, server, clock):
    server.paths["/feed.atom"] = Served(b"busy", "text/plain", 503, {"Retry-After": "300"})
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "alarm_after_polls": 3,
                            "backoff_max_seconds": 600})
    results = []
    for _ in range(30):  # the job fires every interval; the feed is asked only when its backoff allows
        results.append(await node.feeds.poll("met"))
        clock.advance(INTERVAL)
    asked = [r for r in results if r != "skipped"]
    assert asked[:3] == ["feed.http_status"] * 3
    assert len(server.hits("/feed.atom")) == len(asked) < 10  # Retry-After: 300 s between tries
    (alarm,) = await rows(node, alarms)
    assert alarm.code == "feed.down" and alarm.detail["feed"] == "met" and alarm.acknowledged_at is None
    assert node.metrics.registry.get_sample_value("warnd_operator_alarms_total", {"code": "feed.down"}) == 1
    server.paths["/feed.atom"] = Served(atom())
    clock.advance(3600)
    assert await node.feeds.poll("met") == "ok"
    (status,) = await rows(node, feed_status)
    assert status.alarmed_at is None and status.consecutive_failures == 0
    (alarm,) = await rows(node, alarms)
    assert alarm.acknowledged_at == clock.now()  # cleared when it recovered


async def test_a_feed_unreachable_is_a_failure(make_node, server, clock):
    node = await make_node({"name": "met", "url": "http://127.0.0.1:9/feed.atom", "alarm_after_polls": 1})
    assert await node.feeds.poll("met") == "feed.unreachable"
    assert len(await rows(node, alarms)) == 1


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after():
    assert [backoff_seconds(n, 60, 600) for n in range(0, 7)] == [60, 60, 120, 240, 480, 600, 600]
    assert backoff_seconds(1, 60, 600, retry_after=900) == 900
    assert backoff_seconds(5, 60, 600, retry_after=30) == 600


# --- signatures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def make(cn: str):  # noqa: ANN202
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.now(timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()), cert.public_bytes(serialization.Encoding.PEM))

    trusted, stranger = make("县气象局 CAP"), make("someone else")
    path = tmp_path_factory.mktemp("certs") / "trusted.pem"
    path.write_bytes(trusted[1])
    return {"trusted": trusted, "stranger": stranger, "path": str(path)}


def signed(document: bytes, key_and_cert: tuple[bytes, bytes]) -> bytes:
    from signxml import XMLSigner
    root = etree.fromstring(document)
    out = XMLSigner().sign(root, key=key_and_cert[0], cert=key_and_cert[1].decode())
    return etree.tostring(out, xml_declaration=True, encoding="UTF-8")


async def test_a_signed_feed_refuses_a_bad_or_missing_signature(make_node, server, signing):
    good = signed(cap("W1"), signing["trusted"])
    tampered = signed(cap("W2"), signing["trusted"]).replace("转移到安全地带".encode(), "无需转移".encode())
    stranger = signed(cap("W3"), signing["stranger"])
    for name, body in (("W1", good), ("W2", tampered), ("W3", stranger), ("W4", cap("W4"))):
        server.paths[f"/cap/{name}.xml"] = Served(body, "application/cap+xml")
    names = ("W1", "W2", "W3", "W4")
    server.paths["/feed.atom"] = Served(atom(*(linked(n, server.url(f"/cap/{n}.xml")) for n in names)))
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "signed": True,
                            "trusted_certs": [signing["path"]]})
    assert await node.feeds.poll("met") == "ok"
    assert await warning_states(node) == {"W1": "active"}
    codes = {r.ref: r.code for r in await rows(node, feed_entries)}
    assert codes == {"urn:test:W1": None, "urn:test:W2": "feed.bad_signature",
                     "urn:test:W3": "feed.bad_signature", "urn:test:W4": "feed.bad_signature"}


def test_a_signed_feed_needs_readable_trusted_certificates(tmp_path):
    with pytest.raises(ValueError, match="trusted_certs"):
        FeedConfig(name="met", url="https://example.cn/feed.atom", department="d", senders=["s"], signed=True)
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="trusted certificate"):
        FeedConfig(name="met", url="https://example.cn/feed.atom", department="d", senders=["s"], signed=True,
                   trusted_certs=[str(tmp_path / "bad.pem")])
    with pytest.raises(ValueError, match="bearer_token"):
        FeedConfig(name="met", url="https://example.cn/feed.atom", department="d", senders=["s"],
                   headers={"Authorization": "Bearer x"})


def test_feed_names_are_unique():
    feed = {"name": "met", "url": "https://example.cn/feed.atom", "department": "d", "senders": ["s"]}
    with pytest.raises(WarndError, match="unique"):
        load_config(None, feeds=[feed, {**feed, "url": "https://example.cn/other.atom"}])


async def test_credentials_go_to_the_feed_host_only(make_node, server):
    server.paths["/feed.atom"] = Served(atom(linked("W1", server.url("/cap/W1.xml"))))
    server.paths["/cap/W1.xml"] = Served(cap("W1"), "application/cap+xml")
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "bearer_token": "s3cret",
                            "headers": {"X-Client": "warnd"}})
    await node.feeds.poll("met")
    assert server.hits("/feed.atom")[0]["Authorization"] == "Bearer s3cret"
    assert server.hits("/feed.atom")[0]["X-Client"] == "warnd"
    from warnd.store import audit
    assert audit.redact(node.config.model_dump(mode="json"))["feeds"][0]["bearer_token"] == audit.REDACTED


# --- the status API ------------------------------------------------------------------------

async def test_the_status_api_shows_each_feed_to_operators(make_node, server, clock):
    server.paths["/feed.atom"] = Served(atom(embedded("W1", cap("W1"))), headers={"ETag": '"v1"'})
    node = await make_node({"name": "met", "url": server.url("/feed.atom")},
                           {"name": "never", "url": server.url("/never.atom")})
    await node.feeds.poll("met")
    operator = await node.tokens.create(Scope("预警中心", ("*",), ("*",), Level.RED, Role.ADMIN, ("*",)))
    department = await node.tokens.create(Scope("县气象局", ("*",), ("*",), Level.RED, senders=(SENDER,)))
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    try:
        resp = await client.get("/api/v1/feeds", headers={"Authorization": f"Bearer {department}"})
        assert resp.status == 403
        resp = await client.get("/api/v1/feeds", headers={"Authorization": f"Bearer {operator}"})
        assert resp.status == 200
        met, never = (await resp.json())["items"]
    finally:
        await client.close()
    assert met["name"] == "met" and met["last_success_at"] == clock.now().isoformat()
    assert met["last_new_alert_at"] == clock.now().isoformat() and met["last_error"] is None
    assert met["etag"] == '"v1"' and met["entries"] == {"applied": 1, "duplicates": 0, "refused": 0}
    assert never["last_poll_at"] is None and never["consecutive_failures"] == 0


# --- index parsing on the corpus (pure) ----------------------------------------------------

# file: (kind, entries linking CAP, entries embedding CAP, entries skipped) or the error code
CORPUS_INDEXES = {
    "amber-alert-index.rss": ("rss", 1, 0, 0),
    "google-amber.atom": ("atom", 0, 1, 0),
    "google-canada_signed.atom": ("atom", 0, 1, 0),
    "google-earthquake.atom": ("atom", 1, 1, 0),
    "google-earthquake_index.atom": ("atom", 1, 0, 0),
    "google-empty_weather_index.atom": ("atom", 0, 0, 0),
    "google-invalid.rss": ("rss", 0, 0, 1),
    "google-invalid_element.atom": ("atom", 0, 0, 1),
    "google-no_entries.atom": ("atom", 0, 0, 0),  # an <alert> outside any entry is not an entry
    "google-no_id.atom": ("atom", 0, 0, 1),
    "google-no_link.atom": ("atom", 0, 0, 1),
    "google-no_title.atom": ("atom", 0, 0, 1),
    "google-ny_index.rss": ("rss", 2, 0, 0),
    "google-weather.atom": ("atom", 0, 1, 0),
    "google-weather_index.atom": ("atom", 0, 0, 2),  # untyped links: see the NWS test below
    "google-weather_invalid.atom": ("atom", 0, 1, 0),
    "google-xee.atom": "feed.not_index",  # a DOCTYPE with external entities: refused before parsing
    "krisinformation-se.atom": ("atom", 0, 0, 4),
    "meteoalarm-france.atom": ("atom", 12, 0, 0),
    "meteoalarm-uk.atom": ("atom", 25, 0, 0),
    "nws-oregon-zone-index-cap11.atom": ("atom", 0, 1, 0),
    "nws-us-feed-embedded-cap11-cr-newlines.atom": ("atom", 0, 1, 0),
    "nws-us-index-cap11-2014.atom": ("atom", 0, 0, 2),
    "nws-us-index-cap11-ibm.atom": ("atom", 0, 0, 163),
    "pelmorex-naads-latin1-bytes-malformed.atom": "feed.not_index",
    "rfs-nsw-edxlde-wrapped-capau.xml": "feed.not_index",  # an EDXL-DE envelope, not an index
    "smhi-se-alerts-collection.xml": "feed.not_index",  # a bare collection of alerts, not an index
    "usgs-alerthub-earthquake.atom": ("atom", 1, 0, 0),
    "usgs-earthquakes-week.atom": ("atom", 1, 0, 0),
}


def test_every_corpus_feed_is_expected(corpus):
    assert sorted(p.name for p in (corpus / "feeds").iterdir()) == sorted(CORPUS_INDEXES)


@pytest.mark.parametrize("name", sorted(CORPUS_INDEXES))
def test_corpus_indexes_parse_as_expected(corpus, name):
    expected = CORPUS_INDEXES[name]
    body = (corpus / "feeds" / name).read_bytes()
    if isinstance(expected, str):
        with pytest.raises(WarndError) as raised:
            parse_index(body, 5 * 2**20)
        assert raised.value.code == expected
        return
    index = parse_index(body, 5 * 2**20, base_url="https://feeds.example/")
    embedded_n = sum(e.embedded is not None for e in index.entries)
    linked_n = sum(e.link is not None for e in index.entries)
    assert (index.kind, linked_n, embedded_n, len(index.skipped)) == expected
    for entry in index.entries:
        assert len(entry.key) == 64 and entry.ref
        if entry.link:
            assert entry.link.startswith(("http://", "https://"))
        if entry.embedded:  # a standalone CAP document the API's parser takes
            root = etree.fromstring(entry.embedded)
            assert etree.QName(root).localname == "alert"


def test_nws_indexes_link_cap_untyped(corpus):
    body = (corpus / "feeds" / "nws-us-index-cap11-ibm.atom").read_bytes()
    index = parse_index(body, 5 * 2**20, untyped_links=True)
    assert len(index.entries) == 163 and not index.skipped
    assert all("wwacapget.php" in e.link for e in index.entries)
    assert len({e.key for e in index.entries}) == 163


def test_embedded_corpus_cap_reads_as_cap(corpus):
    from warnd.ingest.validate import parse_warning
    config = load_config(None)
    index = parse_index((corpus / "feeds" / "google-amber.atom").read_bytes(), 5 * 2**20)
    parsed = parse_warning(index.entries[0].embedded, "application/cap+xml", config)
    assert parsed.alert.sender == "KARO@CLETS.DOJ.DC.GOV"


def test_an_index_over_the_limit_is_refused(corpus):
    body = (corpus / "feeds" / "nws-us-index-cap11-ibm.atom").read_bytes()
    with pytest.raises(WarndError) as raised:
        parse_index(body, 1024)
    assert raised.value.code == "feed.too_large"


def test_an_index_with_a_doctype_is_refused_before_any_entity():
    body = (b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>&x;</id></entry></feed>')
    with pytest.raises(WarndError) as raised:
        parse_index(body, 5 * 2**20)
    assert raised.value.code == "feed.not_index"
    assert "DOCTYPE" in raised.value.problems[0].detail_en


def test_rss_enclosures_and_relative_links():
    body = (b'<rss version="2.0"><channel><title>t</title>'
            b'<item><guid>a</guid><link>https://x.example/page.html</link>'
            b'<enclosure url="/cap/a.xml" type="application/cap+xml" length="1"/></item>'
            b'<item><guid>b</guid><link>/cap/b.xml</link></item></channel></rss>')
    index = parse_index(body, 5 * 2**20, base_url="https://x.example/feed.rss")
    assert [(e.ref, e.link) for e in index.entries] == [("a", "https://x.example/cap/a.xml"),
                                                       ("b", "https://x.example/cap/b.xml")]




def test_the_corpus_naads_signature_is_refused_even_with_its_own_certificate(corpus):
    """RSA-SHA1, an Id that is no xs:ID, a certificate long expired: nothing warnd trusts."""
    import base64
    import re

    from cryptography import x509

    from warnd.feeds import signature
    (entry,) = parse_index((corpus / "feeds" / "google-canada_signed.atom").read_bytes(), 5 * 2**20).entries
    der = re.search(rb"<X509Certificate>(.*?)</X509Certificate>", entry.embedded, re.S).group(1)
    with pytest.raises(WarndError) as raised:
        signature.verified(entry.embedded, (x509.load_der_x509_certificate(base64.b64decode(der)),), 2**20)
    assert raised.value.code == "feed.bad_signature"


async def test_a_started_node_polls_each_feed_as_a_job(make_node, server):
    import asyncio
    server.paths["/feed.atom"] = Served(atom(embedded("W1", cap("W1"))))
    node = await make_node({"name": "met", "url": server.url("/feed.atom"), "interval_seconds": 1})
    assert [(seconds, name) for _, seconds, name in node.feeds.jobs()] == [(1, "feed-met")]
    await node.start(dispatch=False)
    try:
        for _ in range(200):  # bounded: the first run comes one interval after the start
            if states := await warning_states(node):
                break
            await asyncio.sleep(0.05)
    finally:
        await node.stop()
    assert states == {"W1": "active"}
