// schedules.js - the schedules page: GET /schedules (refetched every 2 s,
// so that the next fire times move on), a form that POSTs a schedule with
// only the fields filled in (blank ones take their defaults on the
// server), and Pause / Resume / Delete on each row.

import { api, ApiError } from "./api.js";
import { h, chrome } from "./ui.js";

chrome("schedules");

const $ = (id) => document.getElementById(id);

function when(s) {
  return s.cron ? `cron ${s.cron}` : `every ${s.every}`;
}

// A fire time as UTC, "2026-12-07 02:30:00 UTC" (the local time in its title).
function utc(t) {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? t : `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function showError(e) {
  $("s-error").textContent = e instanceof ApiError || e instanceof Error ? e.message : String(e);
}

async function act(s, verb) {
  $("s-error").textContent = "";
  try {
    if (verb === "delete") {
      if (!window.confirm(`Delete schedule ${s.id}? The runs it started stay.`)) return;
      await api(`/schedules/${encodeURIComponent(s.id)}`, { method: "DELETE" });
    } else {
      await api(`/schedules/${encodeURIComponent(s.id)}/${verb}`, { method: "POST" });
    }
  } catch (e) {
    showError(e);
  }
  refresh();
}

function row(s) {
  const next = h("ol.next", {}, (s.next || []).map((t) => h("li", {}, h("time", { datetime: t, title: new Date(t).toString(), text: utc(t) }))));
  return h("tr", { "data-id": s.id },
    h("td.mono.sched-id", { text: s.id }),
    h("td", { text: s.workflow }),
    h("td", {}, h("span.mono", { text: when(s) }), h("div.hint", { text: s.cron ? s.timezone : "" })),
    h("td", {}, h(`span.badge.${s.paused ? "paused" : "running"}`, { text: s.paused ? "paused" : "active" })),
    h("td", {}, next),
    h("td.num", { text: `${s.fired}${s.skipped ? ` (${s.skipped} skipped)` : ""}` }),
    h("td", {}, h("div.row.sched-actions", {},
      s.paused
        ? h("button.small.ok", { type: "button", text: "Resume", "aria-label": `Resume ${s.id}`, onclick: () => act(s, "resume") })
        : h("button.small", { type: "button", text: "Pause", "aria-label": `Pause ${s.id}`, onclick: () => act(s, "pause") }),
      h("button.small.danger", { type: "button", text: "Delete", "aria-label": `Delete ${s.id}`, onclick: () => act(s, "delete") }))));
}

async function refresh() {
  try {
    const list = await api("/schedules?limit=500");
    $("s-rows").replaceChildren(...list.map(row));
    $("s-empty").hidden = list.length > 0;
    $("s-count").textContent = `${list.length} schedule${list.length === 1 ? "" : "s"}`;
  } catch (e) {
    if (!(e instanceof TypeError)) showError(e);
  }
}

async function loadWorkflows() {
  try {
    const wfs = await api("/workflows?limit=500");
    const names = [...new Set(wfs.map((w) => w.name))].sort();
    $("s-workflow").replaceChildren(...names.map((n) => h("option", { value: n, text: n })));
  } catch (e) {
    if (!(e instanceof TypeError)) showError(e);
  }
}

// The schedule the form describes: only the fields filled in.
function body() {
  const b = { workflow: $("s-workflow").value };
  for (const [id, key] of [["s-cron", "cron"], ["s-every", "every"], ["s-timezone", "timezone"],
    ["s-overlap", "overlap"], ["s-catch-up", "catch_up"], ["s-id", "id"]]) {
    const v = $(id).value.trim();
    if (v) b[key] = v;
  }
  const max = $("s-catch-up-max").value.trim();
  if (max) b.catch_up_max = Number(max);
  const input = $("s-input").value.trim();
  if (input) {
    try {
      b.input = JSON.parse(input);
    } catch (e) {
      throw new Error(`input: not JSON (${e.message})`);
    }
  }
  if ($("s-paused").checked) b.paused = true;
  return b;
}

$("create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("s-error").textContent = "";
  try {
    await api("/schedules", { method: "POST", body: body() });
    for (const id of ["s-cron", "s-every", "s-id", "s-input"]) $(id).value = "";
    $("s-paused").checked = false;
  } catch (e) {
    showError(e);
  }
  refresh();
});

loadWorkflows();
refresh();
setInterval(refresh, 2000);
