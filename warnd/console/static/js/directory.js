// The directory: regions, people, households, speakers (with presence) and subscribers, a page of
// 500 at a time ("加载更多"), a search over what is loaded, and (admins) a YAML import whose row
// errors are shown one per row and field.
import { L, api, el, fill, shownTime, status, clearProblems } from "./common.js";

const $ = (name) => document.getElementById(name);
const PAGE = 500; // the API's page size: a full page means there may be more
const KEYS = { regions: "code", people: "id", households: "id", speakers: "id", subscribers: "id" };
const REGION_KINDS = { province: ["省", "Province"], city: ["市", "City"], county: ["县", "County"],
  township: ["乡镇", "Township"], village: ["村", "Village"], grid: ["网格", "Grid"] };
const list = (v) => (Array.isArray(v) ? v.join("、") : v ?? "");
const yes = (v) => (v ? L("是", "yes") : L("否", "no"));

const COLUMNS = {
  regions: [["code", "编码", "Code"], ["name", "名称", "Name"],
    ["kind", "层级", "Kind", (r) => (REGION_KINDS[r.kind] ? L(...REGION_KINDS[r.kind]) : r.kind)],
    ["parent", "上级", "Parent"],
    ["polygon", "边界", "Outline", (r) => (Array.isArray(r.polygon) ? L(`${r.polygon.length} 点`, `${r.polygon.length} points`) : "—")]],
  people: [["id", "编号", "Id"], ["name", "姓名", "Name"], ["region", "区域", "Region"],
    ["roles", "角色", "Roles", (r) => list(r.roles)], ["phone", "电话", "Phone"], ["language", "语言", "Language"],
    ["backup", "备用人", "Backup"]],
  households: [["id", "编号", "Id"], ["grid", "网格", "Grid"], ["address", "地址", "Address"], ["phone", "电话", "Phone"],
    ["vulnerable", "需特别关照", "Vulnerable", (r) => yes(r.vulnerable)]],
  speakers: [["id", "编号", "Id"], ["grid", "网格", "Grid"],
    ["presence", "在线状态", "Presence", (r) => presenceCell(r.id)],
    ["since", "状态自", "Since", (r) => shownTime(presence.get(r.id)?.since) || "—"]],
  subscribers: [["id", "编号", "Id"], ["url", "地址", "URL"], ["format", "格式", "Format"],
    ["regions", "区域", "Regions", (r) => list(r.regions)], ["levels", "级别", "Levels", (r) => list(r.levels) || L("全部", "all")],
    ["statuses", "类型", "Statuses", (r) => list(r.statuses) || L("全部", "all")],
    ["public", "公众", "Public", (r) => yes(r.public)], ["active", "启用", "Active", (r) => yes(r.active)]],
};

let kind = "regions";
let items = [];
let more = false;
let presence = new Map(); // speaker id → {online, since, detail}
let loadToken = 0;

function presenceCell(speakerId) {
  const p = presence.get(speakerId);
  if (!p || p.online === null || p.online === undefined) {
    return el("span", { class: "presence unknown" }, L("? 未上报", "? never reported"));
  }
  return p.online ? el("span", { class: "presence online" }, L("● 在线", "● online"))
    : el("span", { class: "presence offline" }, L("✖ 离线", "✖ offline"), p.detail ? ` (${p.detail})` : "");
}

function cellText(row, column) {
  const [key, , , fn] = column;
  const value = fn ? fn(row) : row[key];
  return value === null || value === undefined || value === "" ? "—" : value;
}

function matches(row, q) {
  if (!q) return true;
  const text = COLUMNS[kind].map((c) => {
    const v = cellText(row, c);
    return v instanceof Node ? v.textContent : String(v);
  }).join(" ").toLowerCase();
  return q.split(/\s+/).every((word) => text.includes(word));
}

function render() {
  const columns = COLUMNS[kind];
  fill($("dir-head"), el("tr", {}, columns.map(([, zh, en]) => el("th", { scope: "col" }, L(zh, en)))));
  const q = $("dir-q").value.trim().toLowerCase();
  const shown = items.filter((row) => matches(row, q));
  fill($("dir-body"), shown.length ? shown.map((row) => el("tr", { dataset: { key: row[KEYS[kind]] } },
    columns.map((c, i) => (i === 0 ? el("th", { scope: "row" }, cellText(row, c)) : el("td", {}, cellText(row, c))))))
    : el("tr", {}, el("td", { colspan: String(columns.length), class: "muted" },
      items.length ? L("没有符合搜索的条目。", "Nothing matches the search.") : L("没有条目。", "No entries."))));
  const tab = document.querySelector(`[role=tab][data-kind="${kind}"]`);
  $("dir-caption").textContent = tab.textContent;
  $("dir-count").textContent = q
    ? L(`已读取 ${items.length} 条，符合 ${shown.length} 条${more ? "（还有更多未读取）" : ""}`,
      `${shown.length} of ${items.length} loaded match${more ? " (more not loaded yet)" : ""}`)
    : L(`已读取 ${items.length} 条${more ? "（还有更多）" : ""}`, `${items.length} loaded${more ? " (more to load)" : ""}`);
  $("dir-more").hidden = !more;
}

async function loadPage(reset) {
  const token = ++loadToken;
  const after = reset || !items.length ? null : items[items.length - 1][KEYS[kind]];
  const params = new URLSearchParams();
  if (after !== null) params.set("after", after);
  try {
    const [page, pres] = await Promise.all([
      api("GET", `/api/v1/directory/${kind}${params.toString() ? `?${params}` : ""}`),
      kind === "speakers" && reset ? api("GET", "/api/v1/speakers/presence") : Promise.resolve(null),
    ]);
    if (token !== loadToken) return; // another tab was chosen meanwhile
    if (pres) presence = new Map(pres.items.map((p) => [p.id, p]));
    items = reset ? page.items : items.concat(page.items);
    more = page.items.length >= PAGE;
    render();
    status("");
  } catch (err) {
    status(L(`无法读取名录：${err.message}`, `Cannot read the directory: ${err.message}`), "error");
  }
}

function choose(tab, focus = false) {
  for (const t of document.querySelectorAll("[role=tab]")) {
    const on = t === tab;
    t.setAttribute("aria-selected", on ? "true" : "false");
    t.tabIndex = on ? 0 : -1;
  }
  if (focus) tab.focus();
  $("dir-panel").setAttribute("aria-labelledby", tab.id);
  kind = tab.dataset.kind;
  items = [];
  more = false;
  history.replaceState(null, "", `?kind=${kind}`);
  fill($("dir-body"), el("tr", {}, el("td", { class: "muted" }, L("正在读取…", "Loading…"))));
  loadPage(true);
}

function wireTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => choose(tab));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      choose(tabs[(next + tabs.length) % tabs.length], true);
    });
  }
  const wanted = new URLSearchParams(location.search).get("kind");
  choose(tabs.find((t) => t.dataset.kind === wanted) || tabs[0]);
}

// ---------------------------------------------------------------- import

/** "import.yaml:12.name" → {row: 12, field: "name"}; anything else as it came. */
function whereOf(field) {
  const m = /^[^:]*:(\d+)(?:\.(.+))?$/.exec(field || "");
  return m ? { row: m[1], field: m[2] || "" } : { row: "", field: field || "" };
}

function showImportErrors(err) {
  const problem = err.problem || {};
  const errors = problem.errors || [];
  const title = (L(problem.title_zh, problem.title_en) || problem.title || err.message);
  if (!errors.length) {
    fill($("import-result"), el("p", { class: "error", role: "alert" }, title));
    return;
  }
  fill($("import-result"), el("p", { class: "error", role: "alert" },
    L(`导入失败：${title}，共 ${errors.length} 处问题；没有写入任何条目。`,
      `Import failed: ${title}; ${errors.length} problem(s); nothing was written.`)),
  el("div", { class: "table-wrap" }, el("table", { id: "import-errors" },
    el("caption", {}, L("逐行错误", "Errors per row")),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "n" }, L("行", "Row")),
      el("th", { scope: "col" }, L("字段", "Field")), el("th", { scope: "col" }, L("问题", "Problem")))),
    el("tbody", {}, errors.map((e) => {
      const where = whereOf(e.field);
      return el("tr", {}, el("td", { class: "n" }, where.row || "—"), el("th", { scope: "row" }, where.field || "—"),
        el("td", {}, L(e.detail_zh, e.detail_en)));
    })))));
}

function showImportCounts(counts) {
  const kinds = ["regions", "people", "households", "speakers", "subscribers"];
  const names = { regions: ["区域", "Regions"], people: ["人员", "People"], households: ["住户", "Households"],
    speakers: ["喇叭", "Speakers"], subscribers: ["订阅方", "Subscribers"] };
  fill($("import-result"), el("p", { class: "ok" }, L("导入完成。", "Imported.")),
    el("div", { class: "table-wrap" }, el("table", { id: "import-counts" },
      el("caption", {}, L("导入结果", "What the import did")),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, L("类别", "Kind")),
        el("th", { scope: "col", class: "n" }, L("新增", "Inserted")), el("th", { scope: "col", class: "n" }, L("更新", "Updated")),
        el("th", { scope: "col", class: "n" }, L("未变", "Unchanged")))),
      el("tbody", {}, kinds.map((k) => el("tr", {}, el("th", { scope: "row" }, L(...names[k])),
        ["inserted", "updated", "unchanged"].map((what) => el("td", { class: "n" }, counts[`${k}.${what}`] ?? 0))))))));
}

function wireImport() {
  const form = $("import-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(form);
    fill($("import-result"));
    const file = form.elements.file.files[0];
    if (!file) {
      $("import-file-error").textContent = L("请选择一个 YAML 文件。", "Choose a YAML file.");
      form.elements.file.setAttribute("aria-invalid", "true");
      form.elements.file.focus();
      return;
    }
    const button = $("import-submit");
    button.disabled = true;
    try {
      const counts = await api("POST", "/api/v1/directory/import", file, { headers: { "Content-Type": "application/yaml" } });
      showImportCounts(counts);
      form.reset();
      loadPage(true);
    } catch (err) {
      showImportErrors(err);
    } finally {
      button.disabled = false;
    }
  });
}

$("dir-search").addEventListener("submit", (event) => event.preventDefault());
$("dir-q").addEventListener("input", render);
$("dir-more").addEventListener("click", () => loadPage(false));
wireTabs();
wireImport();
