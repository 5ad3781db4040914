"""The operator console in a real browser (the system Chromium through Playwright) against a real
`warnd serve` and the Twilio simulator (tests/console_site.py), zh-CN first.

One warnd and one browser for the module; the tests run in order and build on each other:
log in; compose a red warning for a township by the region tree and another by a polygon
drawn on the map (preview: SMS segments, first-wave time); two approvals by two approvers
(双人签发; the author may not approve); the live view reaching 100 % as the simulated people
answer "1"; an alarm acknowledged; a phoned confirmation with its reason (in the audit);
the report's CSV and XLSX; a drill's report with its evaluation; a phone-sized approval.
Every page is checked with axe-core (no serious or critical violations) and must raise no
page error and log no console error (a CSP violation is one). With WARND_SCREENSHOTS=<dir>
every page is saved there at 1366×768 and 390×844.

Without Chromium or Playwright this skips locally, and fails under CI=true."""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from console_site import (PASSWORD, SHIMEN, TOWNSHIP1, YANGLIUWAN, ConsoleSite, grids_under, polygon,
                          region_codes, responsible)
from procs import Procs, until

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("WARND_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = Path(__file__).parent / "assets" / "axe.min.js"
DESKTOP = {"viewport": {"width": 1366, "height": 768}, "locale": "zh-CN",
           "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}
SHOTS = os.environ.get("WARND_SCREENSHOTS")
WAIT = 20_000  # ms: the longest a page may take to show what the server did


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"a real browser is required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pw():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(pw, tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("console")
    group = Procs(tmp)
    failed_before = request.session.testsfailed
    try:
        yield ConsoleSite(group, tmp)
    finally:
        group.close()
        if request.session.testsfailed > failed_before:
            print("\n" + group.tails(), file=sys.stderr)


class Browser:
    """Logged-in pages per person, every page's errors and console errors collected."""

    def __init__(self, browser, site: ConsoleSite) -> None:
        self.browser, self.site = browser, site
        self.contexts: dict[tuple[str, str], object] = {}
        self.errors: list[str] = []
        self.axe_others: dict[str, list[str]] = {}
        self.state: dict[str, object] = {}
        self.allowed: list[tuple[int, str]] = []  # (status, path) answers the running test provokes

    def context(self, who: str, kind: str = "desktop"):
        key = (who, kind)
        if key not in self.contexts:
            ctx = self.browser.new_context(base_url=self.site.base, **(DESKTOP if kind == "desktop" else PHONE))
            ctx.set_default_timeout(WAIT)
            self.contexts[key] = ctx
            if who != "anonymous":
                page = self.page(who, kind)
                self.login(page, who)
                page.close()
        return self.contexts[key]

    def page(self, who: str, kind: str = "desktop"):
        page = self.context(who, kind).new_page()
        label = f"{who}/{kind}"
        page.on("pageerror", lambda exc: self.errors.append(f"{label} {page.url}: page error {exc}"))
        # the browser logs every 4xx/5xx answer as "Failed to load resource": those are checked by URL
        page.on("console", lambda msg: msg.type == "error" and not msg.text.startswith("Failed to load resource")
                and self.errors.append(f"{label} {page.url}: console {msg.text}"))
        page.on("response", lambda r: r.status >= 400 and not any(
            r.status == status and path in r.url for status, path in self.allowed)
                and self.errors.append(f"{label} {page.url}: HTTP {r.status} {r.request.method} {r.url}"))
        # a request cut short by leaving the page (net::ERR_ABORTED) is no error; any other failure is
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "") and self.errors.append(
            f"{label} {page.url}: request failed {r.method} {r.url} {r.failure}"))
        return page

    def login(self, page, who: str) -> None:
        page.goto("/console/login")
        page.get_by_label("用户名").fill(who)
        page.get_by_label("密码").fill(PASSWORD)
        with page.expect_navigation(url="**/console/warnings"):
            page.get_by_role("button", name="登录").click()

    def axe(self, page, name: str) -> None:
        """axe-core on the page as it is: no serious or critical violation (the others are reported)."""
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")  # DevTools evaluation: not subject to the CSP
        result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        others = [f"{v['id']} ({v['impact']}): {v['help']}" for v in result["violations"] if v not in bad]
        if others:
            self.axe_others[name] = others
        assert not bad, f"{name}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[(n['target'], (n.get('any') or [{}])[0].get('message', '')[:160]) for n in v['nodes'][:4]]}" for v in bad)

    def shoot(self, page, name: str, full: bool = True) -> None:
        """With WARND_SCREENSHOTS: the page at its own size, full length unless a modal dialog is open
        (name-1366.png / name-390.png)."""
        if SHOTS:
            width = page.viewport_size["width"]
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(SHOTS) / f"{name}-{width}.png"), full_page=full, scale="css")

    def check(self, page, name: str, full: bool = True) -> None:
        self.shoot(page, name, full)  # first: a page axe fails is worth seeing
        self.axe(page, name)

    def close(self) -> None:
        for ctx in self.contexts.values():
            ctx.close()


@pytest.fixture(scope="module")
def b(pw, site):
    browser = Browser(pw, site)
    yield browser
    browser.close()
    if browser.axe_others:
        print("\naxe (minor/moderate): " + repr(browser.axe_others), file=sys.stderr)


@pytest.fixture(autouse=True)
def no_page_errors(request):
    """No page error and no console error (a CSP violation logs one) during any test."""
    if "b" not in request.fixturenames:
        yield
        return
    browser: Browser = request.getfixturevalue("b")
    before = len(browser.errors)
    browser.allowed = []
    yield
    new = browser.errors[before:]
    assert not new, "\n".join(new)


def need(b: Browser, key: str):
    if key not in b.state:
        pytest.fail(f"needs {key!r} from an earlier test of this module, which did not get there")
    return b.state[key]


def expect():
    from playwright.sync_api import expect as _expect
    return _expect


# -- log in --

def test_a_wrong_password_is_shown_at_the_form_and_the_right_one_logs_in(b: Browser):
    b.allowed = [(401, "/api/v1/session")]  # the wrong password
    page = b.page("anonymous")
    page.goto("/console/warnings")
    expect()(page).to_have_url(re.compile(r"/console/login\?next=(%2F|/)console(%2F|/)warnings$"))
    b.check(page, "login")
    page.get_by_label("用户名").fill("operator")
    page.get_by_label("密码").fill("not the password")
    page.get_by_role("button", name="登录").click()
    expect()(page.locator('[data-error-for="_form"]')).not_to_be_empty()
    expect()(page.get_by_label("密码")).to_have_value("")
    page.get_by_label("密码").fill(PASSWORD)
    with page.expect_navigation(url="**/console/warnings"):
        page.get_by_role("button", name="登录").click()
    expect()(page.locator(".who .user")).to_contain_text("operator")
    page.close()


# -- compose --

def _compose_ready(page) -> None:
    """compose.js listens for changes only once the map is up; the last thing it does is this."""
    expect()(page.locator("#preview")).to_have_attribute("data-channels", re.compile(r"."))


def _wait_preview(page) -> None:
    expect()(page.locator("#preview-body .first-wave-time")).to_be_visible()
    expect()(page.locator("#preview-body [aria-busy]")).to_have_count(0)


def _submit(b: Browser, page) -> int:
    with page.expect_navigation(url=re.compile(r"/console/warnings/\d+$")):
        page.locator("#submit").click()
    return int(page.url.rsplit("/", 1)[1])


def test_compose_a_red_warning_for_a_township_by_the_region_tree(b: Browser):
    page = b.page("editor")
    page.goto("/console/compose")
    _compose_ready(page)
    page.get_by_label("灾种").select_option("暴雨")
    page.get_by_label("预警级别").select_option("red")
    expect()(page.get_by_label("标题")).to_have_value("暴雨红色预警信号")
    expect()(page.get_by_role("button", name="收起 临江县")).to_have_attribute("aria-expanded", "true")  # the county opens
    page.get_by_label("青石镇", exact=True).check()
    expect()(page.locator("#area-summary")).to_contain_text("区域 1 个")
    _wait_preview(page)
    sms = page.locator('#preview-body .channel[data-channel="sms"]')
    expect()(sms.locator(".sms-facts")).to_contain_text(re.compile(r"每条 \d+ 段 · 编码 UCS-2"))
    expect()(sms.locator(".formula")).to_contain_text("4")  # four grid responsible persons
    expect()(page.locator("#preview-body .first-wave-time")).not_to_be_empty()
    voice = page.locator('#preview-body .channel[data-channel="voice"]')
    expect()(voice.locator(".sample")).to_contain_text("暴雨红色预警")
    expect()(page.locator("#decision")).to_contain_text("需 2 位签发人签发后才发布")
    expect()(page.locator("#decision .two-person")).to_have_text("双人签发")
    b.check(page, "compose-tree")
    b.state["tree"] = _submit(b, page)
    page.close()
    grids = {g["grid"] for g in b.site.api("GET", f"/api/v1/warnings/{b.state['tree']}/coverage").get("grids", [])}
    assert grids in (set(), set(grids_under(TOWNSHIP1)))  # no grids yet while it waits for approval


def _map_point(page, box: dict, lat: float, lon: float) -> tuple[float, float]:
    """Screen point of (lat, lon) from the county outline's box (30.0–30.4 N, 115.0–115.4 E):
    Web Mercator is linear enough over 0.4°."""
    return (box["x"] + (lon - 115.0) / 0.4 * box["width"], box["y"] + (30.4 - lat) / 0.4 * box["height"])


def _county_box(page) -> dict:
    return page.evaluate("""() => {
        let best = null;
        for (const p of document.querySelectorAll('#map .leaflet-overlay-pane path')) {
            const r = p.getBoundingClientRect();
            if (!best || r.width * r.height > best.width * best.height) best = r;
        }
        return best && {x: best.x, y: best.y, width: best.width, height: best.height};
    }""")


def test_compose_a_red_warning_by_a_polygon_drawn_on_the_map(b: Browser):
    page = b.page("admin")
    page.goto("/console/compose")
    _compose_ready(page)
    page.get_by_label("灾种").select_option("暴雨")
    page.get_by_label("标题").fill("暴雨红色预警信号（石门村）")
    page.get_by_role("button", name="画多边形").click()
    page.locator("#map").scroll_into_view_if_needed()
    box = _county_box(page)
    shown = page.locator("#map").bounding_box()
    assert shown["y"] <= box["y"] and box["y"] + box["height"] <= shown["y"] + shown["height"], (box, shown)
    ring = polygon(SHIMEN)
    lats, lons = [p[0] for p in ring], [p[1] for p in ring]
    corners = [(max(lats) + 0.003, min(lons) - 0.003), (max(lats) + 0.003, max(lons) + 0.003),
               (min(lats) - 0.003, max(lons) + 0.003), (min(lats) - 0.003, min(lons) - 0.003)]
    for lat, lon in corners:
        page.mouse.click(*_map_point(page, box, lat, lon))
    expect()(page.locator("#draw-tools .draw-hint")).to_contain_text("已 4 个顶点")
    page.get_by_role("button", name="完成").click()
    expect()(page.locator("#area-summary")).to_contain_text("多边形 1 个")
    _wait_preview(page)
    b.shoot(page, "compose-polygon")
    expect()(page.locator("#preview-body .preview-stats")).to_contain_text("网格 2")
    expect()(page.locator("#decision .two-person")).to_have_text("双人签发")
    b.check(page, "compose-polygon")
    b.state["polygon"] = _submit(b, page)
    page.close()


# -- approvals --

def _card(page, warning_id: int):
    return page.locator(f'#queue article[data-id="{warning_id}"]')


def _state(b: Browser, warning_id: int) -> str:
    return b.site.api("GET", f"/api/v1/warnings/{warning_id}?deliveries=0")["state"]


def test_two_approvals_by_two_approvers_the_first_leaves_it_pending(b: Browser):
    tree = need(b, "tree")
    first = b.page("approver1")
    first.goto("/console/approvals")
    card = _card(first, tree)
    expect()(card.locator(".two-person")).to_have_text("双人签发")
    expect()(card.locator(".progress")).to_have_text("已签 0 / 需 2")
    expect()(card).to_contain_text("editor")  # by whom
    b.check(first, "approvals-pending")
    card.get_by_role("button", name="签发").click()
    expect()(card.locator(".progress")).to_have_text("已签 1 / 需 2")
    expect()(card.get_by_role("button", name="签发")).to_be_disabled()  # approved already: not twice
    expect()(card.locator(".why-not")).to_be_visible()
    expect()(card.locator(".two-person")).to_have_text("双人签发")
    assert _state(b, tree) == "awaiting"
    first.close()

    second = b.page("approver2")
    second.goto("/console/approvals")
    card = _card(second, tree)
    expect()(card.locator(".publishes")).to_be_visible()  # the second approval publishes it
    card.get_by_role("button", name="签发").click()
    expect()(card).to_have_count(0)
    second.close()
    assert _state(b, tree) == "active"


def test_the_author_cannot_approve_their_own_warning(b: Browser):
    drawn = b.state.get("polygon")
    author = b.page("admin")  # wrote the drawn one, and has the right to approve
    if drawn is None:  # the drawn one did not get submitted: the admin writes one by the tree
        author.goto("/console/compose")
        _compose_ready(author)
        author.get_by_label("灾种").select_option("暴雨")
        author.get_by_role("button", name="展开 桐梓乡").click()
        author.get_by_label("石门村", exact=True).check()
        _wait_preview(author)
        drawn = _submit(b, author)
    author.goto("/console/approvals")
    own = _card(author, drawn)
    expect()(own.locator(".why-not")).to_be_visible()
    expect()(own.get_by_role("button", name="签发")).to_be_disabled()
    author.close()
    for who in ("approver1", "approver2"):
        page = b.page(who)
        page.goto("/console/approvals")
        _card(page, drawn).get_by_role("button", name="签发").click()
        if who == "approver1":  # wait for the answer: closing the page at once could cut the request
            expect()(_card(page, drawn).locator(".progress")).to_have_text("已签 1 / 需 2")
        else:
            expect()(_card(page, drawn)).to_have_count(0)
        page.close()
    assert _state(b, drawn) == "active"


# -- the live view --

def _live(b: Browser, who: str, warning_id: int, kind: str = "desktop"):
    page = b.page(who, kind)
    page.goto(f"/console/warnings/{warning_id}")
    expect()(page.locator("#live-state")).not_to_contain_text("正在连接")
    return page


def _sms_out(b: Browser, *phones: str) -> None:
    until(lambda: all(b.site.sms_to(p) for p in phones), 30, f"the warning SMS to {phones}", alive=b.site.alive())


def test_the_live_view_reaches_100_percent_as_the_people_answer_and_an_alarm_is_acknowledged(b: Browser):
    tree = need(b, "tree")
    page = _live(b, "operator", tree)
    expect()(page.locator("#level-name")).to_have_text("红色预警")
    expect()(page.locator("#grids-open")).to_have_text("4")
    # planned: a call to each of the four responsible persons (the not-woken rung adds SMS only)
    expect()(page.locator('#channels-body tr[data-channel="voice"] td').nth(0)).to_have_text("4")
    # the red ladder: not woken after 3 s, an operator alarm after 6 s
    expect()(page.locator("#not-woken-body tr[data-grid]")).to_have_count(4)
    alarm = page.locator("#alarms-list li.alarm.open").first
    expect()(alarm).to_be_visible()
    b.check(page, "live-alarm")
    alarm_id = alarm.get_attribute("data-alarm")
    alarm.locator("button.ack").click()
    done = page.locator(f'#alarms-list li[data-alarm="{alarm_id}"]')
    expect()(done.locator(".alarm-flag")).to_have_text("已确认")
    opened = [a for a in b.site.api("GET", "/api/v1/alarms")["items"] if str(a["id"]) == alarm_id]
    assert opened and opened[0]["acknowledged_at"], opened

    phones = [responsible(g) for g in grids_under(TOWNSHIP1)]
    _sms_out(b, *phones)
    b.site.reply(*phones[:2])
    expect()(page.locator("#percent")).to_have_text("50%")
    expect()(page.locator("#grids-open")).to_have_text("2")
    b.site.reply(*phones[2:])
    expect()(page.locator("#percent")).to_have_text("100%")
    expect()(page.locator("#grids-open")).to_have_text("0")
    expect()(page.locator("#time-100")).not_to_have_text("—")
    b.shoot(page, "live-done")
    page.close()


# -- a drill, with a phoned confirmation --

def _post_cap(b: Browser, identifier: str, code: str, *, severity: str, status: str = "Actual",
              event: str = "暴雨") -> int:
    from datetime import datetime, timedelta, timezone

    from factories import alert

    from warnd.domain.model import Status
    from warnd.ingest.capjson import alert_to_dict
    now = datetime.now(timezone.utc).replace(microsecond=0)
    cap = alert_to_dict(alert(identifier, severity=severity, status=Status(status), codes=(code,), sent=now,
                              expires=now + timedelta(hours=6), event=event))
    created = b.site.api("POST", "/api/v1/warnings", cap, status=(200, 201))
    return created["warning"]["id"]


def test_a_phoned_confirmation_with_its_reason_in_a_drill_and_in_the_audit(b: Browser):
    drill = _post_cap(b, "CONSOLE-DRILL-1", YANGLIUWAN, severity="Moderate", status="Exercise", event="山洪")
    b.state["drill"] = drill
    assert _state(b, drill) == "active"  # yellow: no approval needed
    g7, g8 = grids_under(YANGLIUWAN)
    page = _live(b, "operator", drill)
    expect()(page.locator("#drill-mark")).to_have_text("演练")
    expect()(page.locator("#drill-band")).to_be_visible()
    expect()(page.locator("#grids-open")).to_have_text("2")
    _sms_out(b, responsible(g7))
    b.site.reply(responsible(g7))
    expect()(page.locator("#percent")).to_have_text("50%")

    page.locator("details.grid-table summary").click()
    page.get_by_role("button", name=re.compile(r"时间线 杨柳湾村第二网格")).click()
    dialog = page.locator("#grid-dialog")
    expect()(dialog).to_be_visible()
    expect()(dialog.locator("#grid-timeline li").first).not_to_have_text("正在读取…")
    dialog.get_by_role("button", name="记录电话确认").click()  # no reason: refused at the field
    expect()(dialog.locator('[data-error-for="reason"]')).not_to_be_empty()
    reason = "已电话联系网格责任人马文静，确认收到演练通知"
    dialog.get_by_label("原因").fill(reason)
    b.check(page, "live-phoned", full=False)
    dialog.get_by_role("button", name="记录电话确认").click()
    expect()(page.locator("#status")).to_contain_text("已记录电话确认")
    expect()(page.locator("#percent")).to_have_text("100%")
    expect()(page.locator("#grids-open")).to_have_text("0")
    page.close()
    entries = b.site.api("GET", "/api/v1/audit?limit=200")["items"]
    phoned = [e for e in entries if reason in str(e["detail"])]
    assert phoned, [(e["action"], e["subject"]) for e in entries[-10:]]
    assert phoned[0]["actor"].endswith("operator"), phoned[0]


# -- reports --

def _report(b: Browser, who: str, warning_id: int, kind: str = "desktop"):
    page = b.page(who, kind)
    page.goto(f"/console/warnings/{warning_id}/report")
    expect()(page.locator("#rollup-body tr[data-code]").first).to_be_visible()
    return page


def test_the_report_exports_csv_and_xlsx_with_their_content(b: Browser, tmp_path):
    import openpyxl
    tree = need(b, "tree")
    page = _report(b, "operator", tree)
    expect()(page.locator(f'#rollup-body tr[data-code="{TOWNSHIP1}"]')).to_contain_text("青石镇")
    expect()(page.locator("#curve-chart canvas, #curve-chart svg").first).to_be_visible()
    expect()(page.locator("#drill-section")).to_be_hidden()
    b.check(page, "report")

    with page.expect_download() as got:
        page.locator("#export-csv").click()
    download = got.value
    assert download.suggested_filename.endswith(".csv") and "drill" not in download.suggested_filename
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert rows[0][0].startswith("预警报告 Warning report")
    cells = {c for row in rows for c in row}
    assert {"摘要 Summary", "乡镇、村汇总 Roll-up per township and village", "青石镇", TOWNSHIP1} <= cells, rows[:30]
    summary = {row[0]: row[1] for row in rows if len(row) == 2}
    assert summary["覆盖率 % Coverage %"] in ("100", "100.0"), summary
    assert summary["网格数 Grids"] == "4"

    with page.expect_download() as got:
        page.locator("#export-xlsx").click()
    path = tmp_path / got.value.suggested_filename
    got.value.save_as(path)
    book = openpyxl.load_workbook(path, read_only=True)
    sheets = {ws.title: [r for r in ws.iter_rows(values_only=True)] for ws in book.worksheets}
    summary_sheet = next(rows for title, rows in sheets.items() if "Summary" in title)
    assert summary_sheet[0][0].startswith("预警报告 Warning report")
    facts = {r[0]: r[1] for r in summary_sheet[3:]}
    assert facts["覆盖率 % Coverage %"] == 100 and facts["网格数 Grids"] == 4, facts
    rollup = next(rows for title, rows in sheets.items() if "Roll-up" in title)
    assert any(r[0] == TOWNSHIP1 and r[1] == "青石镇" for r in rollup[3:]), rollup
    page.close()


def test_a_drills_report_says_drill_and_shows_its_evaluation(b: Browser):
    drill = need(b, "drill")
    page = _report(b, "viewer", drill)
    expect()(page.locator("#report-drill")).to_have_text("演练")
    expect()(page.locator("#report-title")).to_contain_text("演练")
    expect()(page.locator("#drill-section")).to_be_visible()
    rows = page.locator("#evaluation-body tr")
    expect()(rows).to_have_count(3)
    expect()(page.locator("#drill-overall .verdict")).to_have_text(re.compile("达标"))
    for key in ("reach", "complete"):
        expect()(page.locator(f'#evaluation-body tr[data-key*="{key}"]')).to_have_count(1)
    b.check(page, "report-drill")
    with page.expect_download() as got:
        page.locator("#export-csv").click()
    assert "演练" in got.value.suggested_filename
    text = Path(got.value.path()).read_text(encoding="utf-8-sig")
    assert text.startswith("【演练 DRILL】") and "演练评估 Drill evaluation" in text
    page.close()


# -- a phone-sized approval --

def test_an_approval_on_a_phone(b: Browser):
    pending = _post_cap(b, "CONSOLE-PHONE-1", SHIMEN, severity="Severe")  # orange: one approval
    assert _state(b, pending) == "awaiting"
    page = b.page("approver1", "phone")
    page.goto("/console/approvals")
    card = _card(page, pending)
    expect()(card.locator(".publishes")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    button = card.get_by_role("button", name="签发")
    box = button.bounding_box()
    assert box["height"] >= 40 and box["width"] >= 44, box  # big enough for a thumb
    b.check(page, "approvals-phone")
    button.tap()
    expect()(card).to_have_count(0)
    assert _state(b, pending) == "active"
    page.close()


# -- every page, at both sizes: axe, and the screenshots --

PAGES = [  # (screenshot name, who, path, what shows the page is drawn)
    ("login", "anonymous", "/console/login", "#login-form"),
    ("warnings", "operator", "/console/warnings", "main table tbody tr, main .empty"),
    ("compose", "editor", "/console/compose", "#tree .region-tree"),
    ("approvals", "approver2", "/console/approvals", "#queue > *"),
    ("live", "operator", "/console/warnings/{tree}", "#live-map .leaflet-overlay-pane path"),
    ("live-drill", "viewer", "/console/warnings/{drill}", "#live-map .leaflet-overlay-pane path"),
    ("report", "operator", "/console/warnings/{tree}/report", "#rollup-body tr[data-code]"),
    ("report-drill", "viewer", "/console/warnings/{drill}/report", "#evaluation-body tr"),
    ("directory", "admin", "/console/directory", "main table tbody tr"),
    ("forbidden", "viewer", "/console/compose", "main"),
]


def _regions_fit_the_map(page, map_id: str, at_least: int) -> None:
    """At least this many drawn regions lie wholly inside the map's box: the map was fitted at its
    own size (a map fitted before its box had its size shows a sliver). Measured once the map
    has settled (no zoom animation, the same boxes twice 200 ms apart)."""
    page.wait_for_function("""(id) => new Promise((done) => {
        const boxes = () => [...document.querySelectorAll(`#${id} .leaflet-overlay-pane path`)]
            .map((p) => { const r = p.getBoundingClientRect(); return [r.left, r.top, r.width, r.height].join(); }).join(";");
        const before = boxes();
        setTimeout(() => done(!document.querySelector(`#${id} .leaflet-zoom-anim`) && boxes() === before), 200);
    })""", arg=map_id, polling=100)
    found = page.evaluate("""(id) => {
        const map = document.getElementById(id).getBoundingClientRect();
        const out = {map: [map.left, map.top, map.right, map.bottom], outside: [], paths: 0};
        for (const p of document.querySelectorAll(`#${id} .leaflet-overlay-pane path`)) {
            const r = p.getBoundingClientRect();
            out.paths += 1;
            if (r.left < map.left - 2 || r.top < map.top - 2 || r.right > map.right + 2 || r.bottom > map.bottom + 2) {
                out.outside.push([r.left, r.top, r.right, r.bottom].map(Math.round));
            }
        }
        return out;
    }""", map_id)
    inside = found["paths"] - len(found["outside"])
    assert inside >= at_least, f"#{map_id}: {inside} of {found['paths']} regions inside the map {found['map']}, " \
        f"want at least {at_least}; outside: {found['outside'][:4]}"


@pytest.mark.parametrize("kind", ["desktop", "phone"])
def test_every_page_passes_axe_at_both_sizes(b: Browser, kind: str):
    ids = {"tree": need(b, "tree"), "drill": b.state.get("drill", need(b, "tree"))}
    failures = []
    for name, who, path, ready in PAGES:
        if name == "forbidden":
            b.allowed = [(403, "/console/compose")]
        page = b.page(who, kind)
        try:
            response = page.goto(path.format(**ids))
            assert response.status == (403 if name == "forbidden" else 200), (name, response.status)
            expect()(page.locator(ready).first).to_be_visible()
            expect()(page.locator("[aria-busy=true]")).to_have_count(0)
            if name == "compose":  # fitted to every region
                _regions_fit_the_map(page, "map", len(region_codes()))
            if name.startswith("live"):  # fitted to the warning's grids (neighbours may stick out)
                _regions_fit_the_map(page, "live-map", 2 if name == "live-drill" else 4)
            b.check(page, name)
        except AssertionError as exc:
            failures.append(f"{name} ({kind}): {exc}")
        except Exception as exc:  # noqa: BLE001 - a Playwright timeout: report the page, go on
            failures.append(f"{name} ({kind}): {type(exc).__name__}: {str(exc).splitlines()[0]}")
        finally:
            page.close()
    assert not failures, "\n".join(failures)
