// What the compose page shows from data: the preview per channel (its text, recipients and
// the first wave's time at the configured rate), the diff of an Update/Cancel against the
// warning it references, and where an API problem's field sits on the form.
import { L, duration, el, fill, lang, levelName, shownTime } from "./common.js";
import { mainInfo } from "./cap.js";

const CHANNELS = {
  sms: ["短信", "SMS", "人", "recipients"], voice: ["语音", "Voice", "通", "calls"],
  speaker: ["大喇叭", "Speakers", "台", "speakers"], webhook: ["Webhook", "Webhook", "个", "endpoints"],
};
const FORM_FIELDS = new Set(["sender", "status", "event", "headline", "description", "instruction", "category",
  "severity", "urgency", "certainty", "expires", "note", "level", "areaDesc"]);
const AREA_PARTS = new Set(["area", "polygon", "circle", "geocode", "regions", "altitude", "ceiling"]);

export function channelName(name) {
  const c = CHANNELS[name];
  return c ? L(c[0], c[1]) : name;
}

const unit = (name) => (CHANNELS[name] ? ` ${L(CHANNELS[name][2], CHANNELS[name][3])}` : "");
const num = (n) => Number(n || 0).toLocaleString(lang);

/** The form field an API problem names: "info[0].headline", "/alert/info/area/polygon", "sender" … */
export function fieldOf(field) {
  const tokens = String(field || "").split(/[.[\]/]+/).filter((t) => t && !/^\d+$/.test(t));
  if (tokens.includes("areaDesc")) return "areaDesc";
  if (tokens.some((t) => AREA_PARTS.has(t))) return "area";
  if (tokens.includes("parameter")) return "level";
  const last = tokens[tokens.length - 1];
  return FORM_FIELDS.has(last) ? last : "";
}

// --- preview ---

export function renderPreview(box, p, tree) {
  const channels = p.channels || [];
  const slowest = channels.reduce((a, c) => (!a || (c.seconds || 0) > (a.seconds || 0) ? c : a), null);
  const names = (p.targets || p.regions || []).map((c) => (tree ? tree.name(c) : c));
  const all = (p.regions || []).length;
  const shownNames = names.length > 8 ? L(`${names.slice(0, 8).join("、")}等 ${names.length} 个`, `${names.slice(0, 8).join(", ")} and ${names.length - 8} more`)
    : names.join(L("、", ", "));
  fill(box,
    el("div", { class: "first-wave", dataset: { seconds: p.first_wave_seconds } },
      el("span", { class: "first-wave-label" }, L("首轮发送约需", "The first wave takes about")),
      el("strong", { class: "first-wave-time" }, duration(p.first_wave_seconds)),
      slowest ? el("span", { class: "muted" }, L(`最慢渠道：${channelName(slowest.channel)}`, `slowest: ${channelName(slowest.channel)}`)) : null),
    el("ul", { class: "preview-stats" },
      el("li", {}, L("目标区域", "Target regions"), " ", el("strong", {}, num(names.length)), names.length ? `（${shownNames}）` : "",
        all > names.length ? L(`，含下级共 ${num(all)} 个`, `, ${num(all)} with those under them`) : ""),
      el("li", {}, L("网格", "Grids"), " ", el("strong", {}, num(p.grids))),
      el("li", {}, L("户数", "Households"), " ", el("strong", {}, num(p.households))),
      el("li", {}, L("需叫应", "Confirmations to collect"), " ", el("strong", {}, num(p.confirmations))),
      el("li", {}, L("级别", "Level"), " ", el("strong", { class: `level ${p.level}` }, levelName(p.level)))),
    p.status && p.status !== "Actual" ? el("p", { class: "drill-note" }, L("演练：各渠道内容均标注“演练”。", "EXERCISE: every channel says so.")) : null,
    channels.length ? el("div", { class: "channels" }, channels.map(channelBlock))
      : el("p", { class: "error" }, L("没有任何渠道会发送：请检查区域与名录。", "No channel would send anything: check the area and the directory.")));
}

function channelBlock(c) {
  const name = channelName(c.channel);
  const segments = c.channel === "sms" ? c.segments || 1 : 1;
  const rate = Number(c.rate_per_second || 0).toLocaleString(lang);
  const formula = `${name} ${num(c.recipients)}${unit(c.channel)} × ${segments} ÷ ${rate}${L("/秒", "/s")} ≈ ${duration(c.seconds)}`;
  return el("section", { class: "channel", dataset: { channel: c.channel }, "aria-label": name },
    el("h3", {}, name),
    el("p", { class: "formula" }, el("strong", {}, formula)),
    c.channel === "sms" ? el("p", { class: "sms-facts" },
      L(`每条 ${segments} 段 · 编码 ${c.encoding || "—"} · 共 ${num(c.messages)} 段`,
        `${segments} segment(s) each · ${c.encoding || "—"} · ${num(c.messages)} segments in all`)) : null,
    c.recipients ? null : el("p", { class: "muted" }, L("该渠道没有接收者。", "Nobody to reach on this channel.")),
    el("pre", { class: "sample", tabindex: "0", "aria-label": L(`${name}内容`, `${name} text`) }, c.text || ""));
}

// --- diff ---

const levelOf = (cap) => {
  const p = (mainInfo(cap).parameter || []).find((x) => x.valueName === "warnd:level" || x.valueName === "预警级别");
  return p ? levelName(p.value) : "";
};

export function diffFields(before, after, tree) {
  const info = (key) => (cap) => {
    const v = mainInfo(cap)[key];
    return Array.isArray(v) ? v.join(", ") : v || "";
  };
  const areas = (cap) => mainInfo(cap).area || [];
  const regions = (cap) => areas(cap).flatMap((a) => a.geocode || []).map((g) => (tree ? tree.name(g.value) : g.value))
    .sort().join(L("、", ", "));
  const fields = [
    ["msgType", L("消息类型", "Message type"), (c) => c.msgType || ""],
    ["status", L("真实/演练", "Actual/exercise"), (c) => ({ Actual: L("真实", "Actual"), Exercise: L("演练", "Exercise") }[c.status] || c.status || "")],
    ["sender", L("发布者", "Sender"), (c) => c.sender || ""],
    ["level", L("级别", "Level"), levelOf],
    ["event", L("事件", "Event"), info("event")],
    ["headline", L("标题", "Headline"), info("headline")],
    ["description", L("描述", "Description"), info("description")],
    ["instruction", L("防御指引", "Instruction"), info("instruction")],
    ["category", L("类别", "Category"), info("category")],
    ["severity", L("严重程度", "Severity"), info("severity")],
    ["urgency", L("紧迫程度", "Urgency"), info("urgency")],
    ["certainty", L("确定程度", "Certainty"), info("certainty")],
    ["expires", L("失效时间", "Expires"), (c) => shownTime(mainInfo(c).expires)],
    ["regions", L("区域", "Regions"), regions],
    ["polygon", L("多边形", "Polygons"), (c) => areas(c).flatMap((a) => a.polygon || []).join(" | ")],
    ["circle", L("圆", "Circles"), (c) => areas(c).flatMap((a) => a.circle || []).join(" | ")],
    ["areaDesc", L("区域描述", "Area description"), (c) => areas(c).map((a) => a.areaDesc).join("; ")],
    ["note", L("备注", "Note"), (c) => c.note || ""],
  ];
  return fields.map(([key, label, show]) => ({ key, label, old: show(before), new: show(after) }))
    .filter((f) => f.old !== f.new);
}

export function renderDiff(container, section, changes) {
  section.hidden = false;
  if (!changes.length) {
    fill(container, el("p", { class: "muted" }, L("与原预警相比没有改动。", "No changes from the original warning.")));
    return;
  }
  const shorten = (t) => (t.length > 400 ? `${t.slice(0, 400)}…` : t);
  fill(container, el("table", { class: "diff" },
    el("caption", {}, L(`${changes.length} 处改动`, `${changes.length} change(s)`)),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, L("字段", "Field")),
      el("th", { scope: "col" }, L("原值", "Before")), el("th", { scope: "col" }, L("新值", "After")))),
    el("tbody", {}, changes.map((c) => el("tr", { dataset: { field: c.key } },
      el("th", { scope: "row" }, c.label),
      el("td", {}, c.old ? el("del", {}, shorten(c.old)) : el("span", { class: "muted" }, L("（无）", "(none)"))),
      el("td", {}, c.new ? el("ins", {}, shorten(c.new)) : el("span", { class: "muted" }, L("（无）", "(none)"))))))));
}
