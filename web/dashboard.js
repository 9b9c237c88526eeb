// dashboard.js - the front page: pick or write a definition, register it,
// start runs (with a demo order or without, with an input or the
// definition's defaults), and the runs table kept live from /events/stream.
// The input typed for a workflow is remembered per workflow name in
// localStorage ("durable.input.NAME") once a run started with it. The
// runs' filter fields (workflow, created range, an input field) narrow the
// table, and "Cancel matching" / "Retry matching" ask POST /runs/bulk for
// a dry run, show its count for confirmation, then apply it.

import { api, live } from "./api.js";
import { h, badge, chrome, fmtDuration, fmtAgo, fmtTime, span, shortId, throttle } from "./ui.js";

chrome("runs");

const $ = (id) => document.getElementById(id);
const select = $("workflow");
const text = $("definition");
const gutter = $("gutter");
const errors = $("errors");
const notice = $("notice");
const inputText = $("input");
const inputError = $("input-error");
const STATUSES = ["all", "running", "waiting", "paused", "completed", "failed", "cancelled"];

let workflows = [];        // latest version of each name
let loadedText = "";       // the editor's text as loaded from the selected workflow
let filter = "all";
let runs = new Map();      // id -> run summary, for the rows shown

/* ---------- editor ---------- */

function lineCount() {
  return text.value.split("\n").length;
}

let badLines = new Set();
function renderGutter() {
  const n = lineCount();
  const frag = document.createDocumentFragment();
  for (let i = 1; i <= n; i++) {
    const s = h("span", { class: badLines.has(i) ? "bad" : null, text: String(i) });
    frag.append(s, "\n");
  }
  gutter.replaceChildren(frag);
  gutter.scrollTop = text.scrollTop;
}

function updateState() {
  const dirty = text.value !== loadedText;
  $("editor-state").textContent = dirty ? "Edited: Start registers it first" : "Unchanged";
  const before = text.value.slice(0, text.selectionStart);
  const line = before.split("\n").length;
  $("editor-pos").textContent = `Line ${line}, column ${before.length - before.lastIndexOf("\n")}`;
}

function selectLine(line, col) {
  const lines = text.value.split("\n");
  if (line < 1 || line > lines.length) return;
  let start = 0;
  for (let i = 0; i < line - 1; i++) start += lines[i].length + 1;
  const end = start + lines[line - 1].length;
  text.focus();
  text.setSelectionRange(col ? Math.min(start + col - 1, end) : start, end);
  const lh = parseFloat(getComputedStyle(text).lineHeight) || 20;
  text.scrollTop = Math.max(0, (line - 4) * lh);
  updateState();
}

// Where a validator path ("steps[2].depends_on[0]") sits in JSON text:
// {line, col} of its value, or of the nearest ancestor found.
function locateJsonPath(src, path) {
  const want = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) want.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  let i = 0;
  let best = null;
  const ws = () => { while (i < src.length && /\s/.test(src[i])) i++; };
  const str = () => { // at '"'
    let out = ""; i++;
    while (i < src.length && src[i] !== '"') {
      if (src[i] === "\\") { out += src[i + 1]; i += 2; } else out += src[i++];
    }
    i++;
    return out;
  };
  const matches = (p) => p.length <= want.length && p.every((k, j) => k === want[j]);
  function value(p) {
    ws();
    if (matches(p)) best = i;
    const c = src[i];
    if (c === "{") {
      i++; ws();
      if (src[i] === "}") { i++; return; }
      for (;;) {
        ws(); if (src[i] !== '"') throw 0;
        const k = str(); ws(); if (src[i] !== ":") throw 0; i++;
        value([...p, k]); ws();
        if (src[i] === ",") { i++; continue; }
        if (src[i] === "}") { i++; return; }
        throw 0;
      }
    } else if (c === "[") {
      i++; ws();
      if (src[i] === "]") { i++; return; }
      for (let n = 0; ; n++) {
        value([...p, n]); ws();
        if (src[i] === ",") { i++; continue; }
        if (src[i] === "]") { i++; return; }
        throw 0;
      }
    } else if (c === '"') str();
    else { while (i < src.length && !/[\s,\]}]/.test(src[i])) i++; }
  }
  try { value([]); } catch { /* best so far */ }
  if (best === null) return null;
  const before = src.slice(0, best);
  return { line: before.split("\n").length, col: best - before.lastIndexOf("\n") };
}

function locate(msg) {
  const m = /\(line (\d+)(?:, column (\d+))?\)|\bline (\d+)(?:, column (\d+))?/.exec(msg);
  if (m) return { line: Number(m[1] || m[3]), col: Number(m[2] || m[4]) || 0 };
  const p = /^(?:warning: )?([A-Za-z_][\w]*(?:\[\d+\]|\.[A-Za-z_][\w]*)*)(?: \(|:)/.exec(msg);
  if (p && looksJson()) return locateJsonPath(text.value, p[1]);
  return null;
}

function looksJson() {
  return /^\s*[{[]/.test(text.value);
}

function showErrors(list) {
  badLines = new Set();
  errors.replaceChildren(...list.map((msg) => {
    const loc = locate(msg);
    const warn = msg.startsWith("warning:");
    const li = h(warn ? "li.warning" : "li");
    if (loc) {
      if (!warn) badLines.add(loc.line);
      li.append(h("button", {
        type: "button",
        title: `Select line ${loc.line} in the editor`,
        onclick: () => selectLine(loc.line, loc.col),
      }, h("span.loc", { text: `L${loc.line}` }), h("span", { text: msg })));
    } else {
      li.append(h("span", {}, h("span.loc", { text: "—" }), h("span", { text: msg })));
    }
    return li;
  }));
  renderGutter();
}

// As you type: JSON syntax only (the server validates on submit).
const checkSyntax = throttle(() => {
  if (!looksJson()) return;
  try {
    JSON.parse(text.value);
    if (errors.dataset.kind === "syntax") { showErrors([]); errors.dataset.kind = ""; }
  } catch (e) {
    const m = /position (\d+)/.exec(e.message);
    let msg = `JSON: ${e.message.replace(/^JSON\.parse: /, "")}`;
    if (m && !/line \d+/.test(msg)) {
      const before = text.value.slice(0, Number(m[1]));
      msg += ` (line ${before.split("\n").length}, column ${Number(m[1]) - before.lastIndexOf("\n")})`;
    }
    showErrors([msg]);
    errors.dataset.kind = "syntax";
  }
}, 400);

text.addEventListener("input", () => { renderGutter(); updateState(); checkSyntax(); });
text.addEventListener("scroll", () => { gutter.scrollTop = text.scrollTop; });
text.addEventListener("keyup", updateState);
text.addEventListener("click", updateState);

$("upload-btn").addEventListener("click", () => $("upload").click());
$("upload").addEventListener("change", async (e) => {
  const f = e.target.files[0];
  if (!f) return;
  text.value = await f.text();
  e.target.value = "";
  showErrors([]);
  renderGutter(); updateState(); checkSyntax();
  say(`Loaded ${f.name}: press Register or Start.`, true);
});

/* ---------- workflows ---------- */

function say(msg, ok) {
  notice.className = `notice ${ok ? "ok" : "err"}`;
  notice.replaceChildren(...(Array.isArray(msg) ? msg : [msg]));
}

async function loadWorkflows(selectId) {
  const list = await api("/workflows?limit=500");
  const seen = new Map();
  for (const w of list) {
    const cur = seen.get(w.name);
    if (!cur || w.version > cur.version) seen.set(w.name, w);
  }
  workflows = [...seen.values()].sort((a, b) => a.name.localeCompare(b.name));
  select.replaceChildren(...workflows.map((w) =>
    h("option", { value: w.id, text: `${w.name}  ·  v${w.version}` })));
  const keep = selectId || select.dataset.current;
  if (keep && workflows.some((w) => w.id === keep)) select.value = keep;
  else {
    const order = workflows.find((w) => w.name === "order-processing");
    if (order) select.value = order.id;
  }
  if (select.value !== select.dataset.current) await loadDefinition();
}

async function loadDefinition() {
  select.dataset.current = select.value;
  if (!select.value) return;
  const w = await api(`/workflows/${encodeURIComponent(select.value)}`);
  loadedText = JSON.stringify(w.definition, null, 2);
  text.value = loadedText;
  loadInput(w);
  text.setSelectionRange(0, 0);
  text.scrollTop = 0;
  showErrors([]);
  renderGutter(); updateState();
}

select.addEventListener("change", () => loadDefinition().catch(fail));

// Registers the editor's text; returns the workflow, or null after showing
// the errors next to the text.
async function register() {
  const yaml = !looksJson();
  try {
    const w = await api("/workflows", {
      method: "POST", body: text.value, contentType: yaml ? "application/yaml" : "application/json",
    });
    showErrors([]);
    loadedText = text.value;
    await loadWorkflows(w.id);
    text.value = loadedText;
    renderGutter(); updateState();
    return w;
  } catch (e) {
    if (e.details && e.details.length) showErrors(e.details);
    else if (e.message) showErrors([e.message]);
    say(e.status === 422 || e.status === 400
      ? `Not registered: ${e.details.length || 1} problem${e.details.length > 1 ? "s" : ""} in the definition.`
      : `Not registered: ${e.message}`, false);
    return null;
  }
}

/* ---------- the run's input ---------- */

const inputKey = (name) => `durable.input.${name}`;
let inputFor = null; // the workflow name the input field was filled for

// The input remembered for w's name, else its definition's defaults; what
// was typed stays while the workflow is the same (a new version of it).
function loadInput(w) {
  if (w.name === inputFor) return;
  inputFor = w.name;
  const kept = localStorage.getItem(inputKey(w.name));
  const defaults = w.definition && w.definition.input;
  const hasDefaults = defaults && typeof defaults === "object" && Object.keys(defaults).length > 0;
  inputText.value = kept !== null ? kept : hasDefaults ? JSON.stringify(defaults, null, 2) : "";
  showInputError("");
}

function showInputError(msg) {
  inputError.textContent = msg;
  if (msg) inputText.setAttribute("aria-invalid", "true");
  else inputText.removeAttribute("aria-invalid");
}

// The input as typed (validated: a JSON object), "" when blank, or null
// after showing why it is not valid.
function checkedInput() {
  const raw = inputText.value.trim();
  if (!raw) return "";
  let v;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    showInputError(`Input is not valid JSON: ${e.message.replace(/^JSON\.parse: /, "")}`);
    return null;
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    showInputError("Input must be a JSON object, like {\"amount\": 12.5}.");
    return null;
  }
  return raw;
}

inputText.addEventListener("input", () => showInputError(""));

async function startRun(withOrder) {
  const input = checkedInput();
  if (input === null) { inputText.focus(); return; }
  showInputError("");
  let id = select.value;
  if (text.value !== loadedText || !id) {
    const w = await register();
    if (!w) return;
    id = w.id;
  }
  const body = {};
  if (withOrder) {
    const amount = Number($("amount").value);
    const order = await api("/orders", { method: "POST", body: { amount: Number.isFinite(amount) ? amount : 0 } });
    body.order_id = order.id;
  }
  // The input goes as typed (the server sees what the person wrote, and
  // refuses what JSON.parse forgives, such as a repeated key).
  const json = JSON.stringify(body);
  const sent = input ? `{"input":${input}${json === "{}" ? "" : `,${json.slice(1, -1)}`}}` : json;
  let run;
  try {
    run = await api(`/workflows/${encodeURIComponent(id)}/runs`, { method: "POST", body: sent });
  } catch (e) {
    if (e.status === 400 && input) { showInputError(`Refused: ${e.message}`); return; }
    throw e;
  }
  const w = workflows.find((x) => x.id === id);
  if (w) {
    if (input) localStorage.setItem(inputKey(w.name), input);
    else localStorage.removeItem(inputKey(w.name));
  }
  location.href = `/ui/run.html?id=${encodeURIComponent(run.id)}`;
}

function fail(e) {
  say(e instanceof TypeError ? "The server is unreachable." : e.message, false);
}

function busy(button, f) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await f(); } catch (e) { fail(e); } finally { button.disabled = false; }
  });
}
busy($("register"), async () => {
  const w = await register();
  if (w) say(`Registered ${w.name} v${w.version}.`, true);
});
busy($("start"), () => startRun(false));
busy($("start-order"), () => startRun(true));

/* ---------- runs table ---------- */

$("filters").replaceChildren(...STATUSES.map((s) => h("button", {
  type: "button", "aria-pressed": String(s === filter), "data-status": s, text: s === "all" ? "All" : s,
  onclick: () => {
    filter = s;
    runs = new Map(); // nothing flashes for a change of filter
    for (const b of $("filters").children) b.setAttribute("aria-pressed", String(b.dataset.status === s));
    refreshRuns();
  },
})));

function runRow(r, flash) {
  const link = h("a", { href: `/ui/run.html?id=${encodeURIComponent(r.id)}`, class: "mono", text: shortId(r.id), title: r.id });
  const started = r.started_at || r.created_at;
  return h(flash ? "tr.flash" : "tr", { "data-run": r.id, "data-status": r.status },
    h("td", {}, badge(r.status),
      r.waiting ? h("div.held-why", { title: r.waiting.message, text: r.waiting.message }) : null),
    h("td", {}, h("a", { href: `/ui/run.html?id=${encodeURIComponent(r.id)}`, text: r.workflow_name }),
      h("span.count", { text: ` v${r.workflow_version}` })),
    h("td", {}, link),
    h("td.num", { title: fmtTime(started), text: fmtAgo(started) }),
    h("td.num", { "data-live": r.completed_at ? null : started, text: fmtDuration(span(r.started_at, r.completed_at)) }),
    h("td", {}, r.order_id
      ? h("a", { href: `/ui/db.html#orders`, class: "mono", title: r.order_id, text: shortId(r.order_id) })
      : h("span.count", { text: "—" })));
}

/* ---------- filters and bulk actions ---------- */

// The filter fields as {workflow, created_after, created_before, input}:
// blank fields are left out. A datetime-local is the browser's local time.
function fieldFilter() {
  const f = {};
  const wf = $("f-workflow").value.trim();
  if (wf) f.workflow = wf;
  for (const [id, key] of [["f-after", "created_after"], ["f-before", "created_before"]]) {
    const v = $(id).value;
    if (v) f[key] = new Date(v).toISOString();
  }
  const field = $("f-field").value.trim();
  if (field) {
    const raw = $("f-value").value;
    let value = raw;
    try {
      const j = JSON.parse(raw);
      if (j === null || typeof j !== "object") value = j;
    } catch { value = raw; }
    f.input = { [field]: value };
  }
  return f;
}

// The query string of the status button and the filter fields.
function listQuery() {
  const f = fieldFilter();
  const q = new URLSearchParams();
  if (filter !== "all") q.set("status", filter);
  if (f.workflow) q.set("workflow_id", f.workflow);
  if (f.created_after) q.set("created_after", f.created_after);
  if (f.created_before) q.set("created_before", f.created_before);
  if (f.input) {
    const [[k, v]] = Object.entries(f.input);
    q.set(`input.${k}`, JSON.stringify(v));
  }
  const s = q.toString();
  return s ? `&${s}` : "";
}

function bulkSay(msg, ok) {
  $("bulk-notice").textContent = msg;
  $("bulk-notice").className = `notice ${ok ? "ok" : "err"}`;
}

// The whole filter of a bulk action: the status button and the fields.
function bulkFilter() {
  const f = fieldFilter();
  if (filter !== "all") f.status = filter;
  return f;
}

let pending = null; // the bulk action waiting for confirmation: {action, filter}
const BULK_WORDS = { // the question's verb, the answer's past tense
  cancel: ["Cancel", "Cancelled"], retry: ["Retry", "Retried"],
  pause: ["Pause", "Paused"], resume: ["Resume", "Resumed"],
};

async function askBulk(action) {
  const f = bulkFilter();
  $("bulk-confirm").hidden = true;
  bulkSay("", true);
  if (!Object.keys(f).length) {
    bulkSay(`Pick a status or fill a filter first: ${action} matching would touch every run.`, false);
    return;
  }
  const r = await api("/runs/bulk", { method: "POST", body: { action, filter: f, dry_run: true } });
  pending = { action, filter: f };
  const verb = BULK_WORDS[action][0];
  $("bulk-question").textContent = `${verb} ${r.touched} of the ${r.matched} matching run${r.matched === 1 ? "" : "s"}?`;
  $("bulk-confirm").dataset.touched = String(r.touched);
  $("bulk-confirm").hidden = false;
  $("bulk-yes").disabled = r.touched === 0;
}

async function doBulk() {
  const p = pending;
  pending = null;
  $("bulk-confirm").hidden = true;
  if (!p) return;
  const r = await api("/runs/bulk", { method: "POST", body: { action: p.action, filter: p.filter } });
  bulkSay(`${BULK_WORDS[p.action][1]} ${r.touched} of ${r.matched} matching run${r.matched === 1 ? "" : "s"}.`, true);
  refreshRuns().catch(() => {});
}

function bulkFail(e) {
  bulkSay(e instanceof TypeError ? "The server is unreachable." : e.message, false);
}

$("run-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  runs = new Map();
  refreshRuns().catch(bulkFail);
});
for (const action of Object.keys(BULK_WORDS)) {
  $(`bulk-${action}`).addEventListener("click", () => askBulk(action).catch(bulkFail));
}
$("bulk-yes").addEventListener("click", () => doBulk().catch(bulkFail));
$("bulk-no").addEventListener("click", () => { pending = null; $("bulk-confirm").hidden = true; });

async function refreshRuns() {
  const q = listQuery();
  const list = await api(`/runs?limit=50${q}`);
  const old = runs;
  runs = new Map(list.map((r) => [r.id, r]));
  $("runs").replaceChildren(...list.map((r) => {
    const before = old.get(r.id);
    return runRow(r, old.size > 0 && (!before || before.status !== r.status));
  }));
  $("runs-empty").hidden = list.length > 0;
  $("runs-count").textContent = `${list.total} ${filter === "all" ? "" : `${filter} `}run${list.total === 1 ? "" : "s"}`;
}

const refreshSoon = throttle(() => refreshRuns().catch(() => {}), 300);

live("/events/stream", refreshSoon, () => {
  refreshSoon();
  if (!workflows.length) loadWorkflows().catch(() => {});
});
// workflows registered elsewhere (CLI, API) appear when the page regains focus
window.addEventListener("focus", () => loadWorkflows().catch(() => {}));

setInterval(() => {
  for (const td of document.querySelectorAll("td[data-live]")) {
    td.textContent = fmtDuration(span(td.dataset.live));
  }
}, 1000);

loadWorkflows(new URLSearchParams(location.search).get("workflow")).catch(fail);
refreshRuns().catch(fail);
renderGutter();
