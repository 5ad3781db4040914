// The warnings list: newest first, filtered by state and kind, each row linking to its live
// view and report. The level is shown by colour AND by name; drills carry a 演练 badge.
import { L, api, el, fill, levelColour, levelName, shownTime, status } from "./common.js";

export const STATE_NAMES = {
  awaiting: ["待签发", "Awaiting approval"], rejected: ["已驳回", "Rejected"], active: ["生效中", "Active"],
  superseded: ["已更新", "Superseded"], cancelled: ["已解除", "Cancelled"], expired: ["已过期", "Expired"],
  ended: ["已结束", "Ended"],
};
const MSG_TYPES = { Alert: null, Update: ["更新", "Update"], Cancel: ["解除", "Cancel"] };

const form = document.getElementById("filters");
const body = document.getElementById("warnings-body");
const caption = document.getElementById("warnings-caption");

function stateName(state) {
  const names = STATE_NAMES[state];
  return names ? L(...names) : state;
}

function row(w) {
  const drill = w.status === "Exercise" || w.status === "Test";
  const levelCell = el("td", { class: "level-cell" },
    el("span", { class: `level ${w.level}` }, levelName(w.level)));
  levelCell.style.borderLeft = `8px solid ${levelColour(w.level)}`;
  const kind = MSG_TYPES[w.msg_type];
  const title = w.headline || w.event;
  return el("tr", { dataset: { id: w.id, state: w.state } },
    levelCell,
    el("td", {}, w.event, " ",
      drill ? el("span", { class: "badge drill" }, w.status === "Test" ? L("测试", "TEST") : L("演练", "EXERCISE")) : null,
      kind ? el("span", { class: "badge" }, L(...kind)) : null),
    el("td", {}, w.headline || ""),
    el("td", { class: `state state-${w.state}` }, stateName(w.state)),
    el("td", {}, w.department || ""),
    el("td", {}, el("time", { datetime: w.sent }, shownTime(w.sent))),
    el("td", { class: "links" },
      el("a", { href: `/console/warnings/${w.id}`, "aria-label": `${L("实况", "Live view")} ${title}` },
        L("实况", "Live view")),
      " · ",
      el("a", { href: `/console/warnings/${w.id}/report`, "aria-label": `${L("报告", "Report")} ${title}` },
        L("报告", "Report"))));
}

async function load() {
  const params = new URLSearchParams({ limit: "100" });
  for (const name of ["state", "status"]) {
    const value = form.elements[name].value;
    if (value) params.set(name, value);
  }
  try {
    const { items } = await api("GET", `/api/v1/warnings?${params}`);
    fill(body, items.length ? items.map(row)
      : el("tr", {}, el("td", { colspan: "7", class: "muted" }, L("没有符合条件的预警。", "No warnings match."))));
    caption.textContent = L(`共 ${items.length} 条（最多显示 100 条）`, `${items.length} shown (at most 100)`);
    status("");
  } catch (err) {
    status(L(`无法读取预警列表：${err.message}`, `Cannot read the warnings: ${err.message}`), "error");
  }
}

const query = new URLSearchParams(location.search);
for (const name of ["state", "status"]) {
  if (query.get(name)) form.elements[name].value = query.get(name);
}
form.addEventListener("change", () => {
  const params = new URLSearchParams();
  for (const name of ["state", "status"]) if (form.elements[name].value) params.set(name, form.elements[name].value);
  history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
  load();
});
form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
document.getElementById("refresh").addEventListener("click", load);
load();
