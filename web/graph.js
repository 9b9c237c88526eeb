// graph.js - the step graph of a run as SVG: steps in columns by depth
// (the longest depends_on chain leading to them), parallel branches stacked
// in a column, edges as curves from a step to the steps that depend on it.
// Rows in a column are ordered by their parents' rows (barycentre, two
// sweeps) to keep edges from crossing. Big graphs use compact nodes; the
// container scrolls.
//
//   const g = createGraph(container, steps, onSelect);
//   g.update(steps);     // new states, same shape: only classes and text change
//   g.select(stepId);

const NS = "http://www.w3.org/2000/svg";

// Icons as paths around (0,0) (fonts may lack the symbols): [d, filled]
const ICONS = {
  pending: ["M-3,0 a3,3 0 1,0 6,0 a3,3 0 1,0 -6,0", false],
  running: ["M-2.5,-4.5 L4.5,0 L-2.5,4.5 Z", true],
  waiting: ["M-2.5,-4 V4 M2.5,-4 V4", false],
  retrying: ["M3.9,-1.5 A4.2,4.2 0 1,0 4.2,1 M4.2,-4 V-1.2 H1.4", false],
  completed: ["M-4,0.3 L-1.2,3.2 L4,-3", false],
  failed: ["M-3.5,-3.5 L3.5,3.5 M3.5,-3.5 L-3.5,3.5", false],
  skipped: ["M-4,0 H4", false],
  cancelled: ["M-4,0 H4", false],
};

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

export function layout(steps) {
  const byId = new Map(steps.map((st) => [st.step_id, st]));
  const depth = new Map();
  const visiting = new Set();
  function d(id) {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0; // a cycle cannot be registered; be safe anyway
    visiting.add(id);
    const st = byId.get(id);
    let v = 0;
    for (const p of (st && st.depends_on) || []) if (byId.has(p)) v = Math.max(v, d(p) + 1);
    visiting.delete(id);
    depth.set(id, v);
    return v;
  }
  steps.forEach((st) => d(st.step_id));
  const cols = [];
  for (const st of steps) {
    const c = depth.get(st.step_id);
    (cols[c] ||= []).push(st.step_id);
  }
  // barycentre ordering, two sweeps (left to right, right to left)
  const row = new Map();
  cols.forEach((col) => col.forEach((id, i) => row.set(id, i)));
  const children = new Map(steps.map((st) => [st.step_id, []]));
  for (const st of steps) for (const p of st.depends_on || []) if (children.has(p)) children.get(p).push(st.step_id);
  const bary = (ids, id) => {
    if (!ids.length) return row.get(id);
    return ids.reduce((a, x) => a + row.get(x), 0) / ids.length;
  };
  for (let sweep = 0; sweep < 2; sweep++) {
    for (let c = 1; c < cols.length; c++) {
      cols[c].sort((a, b) => bary((byId.get(a).depends_on || []).filter((x) => byId.has(x)), a)
        - bary((byId.get(b).depends_on || []).filter((x) => byId.has(x)), b));
      cols[c].forEach((id, i) => row.set(id, i));
    }
    for (let c = cols.length - 2; c >= 0; c--) {
      cols[c].sort((a, b) => bary(children.get(a), a) - bary(children.get(b), b));
      cols[c].forEach((id, i) => row.set(id, i));
    }
  }
  return { cols, depth, row };
}

export function createGraph(container, steps, onSelect) {
  const n = steps.length;
  const compact = n > 30;
  const W = compact ? 150 : 200;
  const H = compact ? 40 : 58;
  const GX = compact ? 56 : 80;
  const GY = compact ? 10 : 22;
  const PAD = 12;
  const { cols } = layout(steps);
  const tallest = Math.max(...cols.map((c) => c.length));
  const width = PAD * 2 + cols.length * W + (cols.length - 1) * GX;
  const height = PAD * 2 + tallest * H + (tallest - 1) * GY;
  const pos = new Map();
  cols.forEach((col, c) => {
    const colH = col.length * H + (col.length - 1) * GY;
    const top = PAD + (height - PAD * 2 - colH) / 2;
    col.forEach((id, r) => pos.set(id, { x: PAD + c * (W + GX), y: top + r * (H + GY) }));
  });

  const svg = s("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "group",
    "aria-label": `Step graph: ${n} step${n === 1 ? "" : "s"} in ${cols.length} stage${cols.length === 1 ? "" : "s"}`,
  });
  const edges = s("g");
  const nodes = s("g");
  svg.append(edges, nodes);
  const edgeEls = [];
  const nodeEls = new Map();

  for (const st of steps) {
    const b = pos.get(st.step_id);
    for (const p of st.depends_on || []) {
      const a = pos.get(p);
      if (!a) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      const path = s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 4},${y2}` });
      edges.append(path);
      edgeEls.push({ el: path, from: p, to: st.step_id });
    }
    const g = s("g", { class: "node", tabindex: "0", role: "button", transform: `translate(${b.x},${b.y})`, "data-step": st.step_id });
    g.append(s("rect", { class: "box", width: W, height: H, rx: 8 }));
    g.append(s("rect", { class: "bar", x: 0, y: 0, width: 4, height: H, rx: 2 }));
    const r = compact ? 9 : 12;
    const cx = 14 + r, cy = H / 2;
    g.append(s("circle", { class: "icon-bg", cx, cy, r }));
    g.append(s("path", { class: "icon", transform: `translate(${cx},${cy})${compact ? " scale(.8)" : ""}` }));
    const tx = cx + r + 8;
    const maxChars = Math.floor((W - tx - 6) / (compact ? 6.6 : 7.6));
    const name = st.step_id.length > maxChars ? `${st.step_id.slice(0, maxChars - 1)}…` : st.step_id;
    g.append(s("text", { class: "title", x: tx, y: compact ? 17 : 24 }, name));
    g.append(s("text", { class: "meta", x: tx, y: compact ? 31 : 42 }));
    g.append(s("title", {}, st.step_id));
    const pick = () => onSelect(st.step_id);
    g.addEventListener("click", pick);
    g.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); }
    });
    nodes.append(g);
    nodeEls.set(st.step_id, g);
  }
  container.replaceChildren(svg);

  const shape = steps.map((st) => `${st.step_id}<${(st.depends_on || []).join(",")}`).join(";");
  let selected = null;

  function update(list, durationOf) {
    const status = new Map();
    for (const st of list) {
      status.set(st.step_id, st.status);
      const g = nodeEls.get(st.step_id);
      if (!g) continue;
      const cls = `node ${st.status}${selected === st.step_id ? " selected" : ""}`;
      if (g.getAttribute("class") !== cls) g.setAttribute("class", cls);
      const [d, filled] = ICONS[st.status] || ICONS.pending;
      const icon = g.querySelector(".icon");
      if (icon.getAttribute("d") !== d) {
        icon.setAttribute("d", d);
        icon.setAttribute("class", filled ? "icon filled" : "icon");
      }
      const att = st.progress ? mapProgress(st.progress)
        : st.max_attempts > 1 || st.attempt > 1 ? `attempt ${st.attempt || 0}/${st.max_attempts || 1}` : st.type || "task";
      const dur = durationOf(st);
      const meta = st.progress ? att : compact ? (dur || st.status) : [att, dur || st.status].join(" · ");
      g.querySelector(".meta").textContent = meta;
      g.setAttribute("aria-label", `${st.step_id}: ${st.status}, ${att}${dur ? `, ${dur}` : ""}`);
    }
    for (const e of edgeEls) {
      const a = status.get(e.from), b = status.get(e.to);
      const cls = a === "completed" && b && b !== "pending" ? "edge done" : a === "completed" ? "edge active" : "edge";
      if (e.el.getAttribute("class") !== cls) e.el.setAttribute("class", cls);
    }
  }

  function select(id) {
    selected = id;
    for (const [k, g] of nodeEls) g.classList.toggle("selected", k === id);
  }

  return { update, select, shape };
}

/* A map step's items: "7,312 of 10,000 done, 3 failed". */
export function mapProgress(p) {
  const n = (v) => Number(v || 0).toLocaleString("en-US");
  return `${n(p.done)} of ${n(p.total)} done${p.failed ? `, ${n(p.failed)} failed` : ""}`;
}

export function shapeOf(steps) {
  return steps.map((st) => `${st.step_id}<${(st.depends_on || []).join(",")}`).join(";");
}
