// api.js - talking to `durable serve`: JSON requests (api), live events
// (live, over EventSource) and the "server unreachable" banner both feed.
//
// The banner shows while any source is offline: a fetch that failed at the
// network level, or an EventSource that lost its connection. A later
// successful fetch, or the EventSource reopening, clears its source.

export const EVENT_TYPES = [
  "run_created", "run_started", "run_completed", "run_failed", "run_cancelled", "run_retried",
  "step_started", "step_completed", "step_failed", "step_skipped", "step_cancelled",
  "step_waiting", "retry_scheduled", "approval_decided", "approval_timeout",
  "action_applied", "action_failed", "recovered", "timer_fired", "message",
];

const offline = new Set();
const listeners = new Set();

function setOffline(source, off) {
  const before = offline.size > 0;
  if (off) offline.add(source); else offline.delete(source);
  const now = offline.size > 0;
  if (before !== now) for (const f of listeners) f(now);
}

export function onConnectivity(f) {
  listeners.add(f);
  f(offline.size > 0);
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.details = Array.isArray(e.details) ? e.details : [];
  }
}

// api(path, {method, body, contentType}) -> parsed JSON (with .total from
// X-Total-Count on lists). Throws ApiError for an error status, TypeError
// when the server cannot be reached.
export async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", headers: { Accept: "application/json" } };
  if (opts.body !== undefined) {
    const raw = typeof opts.body === "string";
    init.body = raw ? opts.body : JSON.stringify(opts.body);
    init.headers["Content-Type"] = opts.contentType || "application/json";
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    setOffline("fetch", true);
    throw e;
  }
  setOffline("fetch", false);
  const text = await res.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch { body = null; }
  }
  if (!res.ok) throw new ApiError(res.status, body);
  if (Array.isArray(body)) {
    const total = res.headers.get("X-Total-Count");
    body.total = total === null ? body.length : Number(total);
  }
  return body;
}

// live(url, onEvent, onOpen): an EventSource on url calling onEvent(type,
// data, lastEventId) for every known event type and onOpen() on every
// (re)connection, so a page can refetch what it missed while away. The
// browser reconnects by itself, sending Last-Event-ID.
export function live(url, onEvent, onOpen) {
  const key = `sse:${url}`;
  let es = null;
  let retryTimer = null;

  function connect() {
    es = new EventSource(url);
    es.addEventListener("open", () => {
      setOffline(key, false);
      if (onOpen) onOpen();
    });
    es.addEventListener("error", () => {
      setOffline(key, true);
      // CLOSED means the browser gave up (e.g. the server answered an error
      // while restarting): start again ourselves.
      if (es.readyState === EventSource.CLOSED && !retryTimer) {
        retryTimer = setTimeout(() => { retryTimer = null; connect(); }, 2000);
      }
    });
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, (ev) => {
        let data = null;
        try { data = JSON.parse(ev.data); } catch { data = null; }
        onEvent(type, data, ev.lastEventId);
      });
    }
  }
  connect();
  window.addEventListener("pagehide", () => es && es.close());
  return { close: () => es && es.close() };
}
