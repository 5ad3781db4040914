// The console's map: the directory's region outlines drawn offline (no tiles unless
// `console.tile_url` is set), coloured by a caller's function, clickable. Leaflet is
// vendored (static/vendor/leaflet) and loaded as a classic script that sets window.L.
import { boot, L as text } from "./common.js";

let loading = null;

/** Load the vendored Leaflet once (script + stylesheet, both from /console/static). */
export function leaflet() {
  if (window.L && window.L.map) return Promise.resolve(window.L);
  if (loading) return loading;
  loading = new Promise((resolve, reject) => {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = "/console/static/vendor/leaflet/leaflet.css";
    document.head.append(css);
    const script = document.createElement("script");
    script.src = "/console/static/vendor/leaflet/leaflet.js";
    script.addEventListener("load", () => resolve(window.L));
    script.addEventListener("error", () => reject(new Error("leaflet did not load")));
    document.head.append(script);
  });
  return loading;
}

/** A map in `container` (an element); tiles only when configured. */
export async function createMap(container) {
  const Lf = await leaflet();
  Lf.Icon.Default.imagePath = "/console/static/vendor/leaflet/images/";
  const map = Lf.map(container, { zoomSnap: 0.25, preferCanvas: false, attributionControl: Boolean(boot.tile_url) });
  if (boot.tile_url) {
    Lf.tileLayer(boot.tile_url, { attribution: boot.tile_attribution || "", maxZoom: 18 }).addTo(map);
  }
  map.setView([30.25, 115.42], 11);
  container.setAttribute("role", "application");
  container.setAttribute("aria-label", text("地图：区域与网格", "Map of regions and grids"));
  return map;
}

/**
 * Draw regions that have a polygon ([[lat, lon], …]). `style(region)` gives Leaflet path
 * options (e.g. {fillColor}); `onClick(region)` is called when one is clicked; `label(region)`
 * its tooltip. Returns {layer, byCode, restyle()} so a live view can recolour in place.
 */
export function drawRegions(map, regions, { style = () => ({}), onClick = null, label = (r) => r.name } = {}) {
  const Lf = window.L;
  const layer = Lf.featureGroup().addTo(map);
  const byCode = new Map();
  const ordered = [...regions].filter((r) => Array.isArray(r.polygon) && r.polygon.length >= 4)
    .sort((a, b) => a.code.length - b.code.length); // counties below, grids on top
  for (const region of ordered) {
    const shape = Lf.polygon(region.polygon, { weight: region.kind === "grid" ? 1 : 2, fillOpacity: 0.35,
      color: "#333", fillColor: "#9aa5b1", ...style(region) });
    shape.bindTooltip(label(region), { sticky: true });
    if (onClick) shape.on("click", () => onClick(region));
    shape.addTo(layer);
    byCode.set(region.code, { region, shape });
  }
  const restyle = (fn = style) => {
    for (const { region, shape } of byCode.values()) shape.setStyle(fn(region));
  };
  return { layer, byCode, restyle };
}

/** Zoom to what is drawn (or leave the view alone when nothing is). */
export function fit(map, layer) {
  const bounds = layer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds, { padding: [12, 12] });
}

/** The state colours used on every map and legend (CSS variables in console.css). */
export const STATE_COLOURS = {
  confirmed: "#1d7a36", covered: "#4a8f2a", open: "#e86a00", not_woken: "#b3001b", uncovered: "#6b2fa0",
};
