// ui.js - small DOM and formatting helpers shared by the pages, and the
// page chrome (the live indicator and the "server unreachable" banner).
// Text always goes in through textContent: nothing from the server is HTML.

import { onConnectivity, signOut } from "./api.js";

// h("tag.class", {attr: value, onclick: f}, ...children)
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function badge(status) {
  return h(`span.badge.${status || "pending"}`, { text: status || "—" });
}

export function ms(t) {
  return t ? Date.parse(t) : NaN;
}

export function fmtDuration(msec) {
  if (!Number.isFinite(msec) || msec < 0) return "—";
  if (msec < 1000) return `${Math.round(msec)} ms`;
  const s = msec / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

// Duration from start to end, or to now while still going.
export function span(start, end) {
  const a = ms(start);
  if (!Number.isFinite(a)) return NaN;
  const b = end ? ms(end) : Date.now();
  return b - a;
}

export function fmtTime(t) {
  const d = t ? new Date(t) : null;
  if (!d || Number.isNaN(d.getTime())) return "—";
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return today ? time : `${d.toLocaleDateString()} ${time}`;
}

export function fmtAgo(t) {
  const d = span(t);
  if (!Number.isFinite(d)) return "—";
  if (d < 5000) return "just now";
  if (d < 60000) return `${Math.round(d / 1000)} s ago`;
  if (d < 3600000) return `${Math.round(d / 60000)} min ago`;
  return fmtTime(t);
}

export function shortId(id) {
  if (!id) return "—";
  return id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

export function pretty(v) {
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

// Throttle: call f at most once per `wait` ms, trailing call guaranteed.
export function throttle(f, wait) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const due = Math.max(0, last + wait - Date.now());
    timer = setTimeout(() => { timer = null; last = Date.now(); f(); }, due);
  };
}

// The chrome every page shares: marks the current nav entry, drives the
// live indicator and the banner, and offers "Sign out" when signed in with
// a token (the durable_signed_in cookie /signin sets beside the session's).
export function chrome(page) {
  for (const a of document.querySelectorAll(".topbar nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
  }
  if (/(?:^|;\s*)durable_signed_in=1/.test(document.cookie)) {
    document.querySelector(".topbar").append(h("button.small.signout", {
      type: "button", id: "signout", text: "Sign out", onclick: () => signOut(),
    }));
  }
  const banner = document.getElementById("offline");
  const dot = document.getElementById("live");
  onConnectivity((off) => {
    banner.classList.toggle("show", off);
    dot.classList.toggle("off", off);
    dot.textContent = off ? "Offline" : "Live";
  });
}
