// Compose a warning: template (hazard → level → texts), actual or exercise, sender, the
// area by region tree and on the map (drawn polygons and circles), a live preview per
// channel with the first wave's duration at the configured rates, and — before the button
// is pressed — whether it waits for approval or goes out at once. ?update=ID and ?cancel=ID
// start from a stored warning, reference it, and show every change as a diff.
import { ApiError, L, api, boot, clearProblems, duration, el, fill, levelColour, levelName, markDrill,
  shownTime, showProblem, status } from "./common.js";
import { createMap, drawRegions, fit } from "./map.js";
import { createDrawer } from "./draw.js";
import { createTree } from "./regiontree.js";
import { capFromXml, capTime, fromLocalInput, localInput, mainInfo, newIdentifier } from "./cap.js";
import { channelName, diffFields, fieldOf, renderDiff, renderPreview } from "./compose_view.js";

const form = document.getElementById("compose-form");
const $ = (name) => form.elements[name];
const LEVEL_SEVERITY = { red: "Extreme", orange: "Severe", yellow: "Moderate", blue: "Minor" };
const LEVEL_PARAMETER = "warnd:level";
const TEXTS = ["event", "headline", "description", "instruction", "category", "severity", "urgency", "certainty"];

const page = {
  settings: { channels: [], approvals: {}, templates: [], green_channel: false },
  regions: [], tree: null, map: null, drawer: null, drawn: null,
  mode: "new", base: null, baseWarning: null, extraGeocodes: [],
  identifier: newIdentifier(), areaDescEdited: false, preview: null, seq: 0, timer: null,
  geocodeNames: ["warnd"],
};

// --- loading ---

async function loadSettings() {
  try {
    return await api("GET", "/api/v1/console/settings");
  } catch (err) {
    status(L(`无法读取控制台设置：${err.message}`, `Cannot read the console settings: ${err.message}`), "error");
    return page.settings;
  }
}

async function loadRegions() {
  try {
    return (await api("GET", "/api/v1/console/regions")).items;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    return (await api("GET", "/api/v1/directory/regions?limit=100000")).items; // before console_api existed
  }
}

function senders() {
  const s = page.settings;
  return s.senders || (s.user && s.user.senders) || [];
}

function setUpSender() {
  const list = senders().filter((x) => x !== "*");
  const slot = document.getElementById("sender-slot");
  const remembered = localStorage.getItem("warnd.sender") || "";
  if (list.length && !senders().includes("*")) {
    fill(slot, el("select", { id: "sender", name: "sender", required: true },
      list.map((x) => el("option", { value: x }, x))));
    if (list.includes(remembered)) $("sender").value = remembered;
  } else {
    fill(slot, el("input", { id: "sender", name: "sender", required: true, autocomplete: "off", list: "sender-list",
      value: remembered || list[0] || (page.settings.department || "").replace(/[\s,<&]/g, "") }),
    el("datalist", { id: "sender-list" }, list.map((x) => el("option", { value: x }))));
  }
}

function setUpTemplates() {
  page.settings.templates = page.settings.templates.filter((t) => t.allowed !== false); // what the caller may issue
  const hazards = [...new Set(page.settings.templates.map((t) => t.hazard))];
  const select = $("hazard");
  hazards.forEach((h) => select.append(el("option", { value: h }, h)));
  if (!hazards.length) document.getElementById("template-note").textContent = L("本部门没有预警模板。", "Your department has no templates.");
}

function template() {
  const hazard = $("hazard").value, level = $("level").value;
  return page.settings.templates.find((t) => t.hazard === hazard && t.level === level) || null;
}

function applyTemplate() {
  const t = template();
  const note = document.getElementById("template-note");
  const level = $("level").value;
  $("severity").value = LEVEL_SEVERITY[level];
  if (!t) {
    note.textContent = $("hazard").value ? L(`“${$("hazard").value}”没有${levelName(level)}模板：请自行填写。`,
      `No ${level} template for ${$("hazard").value}: write the texts yourself.`) : "";
    return;
  }
  $("event").value = t.event || "";
  $("headline").value = t.headline || "";
  $("description").value = t.description || "";
  $("instruction").value = t.instruction || "";
  $("category").value = t.category || "Met";
  $("severity").value = t.severity || LEVEL_SEVERITY[level];
  $("urgency").value = t.urgency || "Immediate";
  $("certainty").value = t.certainty || "Likely";
  $("expires").value = localInput(new Date(Date.now() + (t.expires_hours || 24) * 3600 * 1000));
  note.textContent = L(`已套用模板“${t.event}”，可以修改。`, `Template "${t.event}" applied; edit as needed.`);
}

function showLevel() {
  const level = $("level").value;
  document.getElementById("level-swatch").style.background = levelColour(level);
  document.getElementById("level-text").textContent = levelName(level);
}

function showStatus() {
  const drill = $("status").value === "Exercise";
  markDrill(drill ? "Exercise" : "Actual");
  form.classList.toggle("is-drill", drill);
  document.getElementById("drill-note").hidden = !drill;
}

// --- the area ---

async function setUpArea() {
  page.tree = createTree(document.getElementById("tree"), page.regions, { onChange: areaChanged });
  try {
    page.map = await createMap(document.getElementById("map"));
  } catch (err) {
    fill(document.getElementById("map"), el("p", { class: "muted" }, L("地图无法加载。", "The map did not load.")));
    return;
  }
  page.drawn = drawRegions(page.map, page.regions, {
    style: regionStyle,
    onClick: (region) => { if (!page.drawer.active()) { page.tree.toggle(region.code); } },
    label: (r) => `${r.name}`,
  });
  fit(page.map, page.drawn.layer);
  page.drawer = createDrawer(page.map, document.getElementById("draw-tools"), { onChange: areaChanged });
}

function regionStyle(region) {
  const touched = page.preview && page.preview.regions && page.preview.regions.includes(region.code);
  if (page.tree && page.tree.covered(region.code)) return { fillColor: "#1f5fbf", fillOpacity: 0.45, color: "#0b2f6b", dashArray: null };
  if (touched) return { fillColor: "#e86a00", fillOpacity: 0.3, color: "#7a2e00", dashArray: "4 3" };
  return { fillColor: "#9aa5b1", fillOpacity: 0.25, color: "#333", dashArray: null };
}

function areaDescription() {
  const codes = page.tree ? page.tree.selected() : [];
  const names = codes.map((c) => page.tree.name(c));
  const shown = names.length > 6 ? L(`${names.slice(0, 6).join("、")}等 ${names.length} 处`, `${names.slice(0, 6).join(", ")} and ${names.length - 6} more`)
    : names.join(L("、", ", "));
  const drawn = page.drawer ? page.drawer.polygons().length + page.drawer.circles().length : 0;
  const shapes = drawn ? L(`绘制区域 ${drawn} 处`, `${drawn} drawn shape(s)`) : "";
  return [shown, shapes].filter(Boolean).join(L("；", "; "));
}

function areaChanged() {
  if (page.drawn) page.drawn.restyle(regionStyle);
  if (!page.areaDescEdited) $("areaDesc").value = areaDescription();
  const codes = page.tree.selected();
  const polygons = page.drawer ? page.drawer.polygons().length : 0, circles = page.drawer ? page.drawer.circles().length : 0;
  document.getElementById("area-summary").textContent = codes.length || polygons || circles || page.extraGeocodes.length
    ? L(`已选：区域 ${codes.length} 个，多边形 ${polygons} 个，圆 ${circles} 个`, `Chosen: ${codes.length} region(s), ${polygons} polygon(s), ${circles} circle(s)`)
    : L("尚未选择区域。", "No area chosen yet.");
  changed();
}

function areas() {
  const out = [];
  const codes = page.tree ? page.tree.selected() : [];
  const desc = $("areaDesc").value.trim() || areaDescription() || L("预警区域", "Warning area");
  const geocodes = [...codes.map((value) => ({ valueName: page.geocodeNames[0], value })), ...page.extraGeocodes];
  const polygons = page.drawer ? page.drawer.polygons() : [], circles = page.drawer ? page.drawer.circles() : [];
  if (geocodes.length || polygons.length || circles.length) {
    const area = { areaDesc: desc };
    if (polygons.length) area.polygon = polygons;
    if (circles.length) area.circle = circles;
    if (geocodes.length) area.geocode = geocodes;
    out.push(area);
  }
  return out;
}

// --- the CAP JSON ---

function buildCap(sent = new Date()) {
  const base = page.base || {};
  const oldInfo = page.base ? mainInfo(page.base) : {};
  const info = { ...oldInfo, language: oldInfo.language || "zh-CN" };
  for (const name of ["event", "headline", "description", "instruction", "urgency", "severity", "certainty"]) {
    const value = $(name).value.trim();
    if (value) info[name] = value; else delete info[name];
  }
  info.category = [$("category").value];
  const expires = fromLocalInput($("expires").value);
  if (expires) info.expires = capTime(expires); else delete info.expires;
  info.parameter = [...(oldInfo.parameter || []).filter((p) => p.valueName !== LEVEL_PARAMETER && p.valueName !== "预警级别"),
    { valueName: LEVEL_PARAMETER, value: $("level").value }];
  info.area = areas();
  if (!info.area.length) delete info.area;
  for (const key of ["effective", "onset"]) delete info[key]; // a new message starts now
  const cap = {
    identifier: page.identifier, sender: $("sender").value.trim(), sent: capTime(sent),
    status: $("status").value, msgType: page.mode === "update" ? "Update" : page.mode === "cancel" ? "Cancel" : "Alert",
    scope: base.scope || "Public", info: [info],
  };
  if (base.code) cap.code = base.code;
  const note = $("note").value.trim();
  if (note) cap.note = note;
  if (page.base) cap.references = `${base.sender},${base.identifier},${base.sent}`;
  return cap;
}

// --- preview, decision, diff ---

function changed() {
  if (page.base) renderDiff(document.getElementById("diff"), document.getElementById("diff-section"),
    diffFields(page.base, buildCap(), page.tree));
  showDecision();
  clearTimeout(page.timer);
  page.timer = setTimeout(preview, 600);
}

async function preview() {
  const box = document.getElementById("preview-body");
  const cap = buildCap();
  if (!cap.info[0].area) {
    page.preview = null;
    fill(box, el("p", { class: "muted" }, L("选择区域后显示各渠道的预览。", "Choose an area to see what each channel sends.")));
    showDecision();
    return;
  }
  const seq = ++page.seq;
  box.setAttribute("aria-busy", "true");
  try {
    const result = await api("POST", "/api/v1/drafts/preview", cap);
    if (seq !== page.seq) return;
    page.preview = result;
    clearProblems(form);
    renderPreview(box, result, page.tree);
  } catch (err) {
    if (seq !== page.seq) return;
    page.preview = null;
    const active = document.activeElement;
    showProblem(form, err, fieldOf);
    if (active && active !== document.activeElement) active.focus(); // a preview never moves the focus
    fill(box, el("p", { class: "error preview-error" }, L("预览失败：", "No preview: "),
      (err.problem && (err.problem.title || err.problem.detail)) || err.message,
      L("（见标红的字段）", " (see the fields marked)")));
  } finally {
    if (seq === page.seq) box.removeAttribute("aria-busy");
    if (page.drawn) page.drawn.restyle(regionStyle);
    showDecision();
  }
}

function neededNow() {
  if (page.preview && Number.isInteger(page.preview.approvals_needed)) return page.preview.approvals_needed;
  const s = page.settings;
  if (s.green_channel) return 0;
  if (page.mode === "cancel") return s.approvals_cancel ?? 0;
  return s.approvals[$("level").value] ?? 0;
}

function showDecision() {
  const needed = neededNow();
  const button = document.getElementById("submit");
  const box = document.getElementById("decision");
  const drill = $("status").value === "Exercise";
  const drillText = drill ? L("（演练）", " (exercise)") : "";
  const kind = { new: "", update: L("更新：", "Update: "), cancel: L("解除：", "Cancel: ") }[page.mode];
  if (needed > 0) {
    button.textContent = `${L("提交签发", "Submit for approval")}${drillText}`;
    button.className = "primary big";
    fill(box, el("strong", {}, kind, L(`需 ${needed} 位签发人签发后才发布`, `Needs ${needed} approval${needed > 1 ? "s" : ""} before it goes out`)),
      needed >= 2 ? el("span", { class: "badge two-person" }, L("双人签发", "two-person")) : null,
      " ", L("提交后不会立即发送，进入签发队列。", "Submitting sends nothing yet: it waits in the approval queue."));
    box.dataset.kind = "wait";
  } else {
    button.textContent = `${L("立即发布", "Publish now")}${drillText}`;
    button.className = "danger big";
    fill(box, el("strong", {}, kind, L("不需签发：点击后立即发布并开始发送。", "No approval needed: pressing the button publishes and sends at once.")),
      page.preview ? ` ${L("首轮约需", "First wave about")} ${duration(page.preview.first_wave_seconds)}` : "");
    box.dataset.kind = "now";
  }
}

// --- update / cancel ---

async function loadBase(id, mode) {
  const warning = await api("GET", `/api/v1/warnings/${id}?deliveries=0`);
  const cap = capFromXml(warning.cap_xml);
  page.mode = mode;
  page.base = cap;
  page.baseWarning = warning;
  const info = mainInfo(cap);
  for (const name of TEXTS) if (info[name] !== undefined && name !== "category") $(name).value = info[name];
  if (info.category && info.category[0]) $("category").value = info.category[0];
  const levelParam = (info.parameter || []).find((p) => p.valueName === LEVEL_PARAMETER || p.valueName === "预警级别");
  $("level").value = warning.level || (levelParam && levelParam.value) || "red";
  if (info.expires) $("expires").value = localInput(new Date(info.expires));
  for (const radio of form.querySelectorAll('input[name="status"]')) radio.checked = radio.value === cap.status;
  if (![...form.querySelectorAll('input[name="status"]')].some((r) => r.checked)) {
    form.querySelector('input[name="status"][value="Exercise"]').checked = true; // Test/System: never go out as real
  }
  if (!$("sender").querySelector?.(`option[value="${CSS.escape(cap.sender)}"]`) && $("sender").tagName === "SELECT") {
    $("sender").append(el("option", { value: cap.sender }, cap.sender));
  }
  $("sender").value = cap.sender;
  const names = page.geocodeNames.map((n) => n.toLowerCase());
  const codes = [], polygons = [], circles = [];
  page.extraGeocodes = [];
  for (const area of info.area || []) {
    for (const g of area.geocode || []) {
      if (names.includes(g.valueName.toLowerCase()) && page.tree.has(g.value)) codes.push(g.value);
      else page.extraGeocodes.push(g);
    }
    polygons.push(...(area.polygon || []));
    circles.push(...(area.circle || []));
  }
  page.tree.setSelected(codes);
  if (page.drawer) page.drawer.load(polygons, circles);
  const descs = (info.area || []).map((a) => a.areaDesc).filter(Boolean);
  if (descs.length && descs.join(L("；", "; ")) !== areaDescription()) { // written by hand: kept
    $("areaDesc").value = descs.join(L("；", "; "));
    page.areaDescEdited = true;
  }
  banner(warning, cap);
}

function banner(warning, cap) {
  const box = document.getElementById("mode-banner");
  const title = page.mode === "update" ? L("更新预警", "Update of warning") : L("解除预警", "Cancel of warning");
  document.getElementById("compose-title").textContent = `${title} #${warning.id}`;
  document.title = `${title} #${warning.id} · warnd`;
  box.hidden = false;
  box.dataset.mode = page.mode;
  fill(box, el("p", {}, el("strong", {}, title, " "), el("a", { href: `/console/warnings/${warning.id}` }, `#${warning.id} ${warning.headline || warning.event}`),
    " · ", el("span", { class: `level ${warning.level}` }, levelName(warning.level)), " · ",
    L(`发布于 ${shownTime(warning.sent)}`, `sent ${shownTime(warning.sent)}`)),
  el("p", { class: "muted" }, L("引用（references）：", "References: "), el("code", {}, `${cap.sender},${cap.identifier},${cap.sent}`)),
  ["active", "awaiting"].includes(warning.state) ? null
    : el("p", { class: "error" }, L(`注意：该预警当前状态为“${warning.state}”。`, `Note: this warning is ${warning.state}.`)),
  page.mode === "cancel" ? el("p", {}, L("解除后，该预警的后续叫应和升级将停止。", "Cancelling stops the warning's further confirmations and escalations.")) : null);
}

// --- submit ---

async function submit(event) {
  event.preventDefault();
  clearTimeout(page.timer);
  clearProblems(form);
  const button = document.getElementById("submit");
  button.disabled = true;
  status(L("正在提交…", "Submitting…"));
  try {
    const cap = buildCap();
    const answer = await api("POST", "/api/v1/warnings", cap);
    localStorage.setItem("warnd.sender", cap.sender);
    status(L("已提交。", "Submitted."));
    location.assign(`/console/warnings/${answer.warning.id}`);
  } catch (err) {
    status("");
    showProblem(form, err, fieldOf);
    button.disabled = false;
  }
}

// --- start ---

async function start() {
  document.getElementById("tz-note").textContent = `(${boot.timezone})`;
  const [settings, regions] = await Promise.all([loadSettings(), loadRegions().catch((err) => {
    status(L(`无法读取区域：${err.message}`, `Cannot read the regions: ${err.message}`), "error");
    return [];
  })]);
  page.settings = { ...page.settings, ...settings };
  page.regions = regions;
  if (Array.isArray(page.settings.geocode_names) && page.settings.geocode_names.length) {
    page.geocodeNames = page.settings.geocode_names;
  }
  setUpSender();
  setUpTemplates();
  await setUpArea();
  $("severity").value = LEVEL_SEVERITY[$("level").value];
  $("expires").value = localInput(new Date(Date.now() + 24 * 3600 * 1000));
  const query = new URLSearchParams(location.search);
  const id = query.get("update") || query.get("cancel");
  if (id && /^\d+$/.test(id)) {
    try {
      await loadBase(id, query.get("update") ? "update" : "cancel");
    } catch (err) {
      status(L(`无法读取预警 #${id}：${err.message}`, `Cannot read warning #${id}: ${err.message}`), "error");
    }
  }
  form.addEventListener("input", (e) => {
    if (e.target.name === "areaDesc") page.areaDescEdited = e.target.value.trim() !== "";
    if (e.target.name !== "region-filter" && e.target.name !== "region") changed();
  });
  form.addEventListener("keydown", (e) => { // Enter in a field never sends a warning: only the button does
    if (e.key === "Enter" && e.target.tagName === "INPUT" && e.target.type !== "checkbox") e.preventDefault();
  });
  form.addEventListener("change", (e) => {
    if (e.target.name === "hazard" || (e.target.name === "level" && page.mode === "new")) applyTemplate();
    else if (e.target.name === "level") $("severity").value = LEVEL_SEVERITY[$("level").value];
    if (e.target.name === "level") showLevel();
    if (e.target.name === "status") showStatus();
    if (e.target.name !== "region" && e.target.name !== "region-filter") changed();
  });
  form.addEventListener("submit", submit);
  showLevel();
  showStatus();
  areaChanged();
  document.getElementById("preview").dataset.channels = page.settings.channels.map((c) => channelName(c.name)).join(",");
}

start();
