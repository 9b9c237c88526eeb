// run.js - one run (/ui/run.html?id=RUN): the step graph, the selected
// step's details, the attempt timeline, the history and the run's order,
// kept live from /runs/RUN/stream. Every event refetches the run (throttled);
// on (re)connection the history is caught up from the last seen seq. The
// Logs panel (built here) shows /runs/RUN/logs from a level up, fetched
// again from its next_after on each event.

import { api, live } from "./api.js";
import { createGraph, mapProgress, shapeOf } from "./graph.js";
import { h, badge, chrome, fmtDuration, fmtTime, span, ms, pretty, shortId, throttle } from "./ui.js";

chrome("runs");

const $ = (id) => document.getElementById(id);
const runId = new URLSearchParams(location.search).get("id") || location.hash.slice(1);
const ACTIVE = ["pending", "running", "waiting", "paused"];  // unfinished
const PAUSABLE = ["pending", "running", "waiting"];

let run = null;
let events = [];          // history, by seq
let lastSeq = 0;
let definition = null;    // the workflow's definition, for step configs
let order = null;
let graph = null;
let selected = null;
let stream = null;        // the run's event stream: closed while the run is finished

let sayTimer = null;
function say(msg, ok, keep = false) {
  $("notice").className = `notice ${ok ? "ok" : "err"}`;
  $("notice").textContent = msg;
  clearTimeout(sayTimer);
  if (ok && !keep) sayTimer = setTimeout(() => { $("notice").textContent = ""; }, 5000);
}

/* ---------- data ---------- */

async function fetchRun() {
  run = await api(`/runs/${encodeURIComponent(runId)}`);
  if (!definition && run.workflow_id) {
    api(`/workflows/${encodeURIComponent(run.workflow_id)}`)
      .then((w) => { definition = w.definition; renderStep(); })
      .catch(() => {});
  }
  if (run.order_id) await fetchOrder();
  if (stream) {
    if (ACTIVE.includes(run.status)) stream.open(); else stream.close();
  }
  render();
}

async function fetchOrder() {
  try {
    order = await api(`/orders/${encodeURIComponent(run.order_id)}`);
  } catch (e) {
    if (e instanceof TypeError) throw e;
  }
}

async function fetchEvents() {
  for (;;) {
    const page = await api(`/runs/${encodeURIComponent(runId)}/events?after=${lastSeq}&limit=500`);
    addEvents(page);
    if (page.length < 500) break;
  }
  renderHistory();
  renderTimeline();
}

function addEvents(list) {
  for (const e of list) {
    if (e.seq <= lastSeq) continue;
    events.push(e);
    lastSeq = e.seq;
  }
}

const refetch = throttle(() => {
  if (gone) return;
  fetchRun().catch(() => {});
  fetchEvents().catch(() => {});
}, 200);

/* ---------- rendering ---------- */

function stepDuration(st) {
  if (st.status === "pending" || !st.started_at) return "";
  if (st.status === "waiting" && !st.completed_at) return "waiting";
  return fmtDuration(span(st.started_at, st.completed_at));
}

// Why a pending run is not running (its `waiting`: a concurrency limit).
function renderHeld() {
  const w = run.waiting;
  $("held").hidden = !w;
  if (!w) { $("held").replaceChildren(); return; }
  $("held").replaceChildren(h("strong", { text: "Not running yet: " }), w.message,
    run.priority ? h("span.count", { text: ` · priority ${run.priority}` }) : "");
}

function render() {
  if (!run) return;
  document.title = `${run.workflow_name} · ${shortId(run.id)} · durable`;
  $("title").textContent = run.workflow_name;
  $("run-status").replaceChildren(badge(run.status));
  $("run-id").textContent = run.id;
  $("cancel").disabled = !ACTIVE.includes(run.status);
  $("retry").disabled = run.status !== "failed";
  $("delete").disabled = ACTIVE.includes(run.status);
  $("pause").disabled = !PAUSABLE.includes(run.status);
  $("resume").disabled = run.status !== "paused";
  renderRestart();
  renderHeld();

  const steps = run.steps || [];
  const done = steps.filter((s) => s.status === "completed" || s.status === "skipped").length;
  const facts = [
    ["Workflow", h("a", { href: `/?workflow=${encodeURIComponent(run.workflow_id)}`, title: "Open its definition", text: `${run.workflow_name} v${run.workflow_version}` })],
    ["Started", fmtTime(run.started_at || run.created_at)],
    ["Duration", h("span", { id: "run-duration", text: fmtDuration(span(run.started_at || run.created_at, run.completed_at)) })],
    ["Steps", `${done} of ${steps.length} done`],
    ["Order", run.order_id
      ? h("span", {}, order ? badge(order.status) : "…", " ", h("span.count.mono", { id: "order-id", title: run.order_id, text: shortId(run.order_id) }))
      : h("span.count", { text: "none" })],
  ];
  if (order) facts.push(["Amount", String(order.amount)]);
  if (run.restarted_from) {
    facts.push(["Restarted from", h("span", {},
      h("a.mono", { id: "restarted-from", href: `/ui/run.html?id=${encodeURIComponent(run.restarted_from.run_id)}`, title: run.restarted_from.run_id, text: shortId(run.restarted_from.run_id) }),
      ` at ${run.restarted_from.step_id}`)]);
  }
  if (run.error_message) facts.push(["Error", h("span", { title: run.error_message, class: "count", text: run.error_message })]);
  $("facts").replaceChildren(...facts.map(([k, v]) => h("div.fact", {}, h("div.k", { text: k }), h("div.v", {}, v))));
  const orderFact = $("order-id");
  if (orderFact && order) orderFact.parentElement.dataset.orderStatus = order.status;

  if (!graph || graph.shape !== shapeOf(steps)) {
    graph = createGraph($("graph"), steps, selectStep);
    if (selected) graph.select(selected);
  }
  graph.update(steps, stepDuration);
  $("graph-hint").textContent = `${steps.length} step${steps.length === 1 ? "" : "s"} · select one for its details`;
  renderStep();
}

// The Restart-from control: a finished run's steps, the selected one (or
// the first) chosen.
function renderRestart() {
  const sel = $("restart-step");
  const finished = !ACTIVE.includes(run.status);
  const ids = (run.steps || []).map((s) => s.step_id);
  if (sel.dataset.ids !== ids.join("\n")) {
    const keep = sel.value;
    sel.replaceChildren(...ids.map((id) => h("option", { value: id, text: id })));
    sel.dataset.ids = ids.join("\n");
    if (ids.includes(keep)) sel.value = keep;
  }
  sel.disabled = !finished || !ids.length;
  $("restart").disabled = !finished || !ids.length;
}

function selectStep(id) {
  selected = id;
  if ([...$("restart-step").options].some((o) => o.value === id)) $("restart-step").value = id;
  graph.select(id);
  renderStep();
}

// The step's definition without what the panel already shows: config,
// retry, timeout and the rest as written.
function configView(cfg) {
  const rest = { ...cfg };
  delete rest.id; delete rest.type; delete rest.depends_on;
  const keys = Object.keys(rest);
  return keys.length === 1 && keys[0] === "config" ? rest.config : rest;
}

function stepConfig(id) {
  const steps = definition && Array.isArray(definition.steps) ? definition.steps : [];
  return steps.find((s) => s.id === id) || null;
}

// Attempts of a step from the history: [{attempt, start, end, status, error}]
function attemptsOf(id) {
  const out = [];
  let cur = null;
  for (const e of events) {
    if (e.step_id !== id) continue;
    if (e.type === "step_started") {
      cur = { attempt: e.data && e.data.attempt, start: e.at, end: null, status: "running", error: null };
      out.push(cur);
    } else if (cur && (e.type === "step_completed" || e.type === "step_failed")) {
      cur.end = e.at;
      cur.status = e.type === "step_completed" ? "completed" : "failed";
      cur.error = e.data && e.data.error;
      cur = null;
    } else if (e.type === "retry_scheduled" && out.length) {
      out[out.length - 1].retryAt = e.at;
      out[out.length - 1].wake = e.data && e.data.wake_at;
    } else if (e.type === "step_waiting") {
      if (cur) cur.status = "waiting";
      else out.push(cur = { attempt: null, start: e.at, end: null, status: "waiting" });
    } else if (cur && (e.type === "approval_decided" || e.type === "approval_timeout")) {
      cur.end = e.at;
      cur.status = "completed";
      cur = null;
    }
  }
  if (run && run.status !== "running" && run.status !== "waiting") {
    for (const a of out) if (!a.end) a.end = run.completed_at || null;
  }
  return out;
}

// The signal a waiting step waits for: its last step_waiting event says
// (a definition's name may be a template; a code-first wait has no
// definition), else the definition, else the step's name.
function signalOf(st, cfg) {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e.step_id === st.step_id && e.type === "step_waiting" && e.data && e.data.signal) return e.data.signal;
  }
  if (cfg && cfg.config && typeof cfg.config.signal === "string") return cfg.config.signal;
  return st.step_id.replace(/#\d+$/, "");
}

function renderStep() {
  const box = $("step");
  if (!run || !selected) return;
  const st = (run.steps || []).find((s) => s.step_id === selected);
  if (!st) return;
  $("step-title").textContent = st.step_id;
  const cfg = stepConfig(st.step_id);
  const kids = [
    h("dl", {},
      h("dt", { text: "Status" }), h("dd", {}, badge(st.status)),
      h("dt", { text: "Type" }), h("dd", { text: st.type || (cfg && cfg.type) || "task" }),
      h("dt", { text: "Attempt" }), h("dd", { text: `${st.attempt || 0} of ${st.max_attempts || 1}` }),
      h("dt", { text: "Started" }), h("dd", { text: fmtTime(st.started_at) }),
      h("dt", { text: "Finished" }), h("dd", { text: fmtTime(st.completed_at) }),
      st.waiting ? h("dt", { text: "Not started" }) : null,
      st.waiting ? h("dd.held-why", { id: "step-held", text: st.waiting.message }) : null,
      h("dt", { text: "Duration" }), h("dd", { text: stepDuration(st) || "—" }),
      st.wake_at ? [h("dt", { text: "Wakes" }), h("dd", { text: fmtTime(st.wake_at) })] : null,
      h("dt", { text: "Needs" }), h("dd", { text: (st.depends_on || []).join(", ") || "—" }),
      st.progress ? [h("dt", { text: "Items" }), h("dd", { id: "step-items", text: `${mapProgress(st.progress)}${st.progress.running ? `, ${st.progress.running} running` : ""}` })] : null),
  ];
  if (st.status === "waiting" && (st.type === "approval" || (cfg && cfg.type === "approval"))) {
    const by = h("input", { type: "text", id: "approve-by", value: localStorage.getItem("durable.by") || "", placeholder: "who decides" });
    const comment = h("input", { type: "text", id: "approve-comment", placeholder: "optional" });
    const decide = (what) => async (ev) => {
      const button = ev.currentTarget; /* null once the handler has awaited */
      button.disabled = true;
      localStorage.setItem("durable.by", by.value);
      const body = { by: by.value.trim() || "web" };
      if (comment.value.trim()) body.comment = comment.value.trim();
      try {
        await api(`/runs/${encodeURIComponent(runId)}/steps/${encodeURIComponent(st.step_id)}/${what}`, {
          method: "POST", body,
        });
        say(`${st.step_id}: ${what === "approve" ? "approved" : "rejected"}.`, true);
        refetch();
      } catch (e) { say(e.message, false); button.disabled = false; }
    };
    kids.push(h("div.approval", { role: "group", "aria-label": "Approval" },
      h("strong", { text: (cfg && cfg.config && cfg.config.prompt) || "Waiting for a decision" }),
      h("label", { for: "approve-by", text: "Your name" }), by,
      h("label", { for: "approve-comment", text: "Comment" }), comment,
      h("div.row", {},
        h("button.ok", { type: "button", id: "approve", onclick: decide("approve"), text: "✓ Approve" }),
        h("button.danger", { type: "button", id: "reject", onclick: decide("reject"), text: "✕ Reject" }))));
  }
  if (st.status === "waiting" && (st.type === "wait_signal" || (cfg && cfg.type === "wait_signal"))) {
    const name = signalOf(st, cfg);
    const payload = h("textarea", { id: "signal-payload", rows: 3, placeholder: "null" });
    const send = async (ev) => {
      const button = ev.currentTarget; /* null once the handler has awaited */
      button.disabled = true;
      try {
        /* The body is the payload as typed: blank sends null. */
        await api(`/runs/${encodeURIComponent(runId)}/signals/${encodeURIComponent(name)}`, {
          method: "POST", body: payload.value.trim(),
        });
        say(`signal ${name} sent.`, true);
        refetch();
      } catch (e) { say(e.message, false); button.disabled = false; }
    };
    kids.push(h("div.approval", { role: "group", "aria-label": "Signal" },
      h("strong", { id: "signal-waiting", text: `waiting for signal ${name}` }),
      h("label", { for: "signal-payload", text: "Payload (JSON; blank sends null)" }), payload,
      h("div.row", {},
        h("button.ok", { type: "button", id: "send-signal", onclick: send, text: "Send signal" }))));
  }
  if (st.error_message) kids.push(h("h3", { text: "Error" }), h("div.err-text", { text: st.error_message }));
  kids.push(h("h3", { text: "Config" }), h("pre.json", { text: cfg ? pretty(configView(cfg)) : "…" }));
  kids.push(h("h3", { text: "Output" }), h("pre.json", { text: st.output === null || st.output === undefined ? "—" : pretty(st.output) }));
  const atts = attemptsOf(st.step_id);
  if (atts.length) {
    kids.push(h("h3", { text: "Attempts" }), h("ol.history", {}, atts.map((a, i) =>
      h("li", { style: "grid-template-columns: 24px 1fr auto; padding: 6px 0" },
        h("span.seq", { text: `#${i + 1}` }),
        h("span", {}, badge(a.status), a.error ? h("div.count", { text: a.error }) : null),
        h("span.at", { text: fmtDuration(span(a.start, a.end)) })))));
  }
  box.replaceChildren(...kids);
}

function renderTimeline() {
  const box = $("timeline");
  if (!run || !events.length) { box.replaceChildren(h("p.count", { text: "No attempts yet." })); return; }
  const t0 = ms(events[0].at);
  const finished = !ACTIVE.includes(run.status) && run.completed_at;
  const t1 = Math.max(finished ? ms(run.completed_at) : Date.now(), ms(events[events.length - 1].at), t0 + 1000);
  const pct = (t) => `${((ms(t) - t0) / (t1 - t0)) * 100}%`;
  const width = (a, b) => `${Math.max(0, ((ms(b) - ms(a)) / (t1 - t0)) * 100)}%`;
  const rows = (run.steps || []).map((st) => {
    const track = h("div.tl-track");
    for (const a of attemptsOf(st.step_id)) {
      const end = a.end || new Date(t1).toISOString();
      track.append(h(`div.tl-bar.${a.status}`, {
        style: `left:${pct(a.start)};width:${width(a.start, end)}`,
        title: `${st.step_id} attempt ${a.attempt || ""}: ${a.status}, ${fmtDuration(span(a.start, a.end))}`,
      }));
      if (a.retryAt && a.wake) {
        track.append(h("div.tl-gap", { style: `left:${pct(a.retryAt)};width:${width(a.retryAt, a.wake)}`, title: "back-off" }));
      }
    }
    return h("div.tl-row", {}, h("span.name", { text: st.step_id, title: st.step_id }), track);
  });
  box.replaceChildren(...rows, h("div.tl-axis", {}, h("span", { text: "0 s" }), h("span", { text: fmtDuration(t1 - t0) })));
}

function renderHistory() {
  // A map step has an event per item: the list shows the newest 1,000.
  $("hist-count").textContent = `${events.length} events${events.length > HISTORY_SHOWN ? ` (the last ${HISTORY_SHOWN.toLocaleString("en-US")} shown)` : ""}`;
  const t0 = events.length ? ms(events[0].at) : 0;
  $("history").replaceChildren(...events.slice(-HISTORY_SHOWN).reverse().map((e) => h("li", {},
    h("span.seq", { text: `#${e.seq}` }),
    h("span.at", { title: e.at, text: `+${fmtDuration(ms(e.at) - t0)}` }),
    h(`span.type.${e.type}`, { text: e.type }),
    h("span.data", { title: e.data ? JSON.stringify(e.data) : "", text: [e.step_id, e.data && Object.keys(e.data).length ? JSON.stringify(e.data) : ""].filter(Boolean).join("  ") }))));
}

const HISTORY_SHOWN = 1000;
const historySoon = throttle(renderHistory, 250);

/* ---------- actions ---------- */

async function act(button, path, done) {
  button.disabled = true;
  try {
    await api(`/runs/${encodeURIComponent(runId)}/${path}`, { method: "POST", body: {} });
    say(done, true);
  } catch (e) {
    say(e.message, false);
  }
  refetch();
}
$("cancel").addEventListener("click", (e) => act(e.currentTarget, "cancel", "Run cancelled."));
$("retry").addEventListener("click", (e) => act(e.currentTarget, "retry", "Retrying the failed steps."));
$("restart").addEventListener("click", async (e) => {
  const from = $("restart-step").value;
  e.currentTarget.disabled = true;
  try {
    const created = await api(`/runs/${encodeURIComponent(runId)}/restart`, { method: "POST", body: { from_step: from } });
    location.href = `/ui/run.html?id=${encodeURIComponent(created.id)}`;
  } catch (err) {
    say(err.message, false);
    refetch();
  }
});
$("pause").addEventListener("click", (e) => act(e.currentTarget, "pause", "Run paused: running steps finish, nothing new starts."));
$("resume").addEventListener("click", (e) => act(e.currentTarget, "resume", "Run resumed."));

// The run is gone (deleted here or elsewhere, or a wrong id): say so, stop
// listening, and leave nothing to act on.
let gone = false;
function showGone(msg, ok = false) {
  gone = true;
  if (stream) stream.close();
  for (const id of ["retry", "cancel", "delete"]) $(id).disabled = true;
  $("title").textContent = ok ? "Run deleted" : "Run not found";
  say(msg, ok, true);
}

$("delete").addEventListener("click", async (e) => {
  const button = e.currentTarget;
  if (!confirm("Delete this run with its steps and history? This cannot be undone.")) return;
  button.disabled = true;
  try {
    await api(`/runs/${encodeURIComponent(runId)}`, { method: "DELETE" });
    showGone("Run deleted with its steps and history. It no longer appears in the runs list.", true);
  } catch (err) {
    say(err.message, false);
    button.disabled = false;
  }
});

/* ---------- logs ---------- */

const LEVELS = ["debug", "info", "warning", "error"];
const LEVEL_COLOUR = { warning: "var(--waiting-fg)", error: "var(--failed-fg)", debug: "var(--faint)" };
let logLines = [];        // every level, by seq
let logsAfter = 0;        // next_after of the last page
const logLevel = h("select", { id: "log-level", "aria-label": "Least level shown" },
  LEVELS.map((l) => h("option", { value: l, text: l === "debug" ? "all (debug)" : `${l} and up` })));
logLevel.value = localStorage.getItem("durable.logLevel") || "info";
logLevel.addEventListener("change", () => {
  localStorage.setItem("durable.logLevel", logLevel.value);
  renderLogs();
});

function mountLogs() {
  const hist = $("history") && $("history").closest("section");
  if (!hist) return;
  hist.after(h("section.card", { "aria-labelledby": "logs-title", id: "logs-card" },
    h("header", {}, h("h2", { id: "logs-title", text: "Logs" }),
      h("span.hint", { id: "logs-count" }), logLevel),
    h("ol.history", { id: "logs" })));
}

async function fetchLogs() {
  for (;;) {
    const page = await api(`/runs/${encodeURIComponent(runId)}/logs?after=${logsAfter}&limit=1000`);
    for (const l of page.logs) {  /* one line per event at most: seq orders them */
      if (!logLines.length || l.seq > logLines[logLines.length - 1].seq) logLines.push(l);
    }
    logsAfter = page.next_after;
    if (page.logs.length < 1000) break;
  }
  renderLogs();
}

function renderLogs() {
  const box = $("logs");
  if (!box) return;
  const min = LEVELS.indexOf(logLevel.value);
  const shown = logLines.filter((l) => LEVELS.indexOf(l.level) >= min);
  $("logs-count").textContent = `${shown.length} of ${logLines.length} lines`;
  const t0 = events.length ? ms(events[0].at) : (logLines.length ? ms(logLines[0].at) : 0);
  box.replaceChildren(...shown.slice().reverse().map((l) => h(`li.log.${l.level}`, { "data-level": l.level },
    h("span.seq", { text: `#${l.seq}` }),
    h("span.at", { title: l.at, text: `+${fmtDuration(ms(l.at) - t0)}` }),
    h("span.type", { style: LEVEL_COLOUR[l.level] ? `color: ${LEVEL_COLOUR[l.level]}` : null, text: l.level }),
    h("span.data", { title: l.message, text: [l.step_id, l.message].filter(Boolean).join(": ") }))));
}

const logsSoon = throttle(() => { fetchLogs().catch(() => {}); }, 250);

/* ---------- live ---------- */

if (!runId) {
  say("No run id in the address.", false);
} else {
  stream = live(`/runs/${encodeURIComponent(runId)}/stream`, (type, data) => {
    if (data && data.seq && data.seq === lastSeq + 1) {
      addEvents([data]);
      historySoon();
    }
    logsSoon();
    refetch();
    if (type === "action_applied" && run && run.order_id) fetchOrder().then(render).catch(() => {});
  }, refetch);
  fetchRun().catch((e) => {
    if (e.status === 404) showGone(`Run ${runId} not found: it was deleted, or never existed.`);
    else say(e instanceof TypeError ? "The server is unreachable." : e.message, false);
  });
  fetchEvents().catch(() => {});
  mountLogs();
  fetchLogs().catch(() => {});
  setInterval(() => {
    if (gone || !run || !ACTIVE.includes(run.status)) return;
    const d = $("run-duration");
    if (d) d.textContent = fmtDuration(span(run.started_at || run.created_at, null));
    if (graph) graph.update(run.steps || [], stepDuration);
    const st = selected && (run.steps || []).find((s) => s.step_id === selected);
    if (st && st.status === "running") renderStep();
    renderTimeline();
  }, 500);
}
