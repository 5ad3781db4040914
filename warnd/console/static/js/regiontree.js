// The region tree of the compose page: county → township → village → grid, built from the
// directory's parent links, one native checkbox per region (labelled by its name), expand /
// collapse buttons, and a filter. Choosing a region means all of it: its own code goes into
// the CAP area as a geocode and everything under it shows as chosen. Unticking a region
// inside a chosen one keeps its siblings chosen.
import { L, el, fill } from "./common.js";

const KIND_NAMES = { county: ["县", "county"], township: ["乡镇", "township"], village: ["村", "village"], grid: ["网格", "grid"] };

export function kindName(kind) {
  const names = KIND_NAMES[kind];
  return names ? L(...names) : kind;
}

/**
 * Build the tree in `container` from regions [{code, name, kind, parent, households, people}].
 * `onChange()` after every change made by the person. Returns {selected(), setSelected(codes),
 * covered(code), toggle(code), names(codes)}.
 */
export function createTree(container, regions, { onChange = () => {} } = {}) {
  const nodes = new Map();
  for (const region of regions) nodes.set(region.code, { region, children: [] });
  const roots = [];
  for (const node of nodes.values()) {
    const parent = node.region.parent && nodes.get(node.region.parent);
    (parent ? parent.children : roots).push(node);
  }
  const byName = (a, b) => a.region.code.localeCompare(b.region.code);
  const chosen = new Set(); // explicitly chosen codes: never one inside another

  const filter = el("input", { type: "search", id: "region-filter", name: "region-filter",
    placeholder: L("名称或代码", "name or code"), autocomplete: "off" });
  const tree = el("ul", { class: "region-tree", "aria-label": L("区域树", "Region tree") });

  function build(node, depth) {
    const { region } = node;
    const id = `region-${region.code}`;
    node.checkbox = el("input", { type: "checkbox", id, name: "region", value: region.code,
      dataset: { code: region.code } });
    node.checkbox.addEventListener("change", () => { toggle(region.code); });
    node.li = el("li", { dataset: { code: region.code, kind: region.kind } });
    const counts = region.households ? L(`${region.households} 户`, `${region.households} households`) : "";
    const row = el("div", { class: "tree-row" });
    if (node.children.length) {
      node.expander = el("button", { type: "button", class: "expander", "aria-expanded": "false",
        "aria-controls": `${id}-children`, "aria-label": L(`展开 ${region.name}`, `Expand ${region.name}`) }, "▸");
      node.expander.addEventListener("click", () => expand(node, node.expander.getAttribute("aria-expanded") !== "true"));
      row.append(node.expander);
    } else {
      row.append(el("span", { class: "expander-gap", "aria-hidden": "true" }));
    }
    row.append(node.checkbox, el("label", { for: id }, region.name),
      el("span", { class: "kind muted" }, kindName(region.kind)), counts ? el("span", { class: "muted n" }, counts) : null);
    node.li.append(row);
    if (node.children.length) {
      node.list = el("ul", { id: `${id}-children`, hidden: true });
      node.children.sort(byName).forEach((child) => node.list.append(build(child, depth + 1)));
      node.li.append(node.list);
    }
    return node.li;
  }

  function expand(node, open) {
    if (!node.list) return;
    node.list.hidden = !open;
    node.expander.setAttribute("aria-expanded", String(open));
    node.expander.textContent = open ? "▾" : "▸";
    node.expander.setAttribute("aria-label", open ? L(`收起 ${node.region.name}`, `Collapse ${node.region.name}`)
      : L(`展开 ${node.region.name}`, `Expand ${node.region.name}`));
  }

  const parentOf = (code) => nodes.get(code)?.region.parent;
  function chosenAncestor(code) {
    for (let c = parentOf(code); c; c = parentOf(c)) if (chosen.has(c)) return c;
    return null;
  }
  const covered = (code) => chosen.has(code) || chosenAncestor(code) !== null;

  function clearBelow(node) {
    for (const child of node.children) {
      chosen.delete(child.region.code);
      clearBelow(child);
    }
  }

  function toggle(code, notify = true) {
    const node = nodes.get(code);
    if (!node) return;
    if (chosen.has(code)) {
      chosen.delete(code);
    } else {
      const ancestor = chosenAncestor(code);
      if (ancestor) { // untick one region inside a chosen one: its siblings stay chosen
        chosen.delete(ancestor);
        let c = code;
        while (c !== ancestor) {
          const parent = nodes.get(parentOf(c));
          for (const sibling of parent.children) if (sibling.region.code !== c) chosen.add(sibling.region.code);
          c = parent.region.code;
        }
      } else {
        chosen.add(code);
        clearBelow(node);
      }
    }
    paint();
    if (notify) onChange();
  }

  function paint() {
    const walk = (node, above) => {
      const here = above || chosen.has(node.region.code);
      let some = here;
      for (const child of node.children) some = walk(child, here) || some;
      node.checkbox.checked = here;
      node.checkbox.indeterminate = !here && some;
      node.li.classList.toggle("chosen", here);
      return some;
    };
    roots.forEach((r) => walk(r, false));
  }

  function applyFilter() {
    const q = filter.value.trim().toLowerCase();
    const walk = (node) => {
      const self = !q || node.region.name.toLowerCase().includes(q) || node.region.code.includes(q);
      let any = false;
      for (const child of node.children) any = walk(child) || any;
      node.li.hidden = !(self || any);
      if (q && node.list) expand(node, any);
      return self || any;
    };
    roots.forEach(walk);
    if (!q) roots.forEach((r) => expand(r, true));
  }
  filter.addEventListener("input", applyFilter);

  roots.sort(byName).forEach((r) => tree.append(build(r, 0)));
  roots.forEach((r) => expand(r, true));
  fill(container, el("div", { class: "field" }, el("label", { for: "region-filter" }, L("查找区域", "Find a region")), filter),
    regions.length ? tree : el("p", { class: "muted" }, L("名录中没有区域。", "The directory has no regions.")));
  paint();

  return {
    selected: () => [...chosen].sort(),
    covered,
    toggle,
    setSelected(codes) {
      chosen.clear();
      for (const code of codes) if (nodes.has(code) && !chosenAncestor(code)) { chosen.add(code); clearBelow(nodes.get(code)); }
      for (const code of chosen) { // show where they are
        for (let c = parentOf(code); c; c = parentOf(c)) expand(nodes.get(c), true);
      }
      paint();
    },
    has: (code) => nodes.has(code),
    name: (code) => nodes.get(code)?.region.name || code,
  };
}
