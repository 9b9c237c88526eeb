// api.js - talking to `durable serve`: JSON requests (api), live events
// (live, over EventSource) and the "server unreachable" banner both feed.
//
// Behind `durable serve --token` the pages are authorized by the session
// cookie /signin set (sent by the browser with every fetch and EventSource
// of this origin); a 401 means it ended, and the page goes to sign in again.
//
// The banner shows while any source is offline: a fetch that failed at the
// network level, or an EventSource that lost its connection. A later
// successful fetch, or the EventSource reopening, clears its source.

export const EVENT_TYPES = [
  "run_created", "run_started", "run_completed", "run_failed", "run_cancelled", "run_retried",
  "run_paused", "run_resumed",
  "step_started", "step_completed", "step_failed", "step_skipped", "step_cancelled",
  "step_waiting", "retry_scheduled", "approval_decided", "approval_timeout", "signal_received",
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

// Set once the page is leaving for the sign-in page: live streams are
// closed and no further request is sent, so that nothing is refused (401)
// on the way out.
let leaving = false;
const streams = new Set();

function leave() {
  leaving = true;
  for (const s of streams) s.close();
}

// To the sign-in page, coming back here afterwards.
export function toSignIn() {
  leave();
  location.assign(`/ui/signin.html?next=${encodeURIComponent(location.pathname + location.search)}`);
}

// Ends the session (the server clears its cookies) and goes to sign in.
export async function signOut() {
  leave();
  await fetch("/signout", { method: "POST" });
  location.assign("/ui/signin.html");
}

// api(path, {method, body, contentType}) -> parsed JSON (with .total from
// X-Total-Count on lists). Throws ApiError for an error status, TypeError
// when the server cannot be reached.
export async function api(path, opts = {}) {
  if (leaving) return new Promise(() => {}); // the page is going away
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
  if (res.status === 401) toSignIn();
  if (!res.ok) throw new ApiError(res.status, body);
  if (Array.isArray(body)) {
    const total = res.headers.get("X-Total-Count");
    body.total = total === null ? body.length : Number(total);
  }
  return body;
}

// live(url, onEvent, onOpen): an EventSource on url calling onEvent(type,
// data) for every known event type and onOpen() on every (re)connection, so
// a page can refetch what it missed while away. The browser reconnects by
// itself after a lost connection, sending Last-Event-ID. When the server
// refuses the stream instead (204: a finished run's stream has nothing more
// to say; 503), the EventSource closes: /health tells whether the server is
// there, and the stream is opened again in 2 s unless closed on purpose.
// A lost connection shows the banner only if it is not back within 1.5 s.
export function live(url, onEvent, onOpen) {
  const key = `sse:${url}`;
  let es = null;
  let timer = null;
  let wanted = true;

  function retryLater() {
    clearTimeout(timer);
    timer = setTimeout(() => { if (wanted) connect(); }, 2000);
  }

  function connect() {
    if (es) es.close();
    const mine = new EventSource(url);
    es = mine;
    mine.addEventListener("open", () => {
      setOffline(key, false);
      if (onOpen) onOpen();
    });
    mine.addEventListener("error", () => {
      if (mine !== es || !wanted) return;
      if (mine.readyState === EventSource.CLOSED) {
        fetch("/health", { cache: "no-store" })
          .then((r) => { setOffline(key, !r.ok); retryLater(); })
          .catch(() => { setOffline(key, true); retryLater(); });
        return;
      }
      setTimeout(() => {
        if (mine === es && wanted && mine.readyState === EventSource.CONNECTING) setOffline(key, true);
      }, 1500);
    });
    for (const type of EVENT_TYPES) {
      mine.addEventListener(type, (ev) => {
        let data = null;
        try { data = JSON.parse(ev.data); } catch { data = null; }
        onEvent(type, data);
      });
    }
  }
  connect();
  window.addEventListener("pagehide", () => { wanted = false; if (es) es.close(); });
  const stream = {
    // stop listening (a finished run): no reconnection, no banner
    close() { wanted = false; clearTimeout(timer); if (es) es.close(); es = null; setOffline(key, false); },
    // listen again (a retried run)
    open() { if (!wanted && !leaving) { wanted = true; connect(); } },
  };
  streams.add(stream);
  return stream;
}
