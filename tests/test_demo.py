"""`warnd demo` as a new operator meets it: Chinese first with a legend, English on request, its
results kept in an output directory (report.json, CSV tables for Excel, report.html), the HTML
report opened in the system Chromium, and --keep-running leaving warnd up until SIGINT.

Two real demo runs at 100× (about 25 s each), one after the other (together they would share
the CPU and slow warnd's sends): one in Chinese (the default under a zh_CN locale) into --out,
one with --lang en --keep-running. Every wait is bounded.
With WARND_SCREENSHOTS set (and a clean run) the report's screenshot is saved to docs/demo/report.png.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from procs import clean_env, warnd_command

from warnd.simulate.demo_text import choose

pytestmark = pytest.mark.slow

SPEED = "100"
RUN_SECONDS = 180
CHROMIUM = os.environ.get("WARND_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "demo" / "report.png"
ADDRESS = re.compile(r"warnd keeps running on the demo's data: (http://127\.0\.0\.1:\d+)")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if k not in ("LC_ALL", "LANG", "LANGUAGE")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The Chinese run (the default under a zh_CN locale), into --out, with the old --report too."""
    tmp = tmp_path_factory.mktemp("demo")
    zh = subprocess.run([*warnd_command(), "demo", "--speed", SPEED, "--out", str(tmp / "zh"),
                         "--report", str(tmp / "legacy.json")], capture_output=True, text=True,
                        timeout=RUN_SECONDS, env=_env(LANG="zh_CN.UTF-8"), stdin=subprocess.DEVNULL, cwd=tmp)
    return {"zh": zh, "zh_out": tmp / "zh", "legacy": tmp / "legacy.json", "tmp": tmp}


@pytest.fixture
def english(runs):
    """The English run with --keep-running, stopped (bounded) whatever the test did."""
    out = runs["tmp"] / "en"
    proc = subprocess.Popen([*warnd_command(), "demo", "--speed", SPEED, "--lang", "en", "--keep-running",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(LANG="C.UTF-8"), stdin=subprocess.DEVNULL, cwd=runs["tmp"])
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_the_language_comes_from_the_flag_or_the_locale():
    assert choose(None, {}) == "zh"
    assert choose(None, {"LANG": "C.UTF-8"}) == "zh"
    assert choose(None, {"LANG": "en_US.UTF-8"}) == "en"
    assert choose(None, {"LC_ALL": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}) == "zh"  # LC_ALL wins
    assert choose("en", {"LANG": "zh_CN.UTF-8"}) == "en" and choose("zh", {"LANG": "en_GB"}) == "zh"


def test_chinese_by_default_with_a_legend_and_what_is_issued_as_it_happens(runs):
    zh = runs["zh"]
    out = zh.stdout
    assert zh.returncode in (0, 1), out[-3000:] + zh.stderr[-3000:]
    assert "Traceback" not in out
    legend = out.index("说明：")
    first_event = out.index("提交 暴雨橙色预警")
    assert legend < first_event  # the legend comes before the run
    for term in ("叫应", "已入户", "未叫醒", "升级步骤", "送达/已发/计划", "解除"):
        assert term in out[legend:first_event], term
    # what is issued, when (the simulated clock), in words: orange, raised to red, lifted
    assert re.search(r"\d\d:\d\d:\d\d（T\+\d\d:\d\d:\d\d）周立新 签发 1/1.*发布 暴雨橙色预警 → 蕲阳县全县 10 个乡镇、"
                     r"\d+ 个村（200 个网格）", out)
    assert re.search(r"升级为红色预警：暴雨红色预警 → 蕲阳县全县", out)
    assert "解除 暴雨红色预警" in out
    # no unexplained symbols or jargon
    for jargon in ("✓", "⌂", "rungs", "lifted #", "delivered/sent/all"):
        assert jargon not in out, jargon
    assert "结果：" in out and "达到 50%" in out
    assert "report.html" in out and str(runs["zh_out"]) in out


def test_the_output_directory_holds_the_json_the_csvs_and_the_html(runs):
    out = runs["zh_out"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert json.loads(runs["legacy"].read_text(encoding="utf-8")) == report  # --report still works
    assert report["scenario"]["description"].startswith("蕲阳县暴雨预警演练：橙色 → 红色")
    judged = [w for w in report["warnings"] if w["judged"]]
    assert len(judged) == 1 and judged[0]["level"] == "red"
    for name in ("grids.csv", "channels.csv", "timeline.csv", "coverage.csv"):
        raw = (out / name).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), name  # UTF-8 with a BOM: Excel reads the Chinese
    grids = list(csv.DictReader((out / "grids.csv").open(encoding="utf-8-sig")))
    assert len(grids) == 200
    assert {"乡镇 township", "网格责任人 responsible person", "叫应时间 confirmed at", "入户完成时间 covered at",
            "未叫醒时间 not woken at"} <= set(grids[0])
    reached = [g for g in grids if g["状态码 state"] in ("confirmed", "covered")]
    assert len(reached) == judged[0]["coverage"]["confirmed"] + judged[0]["coverage"]["covered"]
    assert all(g["网格责任人 responsible person"] for g in grids)
    channels = list(csv.DictReader((out / "channels.csv").open(encoding="utf-8-sig")))
    assert {c["渠道 channel"] for c in channels} >= {"短信", "语音电话", "大喇叭"}
    timeline = list(csv.DictReader((out / "timeline.csv").open(encoding="utf-8-sig")))
    assert any(t["事件 event"].startswith("解除") for t in timeline)
    assert (out / "report.html").exists() and (out / "echarts.common.min.js").exists()


def test_the_html_report_draws_the_coverage_curve_offline_in_chromium(runs):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}")
    out = runs["zh_out"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    timing = next(w for w in report["warnings"] if w["judged"])["timing"]
    errors, outside = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1500}, locale="zh-CN")
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith("file://") else outside.append(r.url))
            page.goto((out / "report.html").as_uri())
            page.wait_for_selector("#curve-chart svg path", state="attached", timeout=15_000)
            assert page.locator("#curve-chart svg path").count() > 3
            assert "发布与叫应报告" in page.locator("#report-title").inner_text()
            for p_ in (50, 90, 100):
                shown = page.locator(f"#t{p_}").inner_text()
                if timing[f"coverage_{p_}_seconds"] is None:
                    assert shown == "未达到"
                else:
                    s = int(round(timing[f"coverage_{p_}_seconds"]))
                    assert shown == f"{s // 60} 分 {s % 60:02d} 秒", (p_, shown)
            assert page.locator("#villages tbody tr").count() > 10
            assert page.locator("#not-woken tbody tr").count() >= 1
            if os.environ.get("WARND_SCREENSHOTS") and report["verdict"]["ok"]:  # the README's picture, on demand
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT))
            page.click("#lang")  # English, switchable
            assert "dissemination report" in page.locator("#report-title").inner_text()
            assert page.locator("#t50").inner_text() != ""
        finally:
            browser.close()
    assert errors == []
    assert outside == []  # no CDN, no request anywhere: it opens offline


def test_english_on_request_and_keep_running_serves_until_sigint(english):
    en, en_out = english
    lines: list[str] = []
    deadline = time.monotonic() + RUN_SECONDS
    address = None
    while address is None and time.monotonic() < deadline and en.poll() is None:
        line = en.stdout.readline()
        lines.append(line)
        if m := ADDRESS.search(line):
            address = m.group(1)
    for _ in range(3):  # the console login and the token follow the address
        lines.append(en.stdout.readline())
    out = "".join(lines)
    assert address, out[-3000:] + (en.stderr.read() if en.poll() is not None else "")
    assert "Legend:" in out and "raised to red: red rainstorm warning" in out and "Result:" in out
    assert "说明" not in out and "提交" not in out
    assert re.search(r"console: http://127\.0\.0\.1:\d+/console/  user demo-admin  password \S{10,}", out)
    assert re.search(r"API token: wdt_\S+", out)
    with urllib.request.urlopen(address + "/healthz", timeout=10) as r:
        assert r.status == 200
    token = re.search(r"API token: (wdt_\S+)", out).group(1)
    request = urllib.request.Request(address + "/api/v1/warnings", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:  # the demo's data
        assert r.status == 200 and json.loads(r.read())
    assert (en_out / "report.html").exists()
    en.send_signal(signal.SIGINT)
    rest, _ = en.communicate(timeout=30)
    assert "warnd stopped" in rest
    assert en.returncode in (0, 1)
    with pytest.raises(OSError):
        urllib.request.urlopen(address + "/healthz", timeout=3)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"a real browser is required in CI: {reason}")
    pytest.skip(reason)
