// What every console page shares: the boot data, the two languages, the REST API
// (session cookie + CSRF header, problem+json errors), safe DOM building, times in the
// display time zone, and a server-sent event stream that shows when it is lost.
// No innerHTML with data: every text goes in through textContent.

export const boot = JSON.parse(document.getElementById("boot").textContent);
export const lang = boot.lang === "en" ? "en" : "zh-CN";

/** The text for the page's language: L("中文", "English"). */
export function L(zh, en) {
  return lang === "en" ? en : zh;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

let csrf = null;

async function csrfToken() {
  if (csrf === null) {
    const me = await api("GET", "/api/v1/session");
    csrf = me.csrf_token || "";
  }
  return csrf;
}

/** Call the REST API as the logged-in person; resolves to parsed JSON (or the Response for raw). */
export async function api(method, path, body, { raw = false, headers = {}, csrf: withCsrf = true } = {}) {
  const init = { method, credentials: "same-origin", headers: { "Accept-Language": lang, ...headers } };
  if (withCsrf && method !== "GET" && method !== "HEAD") {
    init.headers["X-CSRF-Token"] = await csrfToken();
  }
  if (body !== undefined) {
    if (typeof body === "string" || body instanceof Blob || body instanceof FormData) {
      init.body = body;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const response = await fetch(path, init);
  if (response.status === 401 && boot.page !== undefined && boot.page !== "login") {
    location.assign(`/console/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch (_) {
      problem = null;
    }
    throw new ApiError(response.status, problem);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

/** Build an element: el("td", {class: "n", dataset: {id: 1}}, "text", child…). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace a container's content. */
export function fill(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return container;
}

const timeFormat = new Intl.DateTimeFormat(lang, {
  timeZone: boot.timezone, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

/** An ISO time as people read it, in the display time zone ("" for none). */
export function shownTime(iso) {
  return iso ? timeFormat.format(new Date(iso)) : "";
}

/** 125 s → "2分5秒" / "2 min 5 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (lang === "en") return [h && `${h} h`, (h || m) && `${m} min`, `${r} s`].filter(Boolean).join(" ");
  return [h && `${h}小时`, (h || m) && `${m}分`, `${r}秒`].filter(Boolean).join("");
}

export function levelName(level) {
  const names = boot.level_names[level];
  return names ? names[lang] : level;
}

export function levelColour(level) {
  return boot.levels[level] || "#666";
}

/** A status line for the whole page (polite live region). */
export function status(text, kind = "info") {
  const box = document.getElementById("status");
  if (!box) return;
  box.textContent = text || "";
  box.dataset.kind = kind;
}

/**
 * Show an API problem at the fields it names: each `[data-error-for=FIELD]` gets its text,
 * its input gets aria-invalid; what names no field on the form goes to `_form`.
 * `fieldOf` maps an API field (e.g. "info[0].headline") to the form's own name.
 */
export function showProblem(form, err, fieldOf = (f) => f) {
  clearProblems(form);
  const problem = err instanceof ApiError ? err.problem : {};
  const errors = problem.errors && problem.errors.length ? problem.errors : [];
  const rest = [];
  for (const e of errors) {
    const text = lang === "en" ? e.detail_en : e.detail_zh;
    const name = fieldOf(e.field || "");
    const slot = name && form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent}; ${text}` : text;
      const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
    } else {
      rest.push(e.field ? `${e.field}: ${text}` : text);
    }
  }
  const general = form.querySelector('[data-error-for="_form"]');
  const title = problem.title || err.message;
  const text = rest.length ? `${title}: ${rest.join("; ")}` : errors.length ? "" : title;
  if (general) general.textContent = text;
  else if (text) status(text, "error");
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
}

export function clearProblems(form) {
  form.querySelectorAll("[data-error-for]").forEach((slot) => { slot.textContent = ""; });
  form.querySelectorAll('[aria-invalid="true"]').forEach((input) => input.removeAttribute("aria-invalid"));
}

/**
 * Follow a server-sent event stream: `onSnapshot(data)` for each `snapshot` event; the
 * element `#live-state` says whether the stream is connected, lost (and retried by the
 * browser) or closed. Returns the EventSource.
 */
export function follow(url, onSnapshot) {
  const state = document.getElementById("live-state");
  const show = (text, kind) => {
    if (!state) return;
    state.textContent = text;
    state.dataset.kind = kind;
  };
  const source = new EventSource(url, { withCredentials: true });
  source.addEventListener("open", () => show(L("实时更新中", "Live"), "ok"));
  source.addEventListener("error", () => show(L("连接中断，正在重连…", "Connection lost, reconnecting…"), "bad"));
  source.addEventListener("snapshot", (event) => onSnapshot(JSON.parse(event.data)));
  return source;
}

/** Show the 演练 band when the warning is an Exercise (or Test). */
export function markDrill(statusValue) {
  const band = document.getElementById("drill-band");
  const drill = statusValue === "Exercise" || statusValue === "Test";
  if (band) band.hidden = !drill;
  document.body.classList.toggle("drill", drill);
}

function wireTopBar() {
  const button = document.getElementById("logout");
  if (!button) return;
  button.addEventListener("click", async () => {
    try {
      await api("DELETE", "/api/v1/session");
    } finally {
      location.assign("/console/login");
    }
  });
}

/** Tables that scroll sideways (on a phone) can be scrolled from the keyboard and are named. */
function labelScrollables() {
  document.querySelectorAll(".table-wrap:not([tabindex])").forEach((wrap) => {
    wrap.tabIndex = 0;
    wrap.setAttribute("role", "region");
    const heading = wrap.closest("section")?.querySelector("h2, h1");
    wrap.setAttribute("aria-label", heading ? heading.textContent.trim() : L("表格", "Table"));
  });
}

wireTopBar();
labelScrollables();
new MutationObserver(labelScrollables).observe(document.body, { childList: true, subtree: true });
