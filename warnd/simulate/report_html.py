"""The demo's HTML report: what a county would show after the night, Chinese first, English switchable.

One self-contained page, `report.html`, beside a copy of the vendored ECharts
(`echarts.common.min.js`, with its LICENSE and NOTICE) so it opens offline from
file://: no CDN, no request anywhere. It shows the title, what was issued when,
time to 50/90/100 % of grids confirmed or covered, the coverage curve (drawn as
the console's report page draws it), per-village rows, the not-woken list, the
escalation steps fired, the channels and the verdict. Every text is in both
languages (`<span lang>`); a button switches, `--lang` picks the first shown.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment

from warnd.simulate.demo_display import Words
from warnd.simulate.demo_text import CHANNEL, GRID_STATE, LEGEND, T, duration, reasons, word
from warnd.simulate.demo_view import View
from warnd.simulate.progress import sent_count
from warnd.simulate.scenario import Scenario

VENDOR = Path(__file__).resolve().parent.parent / "console" / "static" / "vendor" / "echarts"
ECHARTS_FILES = ("echarts.common.min.js", "LICENSE", "NOTICE", "LICENSE-d3")
LEVEL_COLOUR = {"red": "#c8102e", "orange": "#b84f00", "yellow": "#f2c200", "blue": "#0b4fa8"}

TEMPLATE = """<!doctype html>
{%- macro bi(pair) -%}<span lang="zh-CN">{{ pair[0] }}</span><span lang="en">{{ pair[1] }}</span>{%- endmacro %}
<html lang="{{ 'zh-CN' if lang == 'zh' else 'en' }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title[0] }} · {{ title[1] }}</title>
<style>
body{font-family:"Noto Sans CJK SC","Microsoft YaHei","PingFang SC",sans-serif;margin:0;color:#1a1a1a;background:#f4f6f9}
main{max-width:1100px;margin:0 auto;padding:1rem 1.2rem 3rem}
body.zh [lang=en],body.en [lang=zh-CN]{display:none}
h1{font-size:1.5rem;margin:.4rem 0}
h2{font-size:1.15rem;margin:0 0 .6rem}
.card{background:#fff;border-radius:6px;padding:1rem 1.2rem;margin:0 0 1rem;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.band{display:inline-block;color:#fff;font-weight:800;padding:.2rem .8rem;border-radius:4px;background:{{ colour }}}
.drill{display:inline-block;background:#ffd400;font-weight:800;padding:0 .4rem;border-radius:3px;margin-left:.5rem}
.sub,.muted{color:#555}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(10rem,1fr));gap:.4rem 1rem;margin:0}
.facts dt{font-size:.85rem;color:#555}
.facts dd{margin:0;font-weight:700;font-size:1.1rem;font-variant-numeric:tabular-nums}
#curve-chart{height:340px;width:100%}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{border-bottom:1px solid #dde1e6;padding:.3rem .5rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.table-wrap{overflow-x:auto;max-height:32rem}
.ok{color:#0a7d32;font-weight:800}.bad{color:#b00020;font-weight:800}
button#lang{float:right;font-size:1rem;padding:.3rem .8rem}
@media print{body{background:#fff}.card{box-shadow:none;break-inside:avoid}button#lang{display:none}.table-wrap{max-height:none}}
</style>
</head>
<body class="{{ lang }}">
<main>
<button id="lang" type="button"><span lang="zh-CN">English</span><span lang="en">中文</span></button>
<header class="card">
<span class="band">{{ bi(level) }}</span><span class="drill">{{ bi(("演练 · 模拟数据", "EXERCISE · simulated data")) }}</span>
<h1 id="report-title">{{ bi(title) }}</h1>
<p class="sub">{{ bi(sub) }}</p>
<p>{{ bi(story) }}</p>
</header>

<section class="card" id="summary">
<h2>{{ bi(("概况", "Summary")) }}</h2>
<dl class="facts">
{% for f in facts %}<div><dt>{{ bi(f.label) }}</dt><dd id="{{ f.id }}">{{ bi(f.value) }}</dd></div>
{% endfor %}</dl>
<p id="verdict" class="{{ 'ok' if verdict_ok else 'bad' }}">{{ bi(verdict) }}</p>
</section>

<section class="card">
<h2>{{ bi(("发布经过", "What was issued when")) }}</h2>
<table id="timeline"><thead><tr><th>{{ bi(("时刻", "Time")) }}</th><th>{{ bi(("事件", "Event")) }}</th></tr></thead>
<tbody>{% for e in events %}<tr><td>{{ e.at }}</td><td>{{ bi(e.text) }}</td></tr>{% endfor %}</tbody></table>
</section>

<section class="card">
<h2>{{ bi(("覆盖率曲线（已叫应或已入户的网格占比）", "Coverage over time (share of grids confirmed or covered)")) }}</h2>
<div id="curve-chart" role="img" aria-label="coverage curve / 覆盖率曲线"></div>
<details><summary>{{ bi(("曲线数据", "Curve data")) }}</summary>
<table><thead><tr><th class="n">{{ bi(("发布后分钟", "Minutes after issue")) }}</th><th class="n">%</th></tr></thead>
<tbody>{% for p in curve %}<tr><td class="n">{{ "%.1f"|format(p[0] / 60) }}</td><td class="n">{{ p[1] }}</td></tr>{% endfor %}</tbody></table>
</details>
</section>

<section class="card">
<h2>{{ bi(("各村落实情况", "Per village")) }}</h2>
<div class="table-wrap"><table id="villages"><thead><tr>
{% for h in village_head %}<th{% if loop.index > 2 %} class="n"{% endif %}>{{ bi(h) }}</th>{% endfor %}</tr></thead>
<tbody>{% for v in villages %}<tr><td>{{ v.township }}</td><th scope="row">{{ v.village }}</th>
<td class="n">{{ v.grids }}</td><td class="n">{{ v.confirmed }}</td><td class="n">{{ v.covered }}</td>
<td class="n">{{ v.open }}</td><td class="n">{{ v.not_woken }}</td><td class="n">{{ bi(v.last) }}</td></tr>{% endfor %}
</tbody></table></div>
</section>

<section class="card">
<h2>{{ bi(("未叫醒名单（5 分钟内网格责任人本人未确认）", "Not woken (the responsible person did not confirm within 5 min)")) }}</h2>
<div class="table-wrap"><table id="not-woken"><thead><tr>
{% for h in not_woken_head %}<th>{{ bi(h) }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in not_woken %}<tr><td>{{ r.place }}</td><th scope="row">{{ r.grid }}</th><td>{{ r.person }}</td>
<td>{{ r.phone }}</td><td>{{ r.at }}</td><td>{{ bi(r.after) }}</td></tr>
{% else %}<tr><td colspan="6" class="muted">{{ bi(("没有未叫醒的网格。", "No grid was not woken.")) }}</td></tr>{% endfor %}
</tbody></table></div>
</section>

<section class="card">
<h2>{{ bi(("触发的升级步骤", "Escalation steps fired")) }}</h2>
<ul>{% for k in rung_counts %}<li>{{ bi(k.words) }}：{{ k.n }}</li>{% else %}<li class="muted">{{ bi(("无", "none")) }}</li>{% endfor %}</ul>
<div class="table-wrap"><table id="rungs"><thead><tr>
{% for h in rung_head %}<th>{{ bi(h) }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in rungs %}<tr><th scope="row">{{ r.grid }}</th><td>{{ bi(r.words) }}</td><td>{{ r.at }}</td></tr>{% endfor %}
</tbody></table></div>
</section>

<section class="card">
<h2>{{ bi(("各渠道发送", "Channels")) }}</h2>
<table id="channels"><thead><tr>{% for h in channel_head %}<th{% if loop.index > 1 %} class="n"{% endif %}>{{ bi(h) }}</th>{% endfor %}</tr></thead>
<tbody>{% for c in channels %}<tr><th scope="row">{{ bi(c.name) }}</th>{% for v in c.cells %}<td class="n">{{ v }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
</section>

<section class="card">
<h2>{{ bi(("说明", "Legend")) }}</h2>
<ul>{% for row in legend %}<li>{{ bi(row) }}</li>{% endfor %}</ul>
<p class="muted">{{ bi(generated) }}</p>
</section>
</main>
<script type="application/json" id="report-data">{{ data|tojson }}</script>
<script src="echarts.common.min.js"></script>
<script>
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var button = document.getElementById("lang");
  var chart = null;
  function zh() { return document.body.classList.contains("zh"); }
  function draw() {
    var box = document.getElementById("curve-chart");
    if (!window.echarts) { box.textContent = zh() ? "图表无法加载，请看曲线数据。" : "The chart did not load; see the curve data."; return; }
    chart = chart || window.echarts.init(box, null, { renderer: "svg" });
    var marks = data.marks.filter(function (m) { return m.minutes !== null; }).map(function (m) {
      return { xAxis: m.minutes, label: { formatter: m.label + " " + (zh() ? m.zh : m.en) } };
    });
    chart.setOption({
      animation: false,
      grid: { left: 56, right: 40, top: 36, bottom: 48 },
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v + "%"; } },
      xAxis: { type: "value", name: zh() ? "发布后分钟数" : "Minutes since issue", nameLocation: "middle", nameGap: 28, min: 0 },
      yAxis: { type: "value", name: zh() ? "覆盖率 %" : "Coverage %", min: 0, max: 100 },
      series: [{ type: "line", step: "end", symbol: "none", name: zh() ? "覆盖率" : "Coverage",
        data: data.curve, lineStyle: { width: 3, color: "#0b4fa8" }, itemStyle: { color: "#0b4fa8" },
        areaStyle: { color: "rgba(11,79,168,.12)" },
        markLine: { silent: true, symbol: "none", lineStyle: { type: "dashed", color: "#555" },
          label: { position: "end", rotate: 0 }, data: marks } }]
    }, true);
  }
  button.addEventListener("click", function () {
    var next = zh() ? "en" : "zh";
    document.body.className = next;
    document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
    draw();
  });
  window.addEventListener("resize", function () { if (chart) chart.resize(); });
  draw();
})();
</script>
</body>
</html>
"""


def _both(make) -> tuple[str, str]:  # noqa: ANN001 - lang → str
    return make("zh"), make("en")


def render(result: dict, scenario: Scenario, lang: str) -> str:
    views = {x: View(result, scenario, x) for x in ("zh", "en")}
    words = {x: Words(scenario, x) for x in ("zh", "en")}
    zh, w = views["zh"], views["zh"].warning or {}
    county = zh.places.name(next((r.code for r in scenario.directory.regions if r.kind == "county"), None))
    cov, timing, approval = w.get("coverage") or {}, w.get("timing") or {}, w.get("approval") or {}
    published = zh.published()
    title = (f"{county} {zh.title()} 发布与叫应报告", f"{county}: {views['en'].title()} — dissemination report")
    marks = [{"label": f"{p} %", "zh": duration(timing.get(f"coverage_{p}_seconds"), "zh"),
              "en": duration(timing.get(f"coverage_{p}_seconds"), "en"),
              "minutes": None if timing.get(f"coverage_{p}_seconds") is None
              else round(timing[f"coverage_{p}_seconds"] / 60, 2)} for p in (50, 90, 100)]

    def fact(fid: str, label: tuple[str, str], value) -> dict:  # noqa: ANN001 - a pair or one value
        return {"id": fid, "label": label, "value": value if isinstance(value, tuple) else (value, value)}

    facts = [fact("published-at", ("发布时刻", "Issued at"), zh.at(published)),
             fact("approval", ("审批用时", "Approval took"), _both(lambda x: duration(approval.get("delay_seconds"), x))),
             fact("grids", ("网格数", "Grids"), cov.get("grids", 0)),
             fact("confirmed", ("已叫应", "Confirmed"), cov.get("confirmed", 0)),
             fact("covered", ("已入户", "Covered door to door"), cov.get("covered", 0)),
             fact("open", ("未落实", "Open"), cov.get("open", 0) + cov.get("closed", 0)),
             fact("not-woken-count", ("未叫醒", "Not woken"), len(zh.not_woken()))]
    facts += [fact(f"t{p}", (f"{p}% 用时", f"Time to {p} %"),
                   _both(lambda x, p=p: duration(timing.get(f"coverage_{p}_seconds"), x))) for p in (50, 90, 100)]
    events = [{"at": zh.at(e["at_seconds"]), "text": (words["zh"].event(e["event"]), words["en"].event(e["event"]))}
              for e in result["events"]]
    villages = [{**v, "last": _both(lambda x, v=v: duration(v["last"], x))} for v in zh.villages()]
    en_rows = views["en"].grid_rows()
    not_woken = [{"place": f"{r['township']} / {r['village']}", "grid": r["grid_name"], "person": r["person"],
                  "phone": r["phone"], "at": zh.at(r["not_woken"], True),
                  "after": (f"{word(GRID_STATE, r['state'], 'zh')}（{r['how']}）",
                            f"{word(GRID_STATE, r['state'], 'en')} ({e['how']})")}
                 for r, e in zip(zh.grid_rows(), en_rows) if r["not_woken"] is not None]
    rungs = [{"grid": r["grid_name"], "words": (words_zh, words_en), "at": zh.at(at, True)}
             for r, e in zip(zh.grid_rows(), en_rows)
             for words_zh, words_en, at in zip(r["rungs"], e["rungs"], r["rung_times"])]
    counts_en = views["en"].rung_counts()
    rung_counts = [{"words": (k, list(counts_en)[i]), "n": n} for i, (k, n) in enumerate(zh.rung_counts().items())]
    channels = [{"name": (f"{word(CHANNEL, c, 'zh')}（{words['zh'].name(x)}）", f"{word(CHANNEL, c, 'en')} "
                                                                           f"({words['en'].name(x)})"),
                 "cells": [sum(s["inside"].values()), sent_count(s["inside"]), s["inside_delivered"],
                            s["outside"]["delivered"], len(s["lost"])]}
                for x in result["warnings"] for c, s in sorted(x["channels"].items())]
    verdict = _both(lambda x: T(x)("verdict_ok") if result["verdict"]["ok"]
                    else T(x)("verdict_failed", reasons=reasons(result["verdict"]["reasons"], x)))
    now = datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    context = {
        "lang": lang, "title": title, "colour": LEVEL_COLOUR.get(w.get("level"), "#666"),
        "level": _both(lambda x: views[x].title()),
        "sub": (f"{w.get('department', '')} · 发布 {zh.at(published)} · 模拟时钟 {zh.start.astimezone():%Y-%m-%d}",
                f"{w.get('department', '')} · issued {zh.at(published)} · simulated clock "
                f"{zh.start.astimezone():%Y-%m-%d}"),
        "story": _both(lambda x: T(x)("story")), "facts": facts, "verdict": verdict,
        "verdict_ok": result["verdict"]["ok"], "events": events, "curve": zh.curve(), "villages": villages,
        "village_head": [("乡镇", "Township"), ("村", "Village"), ("网格", "Grids"), ("已叫应", "Confirmed"),
                         ("已入户", "Covered"), ("未落实", "Open"), ("未叫醒", "Not woken"),
                         ("全部落实用时", "All reached after")],
        "not_woken": not_woken,
        "not_woken_head": [("乡镇 / 村", "Township / village"), ("网格", "Grid"), ("网格责任人", "Responsible"),
                           ("电话", "Phone"), ("未叫醒时刻", "Not woken at"), ("之后", "Afterwards")],
        "rungs": rungs, "rung_counts": rung_counts,
        "rung_head": [("网格", "Grid"), ("升级步骤", "Step"), ("时刻", "At")],
        "channels": channels,
        "channel_head": [("渠道（预警）", "Channel (warning)"), ("计划", "Planned"), ("已发出", "Sent"),
                         ("送达", "Delivered"), ("外部收到", "Received outside"), ("丢失", "Lost")],
        "legend": LEGEND,
        "generated": (f"报告生成于 {now}；warnd demo，虚构县，全部为模拟数据。",
                      f"Generated {now} by warnd demo; an invented county, all data simulated."),
        "data": {"curve": [[round(t / 60, 2), p] for t, p in zh.curve()], "marks": marks},
    }
    return Environment(autoescape=True).from_string(TEMPLATE).render(**context)


def write_html(out_dir: Path, result: dict, scenario: Scenario, lang: str) -> Path:
    for name in ECHARTS_FILES:
        if (VENDOR / name).exists():
            shutil.copyfile(VENDOR / name, out_dir / (name if name.endswith(".js") else f"echarts-{name}"))
    path = out_dir / "report.html"
    path.write_text(render(result, scenario, lang), encoding="utf-8")
    return path
