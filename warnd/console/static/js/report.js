// A warning's report: summary, coverage curve (ECharts, with a table beside it for print and
// screen readers), roll-up per township and village, 未叫醒, rungs fired, household outcomes;
// a drill's report says 演练 throughout and shows its evaluation (达标 / 未达标).
import { L, api, boot, duration, el, fill, levelColour, levelName, markDrill, shownTime, status } from "./common.js";

const id = boot.id;
const $ = (name) => document.getElementById(name);
const KINDS = { county: ["县", "County"], township: ["乡镇", "Township"], village: ["村", "Village"], grid: ["网格", "Grid"] };
const NW_STATES = { open: ["未叫醒", "Open"], confirmed: ["已确认", "Confirmed"], covered: ["已入户覆盖", "Covered"],
  closed: ["已结束", "Closed"] };
const ACTIONS = { notify: ["通知", "Notify"], door_to_door: ["入户", "Door to door"], alarm: ["告警", "Alarm"],
  backup: ["备用人", "Backup"], speaker: ["喇叭", "Speaker"], call: ["电话", "Call"] };
const UNITS = { minutes: ["分钟", "min"], grids: ["个网格", "grids"] };
const pick = (table, key) => (table[key] ? L(...table[key]) : key ?? "");
const num = (v) => (v === null || v === undefined ? "—" : String(v));
const empty = (cols, zh, en) => el("tr", {}, el("td", { colspan: String(cols), class: "muted" }, L(zh, en)));

let echartsLoading = null;

/** The vendored ECharts, loaded once as a classic script (it sets window.echarts). */
function echarts() {
  if (window.echarts) return Promise.resolve(window.echarts);
  if (!echartsLoading) {
    echartsLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/console/static/vendor/echarts/echarts.common.min.js";
      script.addEventListener("load", () => resolve(window.echarts));
      script.addEventListener("error", () => reject(new Error("echarts did not load")));
      document.head.append(script);
    });
  }
  return echartsLoading;
}

function renderHead(r) {
  const w = r.warning;
  const drill = r.is_drill;
  markDrill(w.status);
  const band = $("report-band");
  band.style.backgroundColor = levelColour(w.level);
  band.className = `report-band level-${w.level}`;
  const name = levelName(w.level);
  $("report-level").textContent = L(`${name}预警`, `${name.charAt(0).toUpperCase()}${name.slice(1)} warning`);
  $("report-drill").hidden = !drill;
  const kind = drill ? L("【演练】演练评估报告", "[EXERCISE] Drill report") : L("预警报告", "Warning report");
  $("report-title").textContent = `${kind}：${w.headline || w.event}`;
  document.title = `${kind} · ${w.headline || w.event} · warnd`;
  $("report-sub").textContent = [w.identifier, w.department, shownTime(w.sent)].filter(Boolean).join(" · ");
  if (drill) {
    for (const h of document.querySelectorAll("[data-drill-title]")) {
      if (!h.querySelector(".drill-tag")) h.prepend(el("span", { class: "drill-tag" }, L("演练", "EXERCISE")), " ");
    }
  }
  $("generated").textContent = L(`报告生成于 ${shownTime(r.generated_at)}`, `Generated ${shownTime(r.generated_at)}`);
}

function renderSummary(r) {
  const s = r.summary, c = s.counts, t = s.time_to, rel = s.release || {};
  const facts = [
    [L("级别", "Level"), `${levelName(r.warning.level)}`],
    [L("事件", "Event"), r.warning.event],
    [L("类型", "Status"), r.is_drill ? L("演练", "Exercise") : r.warning.status],
    [L("提交时间", "Submitted"), shownTime(rel.submitted_at)],
    [L("签发时间", "Approved"), shownTime(rel.approved_at)],
    [L("发布时间", "Published"), shownTime(rel.published_at)],
    [L("首条发出", "First sent"), shownTime(rel.first_sent_at) || "—"],
    [L("网格数", "Grids"), c.total],
    [L("已确认", "Confirmed"), c.confirmed],
    [L("已入户覆盖", "Covered"), c.covered],
    [L("未叫醒", "Not woken"), c.not_woken],
    [L("未覆盖", "Uncovered"), c.uncovered],
    [L("未落实", "Open"), c.open],
    [L("覆盖率", "Coverage"), `${s.percent}%`, "report-percent"],
    [L("50% 用时", "Time to 50 %"), t["50"] === null ? L("未达到", "not reached") : duration(t["50"])],
    [L("90% 用时", "Time to 90 %"), t["90"] === null ? L("未达到", "not reached") : duration(t["90"])],
    [L("100% 用时", "Time to 100 %"), t["100"] === null ? L("未达到", "not reached") : duration(t["100"])],
    [L("转移人数", "People moved"), s.totals ? s.totals.moved_people : "—"],
  ];
  fill($("summary"), facts.map(([k, v, key]) => el("div", {}, el("dt", {}, k), el("dd", { id: key }, num(v)))));
}

async function renderCurve(r) {
  const points = r.curve || [];
  const minutes = (s) => Math.round(s / 6) / 10;
  fill($("curve-body"), points.length ? points.map((p) => el("tr", {},
    el("td", { class: "n" }, minutes(p.seconds)), el("td", { class: "n" }, p.percent)))
    : empty(2, "尚无数据。", "No data yet."));
  const box = $("curve-chart");
  try {
    const charts = await echarts();
    const chart = charts.init(box, null, { renderer: "svg" });
    chart.setOption({
      animation: false,
      grid: { left: 50, right: 44, top: 30, bottom: 45 },
      tooltip: { trigger: "axis", valueFormatter: (v) => `${v}%` },
      xAxis: { type: "value", name: L("发布后分钟数", "Minutes since issue"), nameLocation: "middle", nameGap: 28, min: 0 },
      yAxis: { type: "value", name: L("覆盖率 %", "Coverage %"), min: 0, max: 100 },
      series: [{ type: "line", step: "end", symbol: "circle", symbolSize: 5, name: L("覆盖率", "Coverage"),
        data: points.map((p) => [minutes(p.seconds), p.percent]), lineStyle: { width: 3, color: "#0b4fa8" },
        itemStyle: { color: "#0b4fa8" },
        markLine: { silent: true, symbol: "none", lineStyle: { type: "dashed", color: "#555" },
          label: { formatter: "{c}%" }, data: [{ yAxis: 50 }, { yAxis: 90 }] } }],
    });
    window.addEventListener("resize", () => chart.resize());
    window.addEventListener("beforeprint", () => chart.resize());
  } catch (err) {
    fill(box, el("p", { class: "muted" }, L("图表无法加载，请看下面的数据表。", "The chart did not load; see the table below.")));
    $("curve-details").open = true;
  }
}

function renderRollup(r) {
  const rows = (r.rollup && r.rollup.regions) || [];
  fill($("rollup-body"), rows.length ? rows.map((x) => el("tr", { class: `kind-${x.kind}`, dataset: { code: x.code } },
    el("th", { scope: "row" }, x.name || x.code, el("span", { class: "muted code" }, ` ${x.code}`)),
    el("td", {}, pick(KINDS, x.kind)),
    ...[x.grids, x.confirmed, x.covered, x.open, x.not_woken, x.uncovered].map((v) => el("td", { class: "n" }, num(v))),
    el("td", { class: "n" }, x.reached_share === null ? "—" : (Math.round(1000 * x.reached_share) / 10).toString()),
    el("td", { class: "n" }, num(x.households && x.households.total)),
    el("td", { class: "n" }, num(x.moved_people))))
    : empty(11, "没有汇总。", "No roll-up."));
}

function renderNotWoken(r) {
  const rows = r.not_woken || [];
  fill($("report-not-woken-body"), rows.length ? rows.map((x) => el("tr", {},
    el("td", {}, [x.township, x.village].filter(Boolean).join(" / ")),
    el("th", { scope: "row" }, x.grid_name || x.grid),
    el("td", {}, x.person_name || x.person_id || "—"),
    el("td", {}, x.phone || "—"),
    el("td", {}, shownTime(x.not_woken_at)),
    el("td", {}, (x.sent_to_door || []).join("、") || "—"),
    el("td", {}, pick(NW_STATES, x.state)),
    el("td", {}, shownTime(x.woken_at) || "—")))
    : empty(8, "没有未叫醒的网格。", "No grid was not woken."));
}

function renderRungs(r) {
  const rows = r.rungs || [];
  fill($("rungs-body"), rows.length ? rows.map((x) => el("tr", {},
    el("th", { scope: "row" }, x.grid_name || x.grid), el("td", {}, x.ladder || ""), el("td", { class: "n" }, x.step),
    el("td", {}, pick(ACTIONS, x.action)), el("td", {}, shownTime(x.due_at)), el("td", {}, shownTime(x.fired_at))))
    : empty(6, "没有触发升级步骤。", "No rung fired."));
}

function renderHouseholds(r) {
  const h = r.households || { grids: [], total: null };
  const cells = (x) => [x.total, x.notified, x.moved, x.not_home, x.refused, x.needs_help, x.unmarked, x.moved_people]
    .map((v) => el("td", { class: "n" }, num(v)));
  const rows = (h.grids || []).map((x) => el("tr", {}, el("th", { scope: "row" }, x.grid_name || x.grid), ...cells(x)));
  if (h.total) rows.push(el("tr", { class: "total" }, el("th", { scope: "row" }, L("合计", "Total")), ...cells(h.total)));
  fill($("households-body"), rows.length ? rows : empty(9, "没有入户名单。", "No door-to-door lists."));
}

function renderDrill(r) {
  const section = $("drill-section");
  section.hidden = !r.drill;
  if (!r.drill) return;
  const verdict = (met) => el("span", { class: met ? "verdict met" : "verdict missed" },
    met ? L("✔ 达标", "✔ Met") : L("✖ 未达标", "✖ Missed"));
  fill($("drill-overall"), L("总体：", "Overall: "), verdict(r.drill.met));
  const unit = (u) => (UNITS[u] ? ` ${L(...UNITS[u])}` : "");
  fill($("evaluation-body"), r.drill.targets.map((t) => el("tr", { dataset: { key: t.key, met: t.met ? "yes" : "no" } },
    el("th", { scope: "row" }, L(t.name_zh, t.name_en)),
    el("td", { class: "n" }, `${num(t.target)}${unit(t.unit)}`),
    el("td", { class: "n" }, t.actual === null || t.actual === undefined ? L("未达到", "not reached") : `${t.actual}${unit(t.unit)}`),
    el("td", {}, verdict(t.met)))));
}

async function load() {
  try {
    const r = await api("GET", `/api/v1/warnings/${id}/report`);
    renderHead(r);
    renderDrill(r);
    renderSummary(r);
    renderRollup(r);
    renderNotWoken(r);
    renderRungs(r);
    renderHouseholds(r);
    await renderCurve(r);
  } catch (err) {
    status(L(`无法读取报告：${err.message}`, `Cannot read the report: ${err.message}`), "error");
  }
}

$("print").addEventListener("click", () => window.print());
// a printed report carries the curve's table too (a closed <details> would print nothing)
let wasOpen = false;
window.addEventListener("beforeprint", () => { wasOpen = $("curve-details").open; $("curve-details").open = true; });
window.addEventListener("afterprint", () => { $("curve-details").open = wasOpen; });
load();
