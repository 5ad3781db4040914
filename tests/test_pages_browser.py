"""The door-to-door page in a real browser (system Chromium through Playwright), on a
phone-sized screen in zh-CN: a visitor marks households told, moved (typing the head
count; the browser itself refuses 已转移 without one) and not at home; the grid is
covered only once the household not at home is revisited and told. Screenshots of
the list and of a confirmation page land in tmp_path.

Without Chromium or Playwright this skips locally, and fails under CI=true."""
from __future__ import annotations

import os
import shutil

import pytest
from test_pages import Site, _path, site  # noqa: F401 - the fixture is used by name

from warnd.store.schema import call_list_items, call_lists, confirmations

CHROMIUM = os.environ.get("WARND_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN", "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"a real browser is required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
async def browser():
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        await b.close()


async def test_a_visitor_covers_the_grid_from_a_phone(site: Site, browser, tmp_path):  # noqa: F811
    wid = await site.submit()
    _, path = await site.door_list()
    context = await browser.new_context(**PHONE)
    page = await context.new_page()
    await page.goto(str(site.client.make_url(path)))
    assert await page.locator("#progress").inner_text() == "已落实 0/3"
    households = page.locator("li.hh")
    assert await households.count() == 3
    assert "重点" in await households.nth(0).inner_text()
    await page.screenshot(path=str(tmp_path / "call-list-start.png"), full_page=True)

    # 已转移 with no head count: the browser's own form check keeps it (no JavaScript of ours)
    await households.nth(1).get_by_role("button", name="已转移").tap()
    assert not await households.nth(1).get_by_label("转移人数").evaluate("e => e.validity.valid")
    assert all(r.mark is None for r in await site.rows(call_list_items))

    async def tap(n: int, label: str, people: str | None = None) -> None:
        if people is not None:
            await page.locator("li.hh").nth(n).get_by_label("转移人数").fill(people)
        async with page.expect_navigation():
            await page.locator("li.hh").nth(n).get_by_role("button", name=label).tap()
        button = page.locator("li.hh").nth(n).get_by_role("button", name=label)
        assert await button.get_attribute("aria-pressed") == "true"

    await tap(0, "已通知")
    await tap(1, "已转移", "3")
    await tap(2, "不在家")
    assert await page.locator("#progress").inner_text() == "已落实 2/3"
    assert "3人" in await page.locator("li.hh").nth(1).inner_text()
    assert "待回访" in await page.locator("li.hh").nth(2).inner_text()
    assert await page.locator("#complete").count() == 0
    await page.screenshot(path=str(tmp_path / "call-list-revisit.png"), full_page=True)
    (conf,) = await site.rows(confirmations)
    assert conf.state == "open"  # nobody at home there was told

    await tap(2, "已通知")  # the revisit
    assert await page.locator("#progress").inner_text() == "已落实 3/3"
    assert "本网格已全部入户通知" in await page.locator("#complete").inner_text()
    await page.screenshot(path=str(tmp_path / "call-list-done.png"), full_page=True)
    (conf,) = await site.rows(confirmations)
    assert conf.state == "covered"
    (cl,) = await site.rows(call_lists)
    assert cl.completed_at is not None

    await site.submit("W2", event="山洪")  # a confirmation page, for the look of it
    page2 = await context.new_page()
    await page2.goto(str(site.client.make_url(_path(site.node.link_url("confirm", f"{wid + 1}/resp")))))
    await page2.screenshot(path=str(tmp_path / "confirm.png"), full_page=True)
    async with page2.expect_navigation():
        await page2.get_by_role("button", name="确认收到").tap()
    assert "已确认" in await page2.locator("[role=status]").inner_text()
    await page2.screenshot(path=str(tmp_path / "confirmed.png"), full_page=True)
    await context.close()
