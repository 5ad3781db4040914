// Drawing a warning's area on the compose map: polygons (click to add vertices, click the
// first vertex or 完成 to close, at most 100 vertices, undo, clear) and circles (click the
// centre, click again for the radius, or type the radius). Every mode has a button, and a
// point can be added at the map's centre from the keyboard (arrow keys pan the map).
// Shapes come out as CAP text: polygon "lat,lon lat,lon …" (closed ring), circle
// "lat,lon radius_km".
import { L, el, fill } from "./common.js";

export const MAX_VERTICES = 100;
const DRAFT = { color: "#b84f00", weight: 2, dashArray: "6 4", fillOpacity: 0.1 };
const DONE = { color: "#7a2e00", weight: 3, fillColor: "#ff9d3b", fillOpacity: 0.3 };

const round = (x) => Math.round(x * 1e5) / 1e5;

/** CAP polygon text for an open ring of [lat, lon] (the first point is repeated at the end). */
export function polygonText(points) {
  return [...points, points[0]].map(([lat, lon]) => `${round(lat)},${round(lon)}`).join(" ");
}

export function circleText(centre, radiusKm) {
  return `${round(centre[0])},${round(centre[1])} ${Math.round(radiusKm * 1000) / 1000}`;
}

/** "lat,lon lat,lon …" → open ring [[lat, lon], …] (the closing point dropped). */
export function parsePolygon(text) {
  const points = text.trim().split(/\s+/).map((pair) => pair.split(",").map(Number));
  const [first, last] = [points[0], points[points.length - 1]];
  if (points.length > 1 && first[0] === last[0] && first[1] === last[1]) points.pop();
  return points;
}

export function parseCircle(text) {
  const [pair, radius] = text.trim().split(/\s+/);
  return { centre: pair.split(",").map(Number), radiusKm: Number(radius) };
}

/**
 * A drawing tool bar in `toolbar` for the Leaflet `map`. `onChange()` is called whenever the
 * finished shapes change. Returns {polygons(), circles(), load(polys, circles), clear(), active()}.
 */
export function createDrawer(map, toolbar, { onChange = () => {} } = {}) {
  const Lf = window.L;
  const finished = Lf.featureGroup().addTo(map);
  const draft = Lf.featureGroup().addTo(map);
  let shapes = []; // {kind: "polygon", points} | {kind: "circle", centre, radiusKm}
  let mode = null; // null | "polygon" | "circle"
  let points = [];
  let centre = null;

  const hint = el("p", { class: "draw-hint", role: "status", "aria-live": "polite" });
  const button = (label, handler, attrs = {}) => el("button", { type: "button", onclick: handler, ...attrs }, label);
  const polygonButton = button(L("画多边形", "Draw polygon"), () => start("polygon"), { "aria-pressed": "false" });
  const circleButton = button(L("画圆", "Draw circle"), () => start("circle"), { "aria-pressed": "false" });
  const centreButton = button(L("在地图中心加点", "Add point at map centre"), () => addPoint(map.getCenter()));
  const finishButton = button(L("完成", "Finish"), () => finish(), { class: "primary" });
  const undoButton = button(L("撤销上一点", "Undo last point"), () => undo());
  const cancelButton = button(L("取消绘制", "Cancel drawing"), () => stop());
  const clearButton = button(L("清除全部绘制", "Clear all drawn shapes"), () => clear());
  const radiusInput = el("input", { type: "number", id: "draw-radius", min: "0.1", max: "500", step: "0.1",
    inputmode: "decimal", name: "draw-radius" });
  const radiusField = el("span", { class: "draw-radius" },
    el("label", { for: "draw-radius" }, L("半径（公里）", "Radius (km)")), radiusInput);
  const list = el("ul", { class: "draw-list", "aria-label": L("已绘制的区域", "Drawn shapes") });
  fill(toolbar, el("div", { class: "row draw-buttons", role: "group", "aria-label": L("绘制区域", "Draw an area") },
    polygonButton, circleButton, centreButton, radiusField, finishButton, undoButton, cancelButton, clearButton),
  hint, list);

  function refresh() {
    polygonButton.setAttribute("aria-pressed", String(mode === "polygon"));
    circleButton.setAttribute("aria-pressed", String(mode === "circle"));
    centreButton.hidden = mode === null;
    cancelButton.hidden = mode === null;
    finishButton.hidden = mode === null;
    undoButton.hidden = mode !== "polygon";
    radiusField.hidden = mode !== "circle";
    undoButton.disabled = points.length === 0;
    finishButton.disabled = mode === "polygon" ? points.length < 3 : !(centre && Number(radiusInput.value) > 0);
    clearButton.disabled = shapes.length === 0 && mode === null;
    map.getContainer().classList.toggle("drawing", mode !== null);
    hint.textContent = hintText();
    drawDraft();
  }

  function hintText() {
    if (mode === "polygon") {
      const n = points.length;
      if (n >= MAX_VERTICES) return L(`已达 ${MAX_VERTICES} 个顶点上限，请点“完成”。`, `${MAX_VERTICES} vertices, the limit: press Finish.`);
      return n < 3
        ? L(`在地图上点击添加顶点（已 ${n} 个，至少 3 个）。`, `Click the map to add vertices (${n} so far, at least 3).`)
        : L(`已 ${n} 个顶点：点击第一个顶点或“完成”闭合。`, `${n} vertices: click the first vertex or Finish to close.`);
    }
    if (mode === "circle") {
      return centre
        ? L("再点击一次确定半径，或输入半径后点“完成”。", "Click again for the radius, or type it and press Finish.")
        : L("点击地图确定圆心。", "Click the map for the centre.");
    }
    return shapes.length ? "" : L("可在地图上画多边形或圆，作为预警区域。", "You may draw polygons or circles on the map as the area.");
  }

  function drawDraft() {
    draft.clearLayers();
    if (mode === "polygon" && points.length) {
      Lf.polyline(points, DRAFT).addTo(draft);
      points.forEach((p, i) => {
        const marker = Lf.circleMarker(p, { radius: i === 0 ? 8 : 5, color: "#7a2e00", fillColor: i === 0 ? "#fff" : "#b84f00",
          fillOpacity: 1, weight: 2, bubblingMouseEvents: false });
        if (i === 0) {
          marker.bindTooltip(L("点击闭合", "Click to close"));
          marker.on("click", () => finish());
        }
        marker.addTo(draft);
      });
    }
    if (mode === "circle" && centre) {
      Lf.circleMarker(centre, { radius: 5, color: "#7a2e00", bubblingMouseEvents: false }).addTo(draft);
      const r = Number(radiusInput.value);
      if (r > 0) Lf.circle(centre, { ...DRAFT, radius: r * 1000, interactive: false }).addTo(draft);
    }
  }

  function drawFinished() {
    finished.clearLayers();
    const counts = { polygon: 0, circle: 0 };
    const items = shapes.map((shape, index) => {
      const i = counts[shape.kind]++;
      const name = shape.kind === "polygon"
        ? L(`多边形 ${i + 1}（${shape.points.length} 个顶点）`, `Polygon ${i + 1} (${shape.points.length} vertices)`)
        : L(`圆 ${i + 1}（半径 ${shape.radiusKm} 公里）`, `Circle ${i + 1} (radius ${shape.radiusKm} km)`);
      const layer = shape.kind === "polygon" ? Lf.polygon(shape.points, DONE) : Lf.circle(shape.centre, { ...DONE, radius: shape.radiusKm * 1000 });
      layer.bindTooltip(name).addTo(finished);
      return el("li", { dataset: { shape: shape.kind } }, el("span", {}, name), " ",
        el("button", { type: "button", class: "link", onclick: () => remove(index) },
          L(`删除${shape.kind === "polygon" ? "多边形" : "圆"} ${i + 1}`, `Remove ${shape.kind} ${i + 1}`)));
    });
    fill(list, items);
  }

  function start(kind) {
    mode = mode === kind ? null : kind; // pressing the active mode again leaves it
    points = [];
    centre = null;
    radiusInput.value = "";
    refresh();
    if (mode === "circle") map.getContainer().focus();
  }

  function stop() {
    mode = null;
    points = [];
    centre = null;
    refresh();
  }

  function addPoint(latlng) {
    const p = [latlng.lat, latlng.lng];
    if (mode === "polygon") {
      if (points.length >= MAX_VERTICES) {
        hint.textContent = L(`最多 ${MAX_VERTICES} 个顶点。`, `At most ${MAX_VERTICES} vertices.`);
        return;
      }
      points.push(p);
    } else if (mode === "circle") {
      if (!centre) centre = p;
      else {
        radiusInput.value = String(Math.max(0.1, Math.round(map.distance(centre, latlng) / 100) / 10));
        finish();
        return;
      }
    }
    refresh();
  }

  function undo() {
    points.pop();
    refresh();
  }

  function finish() {
    if (mode === "polygon" && points.length >= 3) shapes.push({ kind: "polygon", points });
    else if (mode === "circle" && centre && Number(radiusInput.value) > 0) {
      shapes.push({ kind: "circle", centre, radiusKm: Number(radiusInput.value) });
    } else return;
    stop();
    drawFinished();
    onChange();
  }

  function remove(index) {
    shapes.splice(index, 1);
    drawFinished();
    refresh();
    onChange();
  }

  function clear() {
    shapes = [];
    stop();
    drawFinished();
    onChange();
  }

  map.on("click", (event) => { if (mode) addPoint(event.latlng); });
  radiusInput.addEventListener("input", refresh);
  map.getContainer().addEventListener("keydown", (event) => {
    if (mode && event.key === "Escape") stop();
  });
  refresh();

  return {
    polygons: () => shapes.filter((s) => s.kind === "polygon").map((s) => polygonText(s.points)),
    circles: () => shapes.filter((s) => s.kind === "circle").map((s) => circleText(s.centre, s.radiusKm)),
    active: () => mode !== null,
    layer: finished,
    load(polygons = [], circles = []) {
      shapes = [...polygons.map((t) => ({ kind: "polygon", points: parsePolygon(t) })),
        ...circles.map((t) => ({ kind: "circle", ...parseCircle(t) }))];
      drawFinished();
      refresh();
    },
    clear,
  };
}
