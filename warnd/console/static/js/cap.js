// CAP for the compose page: times in the display time zone with their offset (whole
// seconds, as CAP wants), a stored warning's CAP XML read back into CAP JSON (the shape
// warnd/ingest/capjson.py takes), a unique identifier, and the field-by-field diff shown
// before an Update or Cancel is submitted.
import { boot } from "./common.js";

const TZ = boot.timezone || "Asia/Shanghai";
const parts = new Intl.DateTimeFormat("en-US", {
  timeZone: TZ, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

function wall(date) {
  const p = Object.fromEntries(parts.formatToParts(date).map(({ type, value }) => [type, value]));
  return { y: p.year, mo: p.month, d: p.day, h: p.hour === "24" ? "00" : p.hour, mi: p.minute, s: p.second };
}

/** Minutes the display time zone is ahead of UTC at `date`. */
export function offsetMinutes(date) {
  const w = wall(date);
  const asUtc = Date.UTC(+w.y, +w.mo - 1, +w.d, +w.h, +w.mi, +w.s);
  return Math.round((asUtc - Math.floor(date.getTime() / 1000) * 1000) / 60000);
}

/** A CAP time: 2026-12-03T18:40:00+08:00 in the display time zone. */
export function capTime(date) {
  const w = wall(date);
  const off = offsetMinutes(date);
  const sign = off < 0 ? "-" : "+";
  const a = Math.abs(off);
  const hh = String(Math.floor(a / 60)).padStart(2, "0"), mm = String(a % 60).padStart(2, "0");
  return `${w.y}-${w.mo}-${w.d}T${w.h}:${w.mi}:${w.s}${sign}${hh}:${mm}`;
}

/** The value of a datetime-local input for `date`, in the display time zone. */
export function localInput(date) {
  const w = wall(date);
  return `${w.y}-${w.mo}-${w.d}T${w.h}:${w.mi}`;
}

/** A datetime-local value read as wall time in the display time zone. */
export function fromLocalInput(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?$/.exec(text || "");
  if (!m) return null;
  const asUtc = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  let guess = new Date(asUtc);
  for (let i = 0; i < 2; i += 1) guess = new Date(asUtc - offsetMinutes(guess) * 60000);
  return guess;
}

/** A unique CAP identifier (no spaces, commas, < or &). */
export function newIdentifier() {
  const random = crypto.getRandomValues(new Uint8Array(6));
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  const w = wall(new Date());
  return `warnd-console-${w.y}${w.mo}${w.d}T${w.h}${w.mi}${w.s}-${hex}`;
}

// --- CAP XML → CAP JSON ---

const ALERT_TEXT = ["identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
  "addresses", "note", "references", "incidents"];
const INFO_TEXT = ["language", "event", "urgency", "severity", "certainty", "audience", "effective", "onset",
  "expires", "senderName", "headline", "description", "instruction", "web", "contact"];

const kids = (node, name) => Array.from(node.children).filter((c) => c.localName === name);
const text = (node, name) => {
  const found = kids(node, name)[0];
  return found ? found.textContent.trim() : undefined;
};
const pairs = (node, name) => kids(node, name).map((p) => ({ valueName: text(p, "valueName") || "", value: text(p, "value") || "" }));

function put(out, key, value) {
  if (value !== undefined && value !== "" && !(Array.isArray(value) && value.length === 0)) out[key] = value;
}

/** The CAP JSON of a CAP 1.2 XML document (what the warning holds). */
export function capFromXml(xml) {
  const doc = new DOMParser().parseFromString(xml, "application/xml");
  const alert = doc.documentElement;
  if (!alert || alert.localName !== "alert") throw new Error("not a CAP alert");
  const out = {};
  for (const key of ALERT_TEXT) put(out, key, text(alert, key));
  put(out, "code", kids(alert, "code").map((c) => c.textContent.trim()));
  out.info = kids(alert, "info").map((info) => {
    const i = {};
    for (const key of INFO_TEXT) put(i, key, text(info, key));
    put(i, "category", kids(info, "category").map((c) => c.textContent.trim()));
    put(i, "responseType", kids(info, "responseType").map((c) => c.textContent.trim()));
    put(i, "eventCode", pairs(info, "eventCode"));
    put(i, "parameter", pairs(info, "parameter"));
    put(i, "resource", kids(info, "resource").map((r) => {
      const res = {};
      for (const key of ["resourceDesc", "mimeType", "uri", "digest"]) put(res, key, text(r, key));
      const size = text(r, "size");
      if (size) res.size = Number(size);
      return res;
    }));
    put(i, "area", kids(info, "area").map((a) => {
      const area = { areaDesc: text(a, "areaDesc") || "" };
      put(area, "polygon", kids(a, "polygon").map((p) => p.textContent.trim()));
      put(area, "circle", kids(a, "circle").map((c) => c.textContent.trim()));
      put(area, "geocode", pairs(a, "geocode"));
      for (const key of ["altitude", "ceiling"]) {
        const v = text(a, key);
        if (v) area[key] = Number(v);
      }
      return area;
    }));
    return i;
  });
  return out;
}

/** The info to edit: the zh-CN one if there is one, else the first. */
export function mainInfo(cap) {
  const infos = cap.info || [];
  return infos.find((i) => (i.language || "").toLowerCase().startsWith("zh")) || infos[0] || {};
}

// --- the diff shown before an Update / Cancel ---

/**
 * Changed fields between two CAP JSON alerts: [{field, old, new}] with `describe(key, cap)`
 * giving each side's shown text (so areas can be named by region, times shown locally).
 */
export function capDiff(before, after, fields) {
  const changes = [];
  for (const { key, label, show } of fields) {
    const a = show(before), b = show(after);
    if (a !== b) changes.push({ key, label, old: a, new: b });
  }
  return changes;
}
