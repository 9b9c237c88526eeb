// db.js - the live database viewer: GET /db/snapshot, refetched (at most
// twice a second) whenever /events/stream reports a commit. Rows are
// matched by their first column (the primary key in every durable table);
// a cell whose value changed, or a new row, is highlighted for a moment.

import { api, live } from "./api.js";
import { h, chrome, throttle } from "./ui.js";

chrome("db");

const $ = (id) => document.getElementById(id);
let previous = new Map(); // table -> Map(key -> row values as strings)
const sections = new Map(); // table -> {section, tbody, count}

// *_at and at columns hold Unix milliseconds: shown as UTC times (raw in the title)
function show(v, col) {
  if (v === null || v === undefined) return null;
  if (typeof v === "number" && /(^|_)at$/.test(col) && v > 1e11) return new Date(v).toISOString().replace("T", " ").replace("Z", "");
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function keyOf(t, row) {
  // rows are keyed by their first column, except those of a run (steps,
  // events: run_id and the step's index or the event's seq)
  return t.columns[0] === "run_id" && t.columns.length > 1 ? `${row[0]}/${row[1]}` : String(row[0]);
}

function section(t) {
  let s = sections.get(t.name);
  if (s) return s;
  const count = h("span.count");
  const thead = h("thead");
  const tbody = h("tbody");
  const el = h("section.card", { id: t.name, "aria-labelledby": `t-${t.name}` },
    h("header", {}, h("h2", { id: `t-${t.name}`, class: "mono", text: t.name }), count),
    h("div.table-scroll", { tabindex: "0", "aria-label": `${t.name} rows` }, h("table.db", {}, thead, tbody)));
  s = { el, thead, tbody, count, columns: "" };
  sections.set(t.name, s);
  $("tables").append(el);
  $("toc").append(h("a", { href: `#${t.name}`, text: t.name }));
  return s;
}

async function refresh() {
  const snap = await api("/db/snapshot?limit=50");
  const next = new Map();
  const first = previous.size === 0;
  for (const t of snap.tables) {
    const s = section(t);
    const cols = t.columns.join(",");
    if (s.columns !== cols) {
      s.thead.replaceChildren(h("tr", {}, t.columns.map((c) => h("th", { scope: "col", text: c }))));
      s.columns = cols;
    }
    s.count.textContent = `${t.total ?? t.rows.length} row${(t.total ?? t.rows.length) === 1 ? "" : "s"}${t.total > t.rows.length ? `, newest ${t.rows.length} shown` : ""}`;
    const before = previous.get(t.name) || new Map();
    const mine = new Map();
    const rows = t.rows.map((row) => {
      const key = keyOf(t, row);
      const vals = row.map((v, i) => show(v, t.columns[i]));
      mine.set(key, vals);
      const old = before.get(key);
      const tr = h(!first && !old ? "tr.new" : "tr", { "data-key": key });
      vals.forEach((v, i) => {
        const changed = !first && old && old[i] !== v;
        tr.append(h(v === null ? "td.null" : "td", {
          class: [v === null ? "null" : "", changed ? "changed" : ""].join(" ").trim() || null,
          "data-col": t.columns[i], title: row[i] === null ? "NULL" : String(show(row[i], "")), text: v ?? "NULL",
        }));
      });
      return tr;
    });
    s.tbody.replaceChildren(...rows);
    if (!rows.length) s.tbody.append(h("tr", {}, h("td.null", { colspan: String(t.columns.length), text: "empty" })));
    next.set(t.name, mine);
  }
  previous = next;
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  // let the highlight fade: drop the classes after a frame, the CSS transition does the rest
  setTimeout(() => {
    for (const el of document.querySelectorAll("td.changed, tr.new")) el.classList.remove("changed", "new");
  }, 700);
}

const soon = throttle(() => refresh().catch(() => {}), 500);
live("/events/stream", soon, soon);
refresh().catch(() => {});
