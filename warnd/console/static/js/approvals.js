// The approval queue (签发): what waits, since when (counting up live), by whom, at which
// level, drill or not, who has approved and how many are needed ("双人签发" for two);
// 签发 approves, 驳回 rejects with a required reason. Refreshed every 10 s and after each
// action; while a rejection is being written the list is not redrawn under the writer.
import { L, api, duration, el, fill, levelColour, levelName, showProblem, shownTime, status } from "./common.js";

const REFRESH_MS = 10000;
const queue = document.getElementById("queue");
const refreshed = document.getElementById("refreshed");
let fetchedAt = Date.now();
let busy = false;

function waitingText(item) {
  return duration(item.waiting_seconds + (Date.now() - fetchedAt) / 1000);
}

function tick() {
  for (const node of queue.querySelectorAll("[data-waiting]")) {
    const seconds = Number(node.dataset.waiting) + (Date.now() - fetchedAt) / 1000;
    node.textContent = duration(seconds);
    node.classList.toggle("long", seconds >= 600);
  }
}

function card(item) {
  const drill = item.status === "Exercise" || item.status === "Test";
  const id = `w${item.warning_id}`;
  const given = item.approvals || [];
  const last = given.length + 1 >= item.needed;
  const why = item.why_not ? L(item.why_not.zh, item.why_not.en) : null;
  const approve = el("button", { type: "button", class: "primary", disabled: !item.may_approve,
    "aria-describedby": why ? `${id}-why` : `${id}-title`, dataset: { action: "approve" } }, L("签发", "Approve"));
  const reject = el("button", { type: "button", class: "danger", disabled: !item.may_approve,
    "aria-describedby": why ? `${id}-why` : `${id}-title`, "aria-expanded": "false", "aria-controls": `${id}-reject`,
    dataset: { action: "reject" } }, L("驳回", "Reject"));
  const rejectForm = rejectBox(item, id);
  approve.addEventListener("click", () => decide(item, approve));
  reject.addEventListener("click", () => {
    rejectForm.hidden = !rejectForm.hidden;
    reject.setAttribute("aria-expanded", String(!rejectForm.hidden));
    if (!rejectForm.hidden) rejectForm.querySelector("textarea").focus();
  });
  const kind = { Update: L("更新", "Update"), Cancel: L("解除", "Cancel") }[item.msg_type];
  const article = el("article", { class: `card approval${drill ? " drill" : ""}`, "aria-labelledby": `${id}-title`,
    dataset: { id: item.warning_id, level: item.level } },
  drill ? el("p", { class: "drill-strip" }, L("演练 · 非真实预警", "EXERCISE · not a real warning")) : null,
  el("div", { class: "approval-tags" },
    el("span", { class: `level ${item.level}` }, levelName(item.level)),
    drill ? el("span", { class: "badge drill" }, item.status === "Test" ? L("测试", "TEST") : L("演练", "EXERCISE")) : null,
    item.two_person ? el("span", { class: "badge two-person" }, L("双人签发", "two-person")) : null,
    kind ? el("span", { class: "badge kind" }, kind) : null),
  el("h2", { id: `${id}-title` }, item.headline || item.event),
  el("dl", { class: "facts" },
    el("dt", {}, L("事件", "Event")), el("dd", {}, item.event),
    el("dt", {}, L("部门", "Department")), el("dd", {}, item.department || "—"),
    el("dt", {}, L("提交人", "Submitted by")), el("dd", {}, (item.submitted_by || "—").replace(/^user:/, "")),
    el("dt", {}, L("提交时间", "Submitted at")), el("dd", {}, el("time", { datetime: item.submitted_at }, shownTime(item.submitted_at))),
    el("dt", {}, L("已等待", "Waiting")), el("dd", {}, el("span", { class: "waiting", dataset: { waiting: item.waiting_seconds } }, waitingText(item))),
    el("dt", {}, L("签发进度", "Approvals")), el("dd", { class: "progress" },
      L(`已签 ${given.length} / 需 ${item.needed}`, `${given.length} of ${item.needed} given`))),
  given.length ? el("ul", { class: "given", "aria-label": L("已签发", "Approved by") },
    given.map((a) => el("li", {}, a.by, " · ", el("time", { datetime: a.at }, shownTime(a.at))))) : null,
  item.may_approve && last ? el("p", { class: "publishes" }, L("您签发后，该预警将立即发布。", "Your approval publishes it at once.")) : null,
  why ? el("p", { class: "why-not", id: `${id}-why` }, L("不能签发：", "You cannot approve: "), why) : null,
  el("div", { class: "actions" }, approve, reject,
    el("a", { class: "button", href: `/console/warnings/${item.warning_id}`, "aria-label": `${L("查看", "Open")} ${item.headline || item.event}` }, L("查看", "Open"))),
  rejectForm);
  article.style.borderLeftColor = levelColour(item.level);
  return article;
}

function rejectBox(item, id) {
  const form = el("form", { class: "reject-form", id: `${id}-reject`, hidden: true, novalidate: true,
    "aria-label": L(`驳回 ${item.headline || item.event}`, `Reject ${item.headline || item.event}`) },
  el("div", { class: "field" },
    el("label", { for: `${id}-reason` }, L("驳回原因（必填）", "Reason for rejecting (required)")),
    el("textarea", { id: `${id}-reason`, name: "reason", required: true, maxlength: "2000" }),
    el("p", { class: "error", dataset: { errorFor: "reason" } })),
  el("p", { class: "error", dataset: { errorFor: "_form" }, role: "alert" }),
  el("div", { class: "actions" },
    el("button", { type: "submit", class: "danger" }, L("确认驳回", "Confirm rejection")),
    el("button", { type: "button", dataset: { action: "close" } }, L("取消", "Cancel"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      form.querySelector('[data-error-for="reason"]').textContent = L("请填写驳回原因。", "Say why it is rejected.");
      form.elements.reason.setAttribute("aria-invalid", "true");
      form.elements.reason.focus();
      return;
    }
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      await api("POST", `/api/v1/warnings/${item.warning_id}/reject`, { reason });
      status(L(`已驳回：${item.headline || item.event}`, `Rejected: ${item.headline || item.event}`));
      form.hidden = true;
      await load();
    } catch (err) {
      showProblem(form, err);
      button.disabled = false;
    }
  });
  form.querySelector('[data-action="close"]').addEventListener("click", () => {
    form.hidden = true;
    const opener = form.closest("article").querySelector('[data-action="reject"]');
    opener.setAttribute("aria-expanded", "false");
    opener.focus();
  });
  return form;
}

async function decide(item, button) {
  button.disabled = true;
  busy = true;
  try {
    const d = await api("POST", `/api/v1/warnings/${item.warning_id}/approve`);
    status(d.published
      ? L(`已签发并发布：${item.headline || item.event}`, `Approved and published: ${item.headline || item.event}`)
      : L(`已签发：${item.headline || item.event}，还需 ${d.needed - d.approvals} 人签发`,
        `Approved: ${item.headline || item.event}; ${d.needed - d.approvals} more needed`));
  } catch (err) {
    status(L(`签发失败：${err.message}`, `Not approved: ${err.message}`), "error");
  } finally {
    busy = false;
    await load();
  }
}

function writing() {
  return [...queue.querySelectorAll(".reject-form")].some((f) => !f.hidden);
}

async function load({ quiet = false } = {}) {
  if (quiet && (busy || writing())) return;
  try {
    const { items } = await api("GET", "/api/v1/approvals");
    fetchedAt = Date.now();
    const focused = document.activeElement && document.activeElement.closest("article");
    const focusKey = focused && document.activeElement.dataset.action ? [focused.dataset.id, document.activeElement.dataset.action] : null;
    fill(queue, items.length ? items.map(card)
      : el("p", { class: "card empty muted" }, L("没有待签发的预警。", "Nothing waits for approval.")));
    if (focusKey) { // keep the keyboard where it was across a refresh
      const again = queue.querySelector(`article[data-id="${focusKey[0]}"] [data-action="${focusKey[1]}"]`);
      if (again && !again.disabled) again.focus();
    }
    refreshed.textContent = L(`更新于 ${shownTime(new Date().toISOString())}`, `updated ${shownTime(new Date().toISOString())}`);
  } catch (err) {
    status(L(`无法读取签发队列：${err.message}`, `Cannot read the queue: ${err.message}`), "error");
  }
}

document.getElementById("refresh").addEventListener("click", () => load());
setInterval(() => load({ quiet: true }), REFRESH_MS);
setInterval(tick, 1000);
load();
