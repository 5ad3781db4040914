// The live view of one warning: what the operator acts on first (level, grids still open,
// 未叫醒, alarms), then the map by grid state, channels, door-to-door lists and speakers.
// Everything follows the server-sent snapshot stream; nothing needs a reload.
import { L, api, boot, duration, el, fill, follow, levelColour, levelName, markDrill, shownTime, status,
  showProblem, clearProblems, ApiError } from "./common.js";
import { STATE_COLOURS, createMap, drawRegions, fit } from "./map.js";

const id = boot.id;
const canOperate = (boot.user.rights || []).includes("operate");

export const GRID_STATES = {
  confirmed: ["已确认", "Confirmed", "✔"], covered: ["已入户覆盖", "Covered", "⌂"], open: ["未落实", "Open", "…"],
  not_woken: ["未叫醒", "Not woken", "!"], uncovered: ["未覆盖", "Uncovered", "✖"],
};
const WARNING_STATES = {
  awaiting: ["待签发", "Awaiting approval"], rejected: ["已驳回", "Rejected"], active: ["生效中", "Active"],
  superseded: ["已更新", "Superseded"], cancelled: ["已解除", "Cancelled"], expired: ["已过期", "Expired"],
  ended: ["已结束", "Ended"],
};
const CHANNELS = { sms: ["短信", "SMS"], voice: ["语音电话", "Voice call"], speaker: ["喇叭", "Speaker"],
  webhook: ["Webhook", "Webhook"], wechat: ["微信", "WeChat"], email: ["邮件", "E-mail"] };
const MSG_TYPES = { Update: ["更新", "Update"], Cancel: ["解除", "Cancel"] };
const EVENTS = {
  required: ["需确认", "Confirmation required"], not_woken: ["未叫醒", "Not woken"], confirmed: ["已确认", "Confirmed"],
  covered: ["已入户覆盖", "Covered"], uncovered: ["未覆盖", "Uncovered"], "send.planned": ["计划发送", "Send planned"],
  "send.sent": ["已发出", "Sent"], "send.delivered": ["已送达", "Delivered"], "send.failed": ["发送失败", "Send failed"],
  answer: ["回复", "Answer"], "rung.fired": ["升级步骤触发", "Rung fired"], alarm: ["告警", "Alarm"],
  "door.list": ["入户名单", "Door-to-door list"], "door.completed": ["入户完成", "Door-to-door done"],
  "door.mark": ["入户标记", "Door mark"], "door.report": ["入户报告", "Door report"],
};

const $ = (name) => document.getElementById(name);
const pick = (table, key) => (table[key] ? L(table[key][0], table[key][1]) : key);

let latest = null;
let sinceBase = null; // {seconds, at: performance.now()} to tick between snapshots
let mapView = null;
let grids = new Map(); // grid code → snapshot grid row
let openGrid = null; // the grid whose timeline is shown

// ---------------------------------------------------------------- head

function renderHead(s) {
  const w = s.warning;
  const band = $("level-band");
  band.style.backgroundColor = levelColour(w.level);
  band.className = `level-band level-${w.level}`;
  const name = levelName(w.level);
  $("level-name").textContent = L(`${name}预警`, `${name.charAt(0).toUpperCase()}${name.slice(1)} warning`);
  const kind = MSG_TYPES[w.msg_type];
  $("msg-type").hidden = !kind;
  $("msg-type").textContent = kind ? L(...kind) : "";
  const drill = w.status === "Exercise" || w.status === "Test";
  markDrill(w.status);
  $("drill-mark").hidden = !drill;
  $("drill-mark").textContent = w.status === "Test" ? L("测试", "TEST") : L("演练", "EXERCISE");
  $("event").textContent = w.event;
  $("headline").textContent = w.headline || "";
  document.title = `${drill ? L("【演练】", "[EXERCISE] ") : ""}${w.headline || w.event} · warnd`;
  $("grids-open").textContent = String(s.grids_open);
  $("grids-open").dataset.zero = s.grids_open === 0 ? "yes" : "no";
  $("percent").textContent = `${s.percent}%`;
  $("warning-state").textContent = pick(WARNING_STATES, w.state);
  sinceBase = s.since_issue_seconds === null ? null : { seconds: s.since_issue_seconds, at: performance.now() };
  tick();
}

function tick() {
  const box = $("since-issue");
  if (!sinceBase) {
    box.textContent = L("尚未发布", "not yet published");
    return;
  }
  box.textContent = duration(sinceBase.seconds + (performance.now() - sinceBase.at) / 1000);
}

// ---------------------------------------------------------------- act-on lists

function renderNotWoken(s) {
  const rows = s.not_woken || [];
  const total = (s.totals && s.totals.not_woken) || rows.length;
  $("not-woken-count").textContent = `(${total})`;
  fill($("not-woken-body"), rows.length ? rows.map((r) => el("tr", { dataset: { grid: r.grid } },
    el("th", { scope: "row" }, gridButton(r.grid, r.grid_name || r.grid)),
    el("td", { "data-label": L("责任人", "Person") }, r.person_name || r.person_id || "—"),
    el("td", { "data-label": L("电话", "Phone") }, r.phone ? el("a", { href: `tel:${r.phone}` }, r.phone)
      : el("span", { class: "muted" }, "—")),
    el("td", { "data-label": L("未叫醒起", "Since") }, el("time", { datetime: r.not_woken_at }, shownTime(r.not_woken_at))),
    el("td", { "data-label": L("已派上门", "Sent to the door") }, (r.sent_to_door || []).length ? r.sent_to_door.join("、")
      : el("span", { class: "muted" }, L("尚未派人", "nobody yet")),
    r.list_assignee ? el("div", { class: "muted" }, L(`入户名单：${r.list_assignee}`, `List: ${r.list_assignee}`)) : null)))
    : el("tr", {}, el("td", { colspan: "5", class: "muted" }, L("没有未叫醒的网格。", "No grid is not woken."))));
  if (total > rows.length) {
    $("not-woken-body").append(el("tr", {}, el("td", { colspan: "5", class: "muted" },
      L(`仅显示前 ${rows.length} 条，共 ${total} 条`, `First ${rows.length} of ${total} shown`))));
  }
}

/** An alarm's code as people read it (the code itself kept for what is not known here). */
function alarmName(code) {
  const c = code || "";
  if (c.startsWith("escalation.") && c.endsWith(".unconfirmed")) return L("网格未确认", "Grid not confirmed");
  if (c === "approval.overdue") return L("待签发超时", "Approval overdue");
  if (c === "door.refused") return L("住户拒绝转移", "A household refused to move");
  if (c === "door.needs_help") return L("住户需要帮助", "A household needs help");
  return c;
}

function alarmText(a) {
  const d = a.detail || {};
  const known = a.grid ? grids.get(a.grid) : null;
  const grid = a.grid ? (known?.name || a.grid) : "";
  const person = known?.person_name || d.responsible;  // a name where the snapshot has one, else the id
  return [alarmName(a.code), grid, person ? L(`责任人 ${person}`, `responsible ${person}`) : ""]
    .filter(Boolean).join(" · ");
}

function renderAlarms(s) {
  const rows = s.alarms || [];
  const open = rows.filter((a) => !a.acknowledged_at);
  $("alarms-count").textContent = `(${L(`未确认 ${open.length}`, `${open.length} open`)})`;
  fill($("alarms-list"), rows.length ? rows.map((a) => el("li", {
    class: a.acknowledged_at ? "alarm done" : "alarm open", dataset: { alarm: a.id } },
    el("span", { class: "alarm-flag" }, a.acknowledged_at ? L("已确认", "Acknowledged") : L("未确认", "Open")),
    el("span", { class: "alarm-text" }, alarmText(a), " ",
      el("time", { class: "muted", datetime: a.at }, shownTime(a.at))),
    a.acknowledged_at
      ? el("span", { class: "muted" }, L(`${a.acknowledged_by || ""} 于 ${shownTime(a.acknowledged_at)}`,
        `by ${a.acknowledged_by || "?"} at ${shownTime(a.acknowledged_at)}`))
      : canOperate
        ? el("button", { type: "button", class: "primary ack", "aria-label": `${L("确认告警", "Acknowledge")} ${alarmText(a)}`,
          onclick: (event) => acknowledge(a, event.currentTarget) }, L("确认告警", "Acknowledge"))
        : null))
    : el("li", { class: "muted" }, L("没有告警。", "No alarms.")));
}

async function acknowledge(alarm, button) {
  button.disabled = true;
  try {
    await api("POST", `/api/v1/alarms/${alarm.id}/acknowledge`);
    status(L("告警已确认。", "Alarm acknowledged."), "info");
    refresh();
  } catch (err) {
    button.disabled = false;
    status(L(`无法确认告警：${err.message}`, `Cannot acknowledge: ${err.message}`), "error");
  }
}

// ---------------------------------------------------------------- map and grids

function gridButton(code, name) {
  return el("button", { type: "button", class: "link grid-link", dataset: { grid: code },
    onclick: () => showTimeline(code) }, name);
}

function stateBadge(state) {
  const names = GRID_STATES[state];
  return el("span", { class: `state-badge state-${state}` }, names ? `${names[2]} ${L(names[0], names[1])}` : state);
}

function renderLegend(s) {
  const c = s.counts || {};
  fill($("legend"), Object.entries(GRID_STATES).map(([state, names]) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" }, names[2]);
    swatch.style.backgroundColor = STATE_COLOURS[state];
    return el("li", { dataset: { state } }, swatch, `${L(names[0], names[1])} ${c[state] ?? 0}`);
  }));
}

function gridStyle(region) {
  const g = grids.get(region.code);
  if (region.kind !== "grid") return { fillOpacity: 0.05, fillColor: "#9aa5b1", color: "#555", weight: 1 };
  if (!g) return { fillOpacity: 0.1, fillColor: "#9aa5b1", color: "#888", weight: 1, dashArray: "3" };
  return { fillColor: STATE_COLOURS[g.state] || "#9aa5b1", fillOpacity: 0.6, color: "#222", weight: 1,
    dashArray: g.state === "not_woken" || g.state === "uncovered" ? "6 3" : null };
}

function gridLabel(region) {
  const g = grids.get(region.code);
  return g ? `${region.name} · ${pick(GRID_STATES, g.state)}${g.person_name ? ` · ${g.person_name}` : ""}` : region.name;
}

async function setUpMap() {
  try {
    const [map, { items }] = await Promise.all([createMap($("live-map")), api("GET", "/api/v1/console/regions")]);
    const view = drawRegions(map, items, { style: gridStyle, label: gridLabel,
      onClick: (region) => { if (grids.has(region.code)) showTimeline(region.code); } });
    mapView = { map, ...view };
    map.invalidateSize();
    new ResizeObserver(() => map.invalidateSize()).observe($("live-map"));
    const mine = window.L.featureGroup([...grids.keys()].map((c) => view.byCode.get(c)?.shape).filter(Boolean));
    fit(map, mine.getLayers().length ? mine : view.layer);
    if (!mine.getLayers().length && grids.size) {
      $("live-map").after(el("p", { class: "muted", id: "map-note" }, L("名录中没有本预警网格的边界，地图上无法着色；请用下面的网格列表。",
        "The directory has no outlines for this warning's grids, so the map cannot colour them; use the grid table below.")));
    }
  } catch (err) {
    fill($("live-map"), el("p", { class: "error" }, L(`地图无法加载：${err.message}`, `The map did not load: ${err.message}`)));
  }
}

function restyleMap() {
  if (!mapView) return;
  mapView.restyle(gridStyle);
  for (const { region, shape } of mapView.byCode.values()) shape.setTooltipContent(gridLabel(region));
}

function renderGrids(s) {
  grids = new Map((s.grids || []).map((g) => [g.grid, g]));
  fill($("grids-body"), (s.grids || []).map((g) => el("tr", { dataset: { grid: g.grid, state: g.state } },
    el("th", { scope: "row" }, g.name || g.grid), el("td", {}, stateBadge(g.state)),
    el("td", {}, g.person_name || "—"),
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => showTimeline(g.grid),
      "aria-label": `${L("时间线", "Timeline")} ${g.name || g.grid}` }, L("时间线", "Timeline"))))));
  restyleMap();
}

// ---------------------------------------------------------------- progress, lists, speakers

function renderProgress(s) {
  for (const p of ["50", "90", "100"]) {
    const v = s.time_to ? s.time_to[p] : null;
    $(`time-${p}`).textContent = v === null || v === undefined ? L("未达到", "not yet") : duration(v);
  }
  const rows = s.channels || [];
  fill($("channels-body"), rows.length ? rows.map((c) => el("tr", { dataset: { channel: c.channel } },
    el("th", { scope: "row" }, pick(CHANNELS, c.channel)),
    el("td", { class: "n" }, c.planned), el("td", { class: "n" }, c.sent), el("td", { class: "n" }, c.delivered),
    el("td", { class: c.failed ? "n bad" : "n" }, c.failed)))
    : el("tr", {}, el("td", { colspan: "5", class: "muted" }, L("尚无发送。", "Nothing sent yet."))));
}

function renderLists(s) {
  const rows = s.call_lists || [];
  $("lists-count").textContent = `(${(s.totals && s.totals.call_lists) || rows.length})`;
  fill($("call-lists-body"), rows.length ? rows.map((c) => {
    const bar = el("progress", { max: String(Math.max(1, c.total)), value: String(c.marked),
      "aria-label": `${c.grid_name || c.grid} ${c.marked}/${c.total}` });
    return el("tr", { dataset: { list: c.id } },
      el("th", { scope: "row" }, gridButton(c.grid, c.grid_name || c.grid)),
      el("td", { "data-label": L("负责人", "Walker") }, c.assignee || "—"),
      el("td", { "data-label": L("进度", "Progress") }, bar, " ", L(`已标记 ${c.marked}/${c.total} 户，已到 ${c.reached}`,
        `${c.marked}/${c.total} marked, ${c.reached} reached`)),
      el("td", { "data-label": L("完成", "Done") }, c.completed_at ? el("time", { datetime: c.completed_at }, shownTime(c.completed_at))
        : el("span", { class: "muted" }, L("进行中", "in progress"))));
  }) : el("tr", {}, el("td", { colspan: "4", class: "muted" }, L("没有入户名单。", "No door-to-door lists."))));
}

function renderSpeakers(s) {
  const sp = s.speakers || { online: 0, offline: 0, offline_ids: [] };
  const parts = [
    el("span", { class: "sp-online" }, L(`在线 ${sp.online}`, `${sp.online} online`)), " · ",
    el("span", { class: sp.offline ? "sp-offline bad" : "sp-offline" }, L(`离线 ${sp.offline}`, `${sp.offline} offline`)),
  ];
  if (sp.unknown) parts.push(" · ", el("span", { class: "muted" }, L(`未上报 ${sp.unknown}`, `${sp.unknown} never reported`)));
  if (sp.offline_ids && sp.offline_ids.length) {
    parts.push(el("span", { class: "offline-ids" }, L("离线：", " Offline: "), sp.offline_ids.join("、")));
  }
  fill($("speakers"), parts);
}

function render(snapshot) {
  latest = snapshot;
  renderGrids(snapshot);
  renderHead(snapshot);
  renderNotWoken(snapshot);
  renderAlarms(snapshot);
  renderLegend(snapshot);
  renderProgress(snapshot);
  renderLists(snapshot);
  renderSpeakers(snapshot);
  if (openGrid && $("grid-dialog").open) updateDialogState();
}

async function refresh() {
  try {
    render(await api("GET", `/api/v1/warnings/${id}/live`));
  } catch (err) {
    status(L(`无法读取实况：${err.message}`, `Cannot read the live view: ${err.message}`), "error");
  }
}

// ---------------------------------------------------------------- a grid's timeline

function eventText(e) {
  const bits = [pick(EVENTS, e.event)];
  if (e.channel) bits.push(pick(CHANNELS, e.channel));
  if (e.purpose && e.purpose !== "warning") bits.push(e.purpose);
  if (e.recipient_id) bits.push(e.recipient_id);
  if (e.person_id && !e.recipient_id) bits.push(e.person_id);
  if (e.event === "rung.fired") bits.push(L(`第 ${e.step} 步 ${e.action}`, `step ${e.step} ${e.action}`));
  if (e.by) bits.push(L(`由 ${e.by}`, `by ${e.by}`));
  if (e.mark) bits.push(e.mark);
  if (e.body) bits.push(`“${e.body}”`);
  if (e.reason) bits.push(L(`原因：${e.reason}`, `reason: ${e.reason}`));
  if (e.code) bits.push(e.code);
  return bits.join(" · ");
}

function updateDialogState() {
  const g = grids.get(openGrid);
  fill($("grid-dialog-state"), g ? [stateBadge(g.state), " ", g.person_name ? L(`责任人：${g.person_name}`,
    `Responsible: ${g.person_name}`) : ""] : []);
  const form = $("confirm-form");
  if (form) form.hidden = !g || g.state === "confirmed" || g.state === "covered";
}

async function showTimeline(code) {
  openGrid = code;
  const dialog = $("grid-dialog");
  const g = grids.get(code);
  $("grid-dialog-title").textContent = `${L("网格时间线", "Grid timeline")}：${g ? g.name || code : code}`;
  updateDialogState();
  fill($("grid-timeline"), el("li", { class: "muted" }, L("正在读取…", "Loading…")));
  const form = $("confirm-form");
  if (form) { clearProblems(form); form.reset(); }
  if (!dialog.open) dialog.showModal();
  try {
    const t = await api("GET", `/api/v1/warnings/${id}/grids/${encodeURIComponent(code)}/timeline`);
    const events = [...(t.events || [])].sort((a, b) => (a.at || "").localeCompare(b.at || ""));
    fill($("grid-timeline"), events.length ? events.map((e) => el("li", { dataset: { event: e.event } },
      el("time", { datetime: e.at }, shownTime(e.at)), " ", eventText(e)))
      : el("li", { class: "muted" }, L("尚无事件。", "No events yet.")));
    if (t.truncated) $("grid-timeline").append(el("li", { class: "muted" }, L("（仅显示部分事件）", "(some events left out)")));
  } catch (err) {
    fill($("grid-timeline"), el("li", { class: "error" }, L(`无法读取时间线：${err.message}`, `Cannot read the timeline: ${err.message}`)));
  }
}

function wireDialog() {
  const dialog = $("grid-dialog");
  $("grid-dialog-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { openGrid = null; });
  const form = $("confirm-form");
  if (!form) return;
  form.elements.reason.addEventListener("input", () => clearProblems(form));  // the hint goes once typed
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(form);
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      showProblem(form, new ApiError(422, { title: L("请填写原因", "A reason is needed"), errors: [{ field: "reason",
        detail_zh: "请填写原因（例如：已电话联系责任人，其确认已收到）", detail_en: "Give a reason (e.g. phoned the person, who confirmed)" }] }));
      return;
    }
    const g = grids.get(openGrid);
    if (!g) return;
    const button = $("confirm-submit");
    button.disabled = true;
    try {
      await api("POST", `/api/v1/warnings/${id}/confirmations/${g.confirmation_id}`, { reason });
      status(L(`已记录电话确认：${g.name || g.grid}`, `Phoned confirmation recorded: ${g.name || g.grid}`), "info");
      form.reset();
      await refresh();
      showTimeline(g.grid);
    } catch (err) {
      showProblem(form, err);
    } finally {
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- start

async function start() {
  wireDialog();
  setInterval(tick, 1000);
  await refresh();
  await setUpMap();
  if (latest) restyleMap();
  const source = follow(`/api/v1/warnings/${id}/live/stream`, render);
  source.addEventListener("end", (event) => {
    let reason = "";
    try { reason = JSON.parse(event.data).reason; } catch (_) { reason = ""; }
    if (reason === "not_allowed" || reason === "not_found") {
      source.close();
      const state = $("live-state");
      state.textContent = L("实时更新已结束（请重新登录或刷新）", "Live updates ended (log in again or reload)");
      state.dataset.kind = "bad";
    }
  });
}

start();
