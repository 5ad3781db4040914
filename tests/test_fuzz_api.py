"""Adversarial suite (issue 10): schemathesis against the OpenAPI warnd serves.

A real warnd (SQLite, no dispatch) listens on a free loopback port in a thread
of its own; the description is read from its /api/v1/openapi.yaml. Every
operation but the provider webhooks (they need signatures) gets a handful of
schema-conforming and schema-violating requests with an admin token:

- no answer is a 5xx;
- every 4xx is application/problem+json whose `code` is in the catalogue and
  whose `status` is the answer's (HTML page routes answer 4xx with a page);
- bodies the description types as CAP are real-looking CAP (warnd-written
  alerts, lightly mutated), and YAML imports are directory documents.

The token under test is never revoked or rotated by the run itself. The whole
file stays well under a minute on 2 cores: the "warnd-ci" profile is
derandomized with a few examples per operation (WARND_FUZZ_PROFILE=warnd-deep
for ten times as many, at random).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from factories import NO_APPROVAL, VILLAGE, alert
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from schemathesis import GenerationMode

from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.errors import CATALOGUE
from warnd.domain.model import MsgType, Reference, Status
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capjson import alert_to_dict
from warnd.ingest.capxml import alert_to_xml
from warnd.store.migrate import upgrade

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.large_base_example, HealthCheck.function_scoped_fixture]
settings.register_profile("warnd-ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("warnd-deep", derandomize=False, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
PROFILE = os.environ.get("WARND_FUZZ_PROFILE", "warnd-ci")
SCALE = 10 if PROFILE == "warnd-deep" else 1
EXAMPLES = {GenerationMode.POSITIVE: 15 * SCALE, GenerationMode.NEGATIVE: 10 * SCALE}

EXCLUDED = re.compile(r"^/twilio/")  # provider webhooks: signed by the provider
HTML_PAGES = re.compile(r"^/(c|d)/")  # signed-link pages answer errors as a page, by design
DIRECTORY = """
regions:
  - {code: "421126", name: 示例县, kind: county}
  - {code: "421126100", name: 城关镇, kind: township, parent: "421126"}
  - {code: "421126100201", name: 河口村, kind: village, parent: "421126100"}
  - {code: "421126100201001", name: 一组, kind: grid, parent: "421126100201"}
people:
  - {id: p1, name: 张三, region: "421126100201001", roles: [grid_responsible], phone: "13800138000"}
households:
  - {id: h1, grid: "421126100201001", address: 一组3号}
speakers:
  - {id: s1, grid: "421126100201001"}
subscribers:
  - {id: tv, url: "http://127.0.0.1:9/tv", secret: whsec_AAAAAAAAAAAAAAAAAAAAAAAA}
"""


# ---------------------------------------------------------------- the server

class Served:
    """warnd on 127.0.0.1:<free port>, its own event loop in a daemon thread."""

    def __init__(self, folder: Path) -> None:
        self.url_db = f"sqlite:///{folder / 'fuzz.db'}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="warnd-fuzz-api", daemon=True)

    def run(self, coro, timeout: float = 30):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        upgrade(self.url_db)
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        from aiohttp import web

        self.node = Node(load_config(None, database_url=self.url_db, approval=NO_APPROVAL,
                                     webhook={"allow_private_urls": True}))
        await self.node.start(dispatch=False)
        self.token = await self.node.tokens.create(admin_scope("fuzz"))
        self.runner = web.AppRunner(build_app(self.node))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def stop(self) -> None:
        try:
            self.run(self.runner.cleanup())
            self.run(self.node.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def served():
    folder = Path(tempfile.mkdtemp(prefix="warnd-fuzz-api-"))
    server = Served(folder)
    server.start()
    auth = {"Authorization": f"Bearer {server.token}"}
    resp = requests.post(server.base + "/api/v1/directory/import", data=DIRECTORY.encode(),
                         headers=auth | {"Content-Type": "application/yaml"}, timeout=10)
    assert resp.status_code == 200, resp.text
    server.warning_ids = []
    for i in range(3):  # some warnings for the {id} paths to find
        resp = requests.post(server.base + "/api/v1/warnings", data=alert_to_xml(alert(f"SEED-{i}")).encode(),
                             headers=auth | {"Content-Type": "application/cap+xml"}, timeout=10)
        assert resp.status_code == 201, resp.text
        server.warning_ids.append(resp.json()["warning"]["id"])
    tokens = requests.get(server.base + "/api/v1/tokens", headers=auth, timeout=10).json()["items"]
    server.own_token_ids = {t["id"] for t in tokens}
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- CAP and YAML bodies

@st.composite
def cap_alerts(draw: st.DrawFn):  # noqa: ANN201
    """warnd-written alerts of every kind, some with a field gone astray."""
    identifier = draw(st.from_regex(r"FZ-[A-Z0-9]{1,8}", fullmatch=True))
    msg_type = draw(st.sampled_from(list(MsgType)))
    refs = (Reference("dept@example.cn", "SEED-0", "2026-07-01T00:00:00-00:00"),) \
        if msg_type in (MsgType.UPDATE, MsgType.CANCEL) else ()
    a = alert(identifier, severity=draw(st.sampled_from(["Extreme", "Severe", "Moderate", "Minor", "Unknown"])),
              status=draw(st.sampled_from(list(Status))), msg_type=msg_type, references=refs,
              codes=draw(st.sampled_from([(VILLAGE,), (VILLAGE + "001",), ("421126",), ("110101",), ()])),
              event=draw(st.sampled_from(["暴雨", "山洪", "Flood"])))
    if draw(st.booleans()):
        area = replace(a.infos[0].areas[0], polygons=(((30.0, 114.0), (30.0, 115.0), (31.0, 115.0), (30.0, 114.0)),))
        a = replace(a, infos=(replace(a.infos[0], areas=(area,)),))
    return a


def _mutate(text: str, draw: st.DrawFn) -> str:
    if draw(st.integers(0, 3)):
        return text
    old = draw(st.sampled_from(["Actual", "Alert", "Public", "Extreme", "Met", "-00:00", "暴雨", "421126100201",
                                "<info>", "</info>", "<area>", "2026"]))
    new = draw(st.sampled_from(["", "X", "Apocalyptic", "+25:00", "&amp;", "<x/>", "9" * 400, "\u3000", " "]))
    return text.replace(old, new, 1)


@st.composite
def cap_xml_bodies(draw: st.DrawFn) -> bytes:
    return _mutate(alert_to_xml(draw(cap_alerts())), draw).encode("utf-8")


@st.composite
def cap_json_bodies(draw: st.DrawFn) -> dict:
    """The same alerts as CAP JSON (every mutation lands inside a JSON string)."""
    return json.loads(_mutate(json.dumps(alert_to_dict(draw(cap_alerts())), ensure_ascii=False), draw))


@st.composite
def directory_yaml(draw: st.DrawFn) -> bytes:
    doc = yaml.safe_load(DIRECTORY)
    for kind in draw(st.lists(st.sampled_from(sorted(doc)), unique=True, max_size=3)):
        row = dict(draw(st.sampled_from(doc[kind])))
        key = draw(st.sampled_from(sorted(row)))
        row[key] = draw(st.one_of(st.text(max_size=12), st.integers(), st.none(), st.lists(st.text(max_size=3))))
        doc[kind] = [*doc[kind], row]
    return yaml.safe_dump(doc, allow_unicode=True).encode("utf-8", "surrogatepass")


REAL_IDS = {"regions": ["421126", "421126100201001"], "people": ["p1"], "households": ["h1"], "speakers": ["s1"],
            "subscribers": ["tv"]}
REAL_ROWS = {
    "regions": {"name": "二组", "kind": "grid", "parent": "421126100201"},
    "people": {"name": "李四", "region": "421126100201001", "roles": ["liaison"], "phone": "0713-1234567",
               "backup": "p1"},
    "households": {"address": "一组5号", "grid": "421126100201001", "vulnerable": True},
    "speakers": {"grid": "421126100201001"},
    "subscribers": {"url": "http://127.0.0.1:9/x", "secret": "whsec_" + "B" * 24, "format": "json",
                    "levels": ["red"], "regions": ["421126"]},
}


@st.composite
def near_rows(draw: st.DrawFn, kind: str) -> dict:
    row = dict(REAL_ROWS[kind])
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(row)))
        row[key] = draw(st.one_of(st.text(max_size=10), st.integers(), st.none(), st.booleans(),
                                  st.lists(st.text(max_size=4), max_size=2)))
    return row


@st.composite
def token_bodies(draw: st.DrawFn) -> dict:
    body = {"department": draw(st.sampled_from(["县气象局", "", "x" * 300])),
            "role": draw(st.sampled_from(["department", "admin", "root"])),
            "senders": draw(st.sampled_from([["dept@example.cn"], [], ["*"], "dept@example.cn"])),
            "events": draw(st.sampled_from([["暴雨"], ["*"], []])), "regions": draw(st.sampled_from([["421126"], ["*"]])),
            "max_level": draw(st.sampled_from(["red", "橙", "purple", ""])), "supersede": draw(st.booleans())}
    if draw(st.booleans()):
        body["expires_days"] = draw(st.one_of(st.floats(allow_nan=False), st.integers(-5, 10**6)))
    return body


schemathesis.openapi.media_type("application/cap+xml", cap_xml_bodies(), aliases=["application/xml"])
schemathesis.openapi.media_type("application/yaml", directory_yaml())


# ---------------------------------------------------------------- the run

SQLITE_MIN, SQLITE_MAX = -(2**63), 2**63 - 1


def operations():  # noqa: ANN201
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "warnd" / "http" / "openapi.yaml").read_text("utf-8"))
    return [(path, method) for path, item in spec["paths"].items() for method in item
            if method in ("get", "post", "put", "delete", "patch") and not EXCLUDED.match(path)]


@pytest.fixture(scope="module")
def schema(served):
    text = requests.get(served.base + "/api/v1/openapi.yaml", timeout=10).text
    loaded = schemathesis.openapi.from_dict(yaml.safe_load(text))
    loaded.config.update(base_url=served.base)
    return loaded


def check_answer(path: str, method: str, response: schemathesis.Response, case_repr: str) -> None:
    body = response.content[:600].decode("utf-8", "replace")  # an XLSX answer is not text
    where = f"{method.upper()} {path}\n{case_repr}\n-> {response.status_code} {body}"
    assert response.status_code < 500, where
    if not 400 <= response.status_code < 500:
        return
    ctype = (response.headers.get("content-type") or [""])[0]  # lowercase keys, lists of values
    if HTML_PAGES.match(path) and ctype.startswith("text/html"):
        return
    assert ctype.startswith("application/problem+json"), where
    problem = response.json()
    assert problem.get("code") in CATALOGUE, where
    assert problem["status"] == response.status_code == CATALOGUE[problem["code"]].status, where
    assert problem["title_en"] and problem["title_zh"], where


@pytest.mark.parametrize(("path", "method"), operations(), ids=lambda v: v)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_operation(served, schema, path, method, mode):
    operation = schema[path][method.upper()]
    session = requests.Session()
    auth = {"Authorization": f"Bearer {served.token}"}

    @settings(settings.get_profile(PROFILE), max_examples=EXAMPLES[mode])
    @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 3), data=st.data())
    def run(case, pick, data):
        # Mostly things that exist and bodies that mean something, so handlers get past the
        # first lookup or check; the rest is left as schemathesis made it.
        params = case.path_parameters or {}
        kind = params.get("kind")
        if "id" in params and pick and kind in REAL_IDS:
            params["id"] = data.draw(st.sampled_from(REAL_IDS[kind]))
        elif "id" in params and pick and kind is None:
            params["id"] = data.draw(st.sampled_from(served.warning_ids))
        for values in (params, case.query or {}):  # past SQLite's INTEGER: a known 500, pinned below
            for key, value in values.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    values[key] = max(SQLITE_MIN, min(value, SQLITE_MAX))
        if path.startswith("/api/v1/tokens/{id}") and params.get("id") in served.own_token_ids:
            params["id"] = 10**6  # never revoke or rotate the token under test
        if pick == 1 and mode is GenerationMode.POSITIVE:
            if (path, method) == ("/api/v1/warnings", "post"):
                case.body, case.media_type = data.draw(cap_json_bodies()), "application/json"
            elif (path, method) == ("/api/v1/directory/{kind}/{id}", "put") and kind in REAL_ROWS:
                case.body = data.draw(near_rows(kind))
            elif (path, method) == ("/api/v1/tokens", "post"):
                case.body = data.draw(token_bodies())
        response = case.call(session=session, headers=auth, timeout=15)
        check_answer(path, method, response, repr(case)[:800])

    try:
        run()
    except Unsatisfiable:  # e.g. /healthz: no parameter, no body, so nothing can violate the schema
        assert mode is GenerationMode.NEGATIVE
        pytest.skip(f"no request to {method.upper()} {path} can violate its description")


def test_the_token_under_test_still_works(served):
    """Run last in this file: the run did not lock itself out (which would hide everything as 401)."""
    resp = requests.get(served.base + "/api/v1/session", timeout=10,
                        headers={"Authorization": f"Bearer {served.token}"})
    assert resp.status_code == 200, resp.text


def test_every_operation_is_fuzzed_but_the_webhooks(served, schema):
    served_ops = {(op.path, op.method.lower()) for op in (r.ok() for r in schema.get_all_operations())}
    assert set(operations()) == {o for o in served_ops if not EXCLUDED.match(o[0])}
    assert all(EXCLUDED.match(p) for p, _ in served_ops - set(operations()))



# ---------------------------------------------------------------- found by fuzzing, mended, pinned

BIG = 2**63  # one past SQLite's largest INTEGER (and -BIG - 1 one below its smallest)
PAST_SQLITE = [
    ("GET", f"/api/v1/warnings/{BIG}", None), ("GET", f"/api/v1/warnings/{BIG}/preview", None),
    ("GET", f"/api/v1/warnings/{BIG}/coverage", None), ("GET", f"/api/v1/warnings/{BIG}/call-lists", None),
    ("POST", f"/api/v1/warnings/{BIG}/approve", None), ("POST", f"/api/v1/warnings/{BIG}/reject", {"reason": "x"}),
    ("POST", f"/api/v1/warnings/1/confirmations/{BIG}", {"reason": "x"}),
    ("POST", f"/api/v1/tokens/{BIG}/revoke", None), ("POST", f"/api/v1/tokens/{BIG}/rotate", None),
    ("POST", f"/api/v1/alarms/{BIG}/acknowledge", None), ("GET", f"/api/v1/warnings?offset={BIG}", None),
    ("GET", f"/api/v1/audit?after={BIG}", None),
    ("GET", f"/api/v1/warnings/{-BIG - 1}/coverage", None),  # the routes that take negative ids, below SQLite's
    ("POST", f"/api/v1/warnings/1/confirmations/{-BIG - 1}", {"reason": "x"}),
    ("POST", f"/api/v1/alarms/{-BIG - 1}/acknowledge", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PAST_SQLITE, ids=[f"{m} {p}" for m, p, _ in PAST_SQLITE])
def test_an_id_past_sqlite_integer_is_not_a_500(served, method, path, body):
    resp = requests.request(method, served.base + path, json=body,
                            headers={"Authorization": f"Bearer {served.token}"}, timeout=10)
    assert resp.status_code < 500, resp.text


def test_a_prefixed_cap_document_with_a_schema_error_is_a_400(served):
    body = b'<cap:alert xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2"><cap:identifier>x</cap:identifier></cap:alert>'
    resp = requests.post(served.base + "/api/v1/warnings", data=body, timeout=10, headers={
        "Authorization": f"Bearer {served.token}", "Content-Type": "application/cap+xml"})
    assert (resp.status_code, resp.json()["code"]) == (400, "cap.schema")


def test_a_json_integer_of_5000_digits_is_a_400(served):
    resp = requests.post(served.base + "/api/v1/warnings", data=b'{"identifier": ' + b"1" * 5000 + b"}", timeout=10,
                         headers={"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"})
    assert (resp.status_code, resp.json()["code"]) == (400, "cap.json")
