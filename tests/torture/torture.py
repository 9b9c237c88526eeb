#!/usr/bin/env python3
"""Torture: SIGKILL `durable serve` at random moments, again and again, while
concurrent runs of every step type go through it, then check that nothing was
lost or done twice (issue 15 item 2, docs/RELIABILITY.md).

One server on a fixed loopback port and one database (a file, or with --pg
the PostgreSQL database DURABLE_TEST_PG names, the server then named
`--node torture` at every start so that it takes its runs back at once) is
killed with SIGKILL --kills times and started again each time. The moment
of each kill is drawn from the seed: a random delay after the server
answered /health (0.02 to 4 s, most under 0.6 s; on PostgreSQL 1 s more,
--min-delay), or, one start in four, a failpoint armed for that start
(DURABLE_FAILPOINT=NAME:N: the writer before and after its commit, recovery
before adopting a run and after recording one recovered), the timed kill
being the fallback when the failpoint is not reached in time.

Meanwhile a client thread keeps up to --inflight runs going: it creates an
order, starts a run on it with an idempotency key (retried with the same key
until acknowledged, across kills), and decides approvals over HTTP as soon as
they wait (retried while the server is down). The runs (kind drawn from the
seed):
  approve  torture-order: task, two http_request steps against a local
           counting server, a delay, condition/conditional/transform steps, an
           approval approved during the chaos, a child run (`workflow` step:
           task, http_request, delay, transform), the four order actions;
  reject   the same, the approval rejected: the rest is skipped, a log step
           says so, only validate_order is applied;
  plain    the same without approval (its `if` skips it);
  fail     torture-fail: a task failing every attempt; the run fails after
           validate_order, nothing else is applied.

After the last kill the server runs until every run has finished, is stopped
with SIGTERM, and the database is checked:
  - every run acknowledged to the client is there, once per key, finished as
    its kind means (completed or failed); no run is left unfinished;
  - each run's events have seq 1..n, from run_created to its end event; each
    step completed at most once and never started again after completing;
  - the history seen at each kill (read from a copy of the files the kill
    left, or with psql) is a prefix of the final one: nothing committed is
    lost or rewritten;
  - each order's actions were applied as many times as its kind means (never
    twice) and the order is in the status that follows;
  - each http_request step's target saw one Idempotency-Key only, RUN/STEP,
    on every request; a skipped step's target saw nothing;
  - each parent's workflow step has exactly one child run, keyed RUN/STEP#1;
  - each approval has the decision the client made;
  - PRAGMA integrity_check is ok (SQLite).
Prints kills (timed, per failpoint), runs, steps, events, lost, duplicated,
elapsed and the seed; exits 1 on any problem.

Usage: torture.py --durable PATH [--seed S] [--kills N] [--inflight N] [--pg]
                  [--keep DIR]
"""
import argparse
import atexit
import collections
import hashlib
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e", "server"))
sys.path.insert(0, os.path.join(HERE, ".."))
import server_util as su  # noqa: E402

FAILPOINTS = ["writer.before_commit", "writer.after_commit", "recover.adopt",
              "recover.restart"]
KINDS = ["approve", "reject", "plain", "fail"]
KIND_WEIGHTS = [4, 2, 3, 1]
UNFINISHED = ("pending", "running", "waiting")
EXPECT = {  # kind -> (run status, order status, actions applied once)
    "approve": ("completed", "shipped",
                ["validate_order", "charge_payment", "ship_order", "send_notification"]),
    "plain": ("completed", "shipped",
              ["validate_order", "charge_payment", "ship_order", "send_notification"]),
    "reject": ("completed", "validated", ["validate_order"]),
    "fail": ("failed", "validated", ["validate_order"]),
}
HTTP_STEPS = {"torture-order": ["fetch", "post"], "torture-child": ["ping"]}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- workflows

def task(sid, seconds, deps=(), **kw):
    step = {"id": sid, "type": "task", "depends_on": list(deps),
            "config": {"duration_seconds": seconds}}
    if "action" in kw:
        step["config"]["action"] = kw.pop("action")
    step.update(kw)
    return step


def workflows(hit):
    """The three definitions; hit: the counting server's base URL."""
    approved = ".steps.approved.output"
    order = {
        "name": "torture-order",
        "description": "every step type, killed again and again",
        "input": {"ask": False, "amount": 0, "wanted": None},
        "steps": [
            task("validate", 0.2, action="validate_order"),
            {"id": "fetch", "type": "http_request", "depends_on": ["validate"],
             "config": {"url": hit + "/hit/{{ .run.id }}/fetch", "expect_status": 200,
                        "timeout_seconds": 10},
             "retry": {"max_attempts": 5, "initial_interval_seconds": 0.2}},
            {"id": "post", "type": "http_request", "depends_on": ["validate"],
             "config": {"url": hit + "/hit/{{ .run.id }}/post", "method": "POST",
                        "body": {"order": "{{ .run.order.id }}"}, "timeout_seconds": 10},
             "retry": {"max_attempts": 5, "initial_interval_seconds": 0.2}},
            {"id": "pause", "type": "delay", "depends_on": ["validate"],
             "config": {"seconds": 0.3}},
            {"id": "big", "type": "condition", "depends_on": ["validate"],
             "config": {"expression": ".run.order.amount > 50"}},
            {"id": "older", "type": "conditional", "depends_on": ["validate"],
             "config": {"condition": {"field": "amount", "operator": "gt", "value": 50}}},
            {"id": "ask", "type": "approval", "depends_on": ["fetch", "post", "pause"],
             "if": ".input.ask", "config": {"prompt": "ship order {{ .run.order.id }}?"}},
            {"id": "approved", "type": "condition", "depends_on": ["ask"], "if": "true",
             "config": {"expression":
                        ".steps.ask.status == \"skipped\" or .steps.ask.output.approved"}},
            {"id": "child", "type": "workflow", "depends_on": ["approved"], "if": approved,
             "config": {"workflow": "torture-child",
                        "input": {"amount": "{{ .run.order.amount }}"}}},
            {"id": "summary", "type": "transform", "depends_on": ["fetch", "big", "older"],
             "config": {"expression": "{amount: .run.order.amount, big: .steps.big.output,"
                        " older: .steps.older.output, fetched: .steps.fetch.output.status}"}},
            task("big_extra", 0.1, ["big"], **{"if": ".steps.big.output"}),
            task("charge", 0.2, ["approved", "child"], action="charge_payment",
                 **{"if": approved}),
            task("ship", 0.2, ["charge", "summary", "big_extra"], action="ship_order",
                 **{"if": approved}),
            {"id": "notify", "type": "log", "depends_on": ["ship"], "if": approved,
             "config": {"message": "order {{ .run.order.id }} shipped",
                        "action": "send_notification"}},
            {"id": "rejected", "type": "log", "depends_on": ["approved"],
             "if": approved + " | not",
             "config": {"message": "order {{ .run.order.id }} rejected", "level": "warning"}},
        ],
    }
    child = {
        "name": "torture-child",
        "description": "the child of torture-order",
        "input": {"amount": 0},
        "steps": [
            task("work", 0.15),
            {"id": "ping", "type": "http_request", "depends_on": ["work"],
             "config": {"url": hit + "/hit/{{ .run.id }}/ping", "method": "POST",
                        "body": {"amount": "{{ .input.amount }}"}, "timeout_seconds": 10},
             "retry": {"max_attempts": 5, "initial_interval_seconds": 0.2}},
            {"id": "nap", "type": "delay", "depends_on": ["work"], "config": {"seconds": 0.2}},
            {"id": "out", "type": "transform", "depends_on": ["ping", "nap"],
             "config": {"expression": "{child: .run.id, pinged: .steps.ping.output.status}"}},
        ],
    }
    fail = {
        "name": "torture-fail",
        "description": "a run meant to fail after its first action",
        "steps": [
            task("validate", 0.1, action="validate_order"),
            task("doomed", 0.1, ["validate"], retry={"max_attempts": 3,
                                                      "initial_interval_seconds": 0.2,
                                                      "backoff_coefficient": 1},
                 config={"duration_seconds": 0.1, "fail_probability": 1.0}),
            task("charge", 0.1, ["doomed"], action="charge_payment"),
        ],
    }
    return [child, order, fail]


# ---------------------------------------------------------------- the counting server

class Target(http.server.ThreadingHTTPServer):
    """The http_request steps' target: records every request's path and
    Idempotency-Key, answers 200 after a short pause (so that kills land
    while requests are in flight)."""
    daemon_threads = True

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = collections.defaultdict(list)   # path -> [key per request]
        super().__init__(("127.0.0.1", 0), TargetHandler)


    def handle_error(self, request, client_address):
        pass    # a client gone (a killed server): nothing to say


class TargetHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        key = self.headers.get("Idempotency-Key")
        with self.server.lock:
            self.server.keys[self.path].append(key)
            count = len(self.server.keys[self.path])
        # A pause of 0-200 ms, the same for the same path and count.
        h = hashlib.sha256(("%s#%d" % (self.path, count)).encode()).digest()
        time.sleep(h[0] / 255 * 0.2)
        body = json.dumps({"ok": True, "seen": count}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


# ---------------------------------------------------------------- the client

class Client(threading.Thread):
    """Starts runs (up to inflight at a time, total at most max_runs) and
    decides approvals, over HTTP, whatever the server's state: a request
    that fails is tried again, the same, later."""

    def __init__(self, base, rng, inflight):
        super().__init__(daemon=True)
        self.host, self.port = base
        self.rng = rng
        self.inflight = inflight
        self.stop = threading.Event()
        self.starting = True        # false: start no new run
        self.lock = threading.Lock()
        self.runs = {}              # run id -> dict(kind, key, order, wanted, status, decided)
        self.keys = {}              # key -> run id
        self.next_i = 0
        self.pending = None         # the run being started: dict(kind, key, order, ...)
        self.errors = []            # unexpected answers (not connection failures)
        self.decisions = 0
        self.failed_requests = 0

    def req(self, method, path, body=None):
        try:
            h = {"Content-Type": "application/json"} if body is not None else {}
            return su.http_request(self.host, self.port, method, path,
                                   json.dumps(body) if body is not None else None, h,
                                   timeout=10)
        except (OSError, http.client.HTTPException):
            self.failed_requests += 1
            return None

    def run(self):
        while not self.stop.is_set():
            busy = False
            try:
                busy |= self.start_one()
                busy |= self.poll()
            except Exception as e:  # reported, never silent
                self.errors.append("client: %r" % e)
            if not busy:
                time.sleep(0.05)

    def unfinished(self):
        with self.lock:
            return sum(1 for r in self.runs.values() if r["status"] not in su.FINISHED)

    def start_one(self):
        if self.pending is None:
            if not self.starting or self.unfinished() >= self.inflight:
                return False
            kind = self.rng.choices(KINDS, KIND_WEIGHTS)[0]
            amount = self.rng.choice([20, 80])
            self.pending = {"kind": kind, "key": "t-%d" % self.next_i, "order": None,
                            "amount": amount, "wanted": kind if kind in ("approve", "reject")
                            else None, "status": "pending", "decided": False}
            self.next_i += 1
        p = self.pending
        if p["order"] is None:
            r = self.req("POST", "/orders", {"amount": p["amount"]})
            if r is None:
                return False
            if r.status != 201:
                self.errors.append("POST /orders: %s %s" % (r.status, r.text[:200]))
                return False
            p["order"] = r.json()["id"]
        wf = "torture-fail" if p["kind"] == "fail" else "torture-order"
        body = {"order_id": p["order"], "idempotency_key": p["key"]}
        if wf == "torture-order":
            body["input"] = {"ask": p["wanted"] is not None, "amount": p["amount"]}
        r = self.req("POST", "/workflows/%s/runs" % wf, body)
        if r is None:
            return False
        if r.status not in (200, 202):
            self.errors.append("start %s: %s %s" % (p["key"], r.status, r.text[:200]))
            return False
        run_id = r.json()["id"]
        with self.lock:
            if p["key"] in self.keys and self.keys[p["key"]] != run_id:
                self.errors.append("key %s gave run %s, then %s"
                                   % (p["key"], self.keys[p["key"]], run_id))
            self.keys[p["key"]] = run_id
            self.runs[run_id] = p
        self.pending = None
        return True

    def poll(self):
        with self.lock:
            todo = [(i, r) for i, r in self.runs.items() if r["status"] not in su.FINISHED]
        for run_id, r in todo:
            g = self.req("GET", "/runs/%s" % run_id)
            if g is None:
                return False
            if g.status != 200:
                self.errors.append("GET /runs/%s: %s %s" % (run_id, g.status, g.text[:200]))
                continue
            run = g.json()
            r["status"] = run["status"]
            if r["wanted"] is None or r["decided"]:
                continue
            ask = next(s for s in run["steps"] if s["step_id"] == "ask")
            if ask["status"] == "completed":
                r["decided"] = True     # an earlier request landed
            elif ask["status"] == "waiting":
                verb = "approve" if r["wanted"] == "approve" else "reject"
                d = self.req("POST", "/runs/%s/steps/ask/%s" % (run_id, verb),
                             {"by": "torture", "comment": r["key"]})
                if d is None:
                    return False
                if d.status == 200:
                    r["decided"] = True
                    self.decisions += 1
                elif d.status != 409:   # 409: decided meanwhile; the next poll sees it
                    self.errors.append("%s %s: %s %s" % (verb, run_id, d.status, d.text[:200]))
        return False


# ---------------------------------------------------------------- the database

class Db:
    """Reads a SQLite file or a PostgreSQL database (psql) with the same SQL."""

    def __init__(self, db):
        self.db = db

    def rows(self, sql):
        if su.is_pg(self.db):
            import pg_server
            r = subprocess.run([os.path.join(pg_server.bindir(), "psql"), "-X", "-q", "-A",
                                "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", self.db,
                                "-c", sql], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise AssertionError("psql: %s" % r.stderr)
            return [line.split("\t") for line in r.stdout.splitlines() if line]
        con = sqlite3.connect(self.db, timeout=30)
        try:
            return [[("" if v is None else str(v)) for v in row] for row in con.execute(sql)]
        finally:
            con.close()


def history_digests(db, after_gid):
    """({run_id: (number of events, sha256 of their (seq, type, step))} of
    the runs with an event after global id after_gid, the last gid)."""
    out, cur, h, n = {}, None, None, 0
    last = db.rows("SELECT coalesce(max(gid), 0) FROM events")[0][0]
    for run_id, seq, typ, step in db.rows(
            "SELECT run_id, seq, type, coalesce(step_id, '') FROM events WHERE run_id IN"
            " (SELECT DISTINCT run_id FROM events WHERE gid > %d) ORDER BY run_id, seq"
            % after_gid):
        if run_id != cur:
            if cur is not None:
                out[cur] = (n, h.hexdigest())
            cur, h, n = run_id, hashlib.sha256(), 0
        h.update(("%s|%s|%s\n" % (seq, typ, step)).encode())
        n += 1
    if cur is not None:
        out[cur] = (n, h.hexdigest())
    return out, int(last)


class Snapshots:
    """The histories as each kill left them: a copy of the SQLite files (the
    state the restart finds), or PostgreSQL read directly. Only the runs
    with events since the previous kill are read again."""

    def __init__(self, srv, dest):
        self.srv, self.dest = srv, dest
        self.gid = 0
        self.seconds = 0.0
        self.taken = []     # [(label, {run_id: (n, digest)})]

    def take(self, label):
        t = time.monotonic()
        if su.is_pg(self.srv.db):
            digests, self.gid = history_digests(Db(self.srv.db), self.gid)
        else:
            digests, self.gid = copy_digests(self.srv.db, self.dest, self.gid)
        self.taken.append((label, digests))
        self.seconds += time.monotonic() - t


def copy_digests(db, dest, gid):
    if not os.path.exists(db):
        return {}, gid
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    copy = os.path.join(dest, "copy.db")
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(db + suffix):
            shutil.copyfile(db + suffix, copy + suffix)
    return history_digests(Db(copy), gid)


# ---------------------------------------------------------------- the checks

def check(db, client, target, snaps):
    """Returns (problems, figures)."""
    problems = collections.defaultdict(list)   # "lost" / "duplicated" / "other" -> [text]
    runs = {r[0]: {"status": r[1], "wf": r[2], "order": r[3], "key": r[4]}
            for r in db.rows("SELECT r.id, r.status, w.name, coalesce(r.order_id, ''),"
                             " coalesce(r.idempotency_key, '') FROM runs r"
                             " JOIN workflows w ON w.id = r.workflow_id")}
    events = collections.defaultdict(list)
    for run_id, seq, typ, step, data in db.rows(
            "SELECT run_id, seq, type, coalesce(step_id, ''), data FROM events"
            " ORDER BY run_id, seq"):
        events[run_id].append((int(seq), typ, step or None, json.loads(data)))
    steps = collections.defaultdict(dict)
    for run_id, sid, typ, st, out in db.rows("SELECT run_id, step_id, type, status,"
                                             " coalesce(output, '') FROM steps"):
        steps[run_id][sid] = (typ, st, json.loads(out) if out else None)
    orders = {o[0]: o[1] for o in db.rows("SELECT id, status FROM orders")}

    lost, dup, other = problems["lost"].append, problems["duplicated"].append, \
        problems["other"].append
    # Runs: acknowledged ones all there, one per key, none unfinished.
    by_key = collections.Counter(r["key"] for r in runs.values() if r["key"])
    for k, n in by_key.items():
        if n > 1:
            dup("%d runs with idempotency key %s" % (n, k))
    for run_id, r in runs.items():
        if r["status"] in UNFINISHED:
            other("run %s (%s) is still %s" % (run_id, r["wf"], r["status"]))
    for run_id, c in client.runs.items():
        if run_id not in runs:
            lost("run %s (key %s) was acknowledged but is not in the database"
                 % (run_id, c["key"]))
            continue
        want_status, want_order, _ = EXPECT[c["kind"]]
        if runs[run_id]["status"] != want_status:
            other("run %s (%s) is %s, not %s" % (run_id, c["kind"], runs[run_id]["status"],
                                                 want_status))
        if orders.get(c["order"]) != want_order:
            other("order %s of run %s (%s) is %s, not %s" % (
                c["order"], run_id, c["kind"], orders.get(c["order"]), want_order))
    # Histories.
    n_steps = 0
    for run_id, evs in events.items():
        seqs = [e[0] for e in evs]
        if seqs != list(range(1, len(evs) + 1)):
            (dup if len(set(seqs)) < len(seqs) else lost)(
                "run %s: seq not 1..n: %s" % (run_id, seqs))
        if evs[0][1] != "run_created":
            lost("run %s: the first event is %s" % (run_id, evs[0][1]))
        if runs.get(run_id, {}).get("status") in su.FINISHED and \
                evs[-1][1] != "run_" + runs[run_id]["status"]:
            other("run %s is %s but its last event is %s" % (run_id, runs[run_id]["status"],
                                                              evs[-1][1]))
        done = {}
        for seq, typ, step, _ in evs:
            if typ == "step_completed":
                if step in done:
                    dup("run %s: step %s completed twice (seq %d, %d)"
                        % (run_id, step, done[step], seq))
                done[step] = seq
            elif typ == "step_started" and step in done:
                dup("run %s: step %s started (seq %d) after it completed (seq %d)"
                    % (run_id, step, seq, done[step]))
        n_steps += len(done)
        for sid, (typ, st, _) in steps[run_id].items():
            if st == "completed" and sid not in done:
                lost("run %s: step %s completed without its step_completed" % (run_id, sid))
    for label, snap in snaps:
        for run_id, (n, digest) in snap.items():
            evs = events.get(run_id, [])
            h = hashlib.sha256()
            for seq, typ, step, _ in evs[:n]:
                h.update(("%s|%s|%s\n" % (seq, typ, step or "")).encode())
            if len(evs) < n or h.hexdigest() != digest:
                lost("run %s: its %d events at %s are not the start of its final history"
                     % (run_id, n, label))
    # Actions: per order, across every run on it.
    applied = collections.defaultdict(collections.Counter)
    for run_id, evs in events.items():
        for _, typ, _, data in evs:
            if typ == "action_applied":
                applied[runs[run_id]["order"]][data.get("action")] += 1
    for run_id, c in client.runs.items():
        want = EXPECT[c["kind"]][2]
        got = applied.get(c["order"], collections.Counter())
        for a, n in got.items():
            if n > 1:
                dup("order %s: %s applied %d times" % (c["order"], a, n))
            elif a not in want:
                other("order %s (%s): %s applied" % (c["order"], c["kind"], a))
        for a in want:
            if got[a] == 0:
                lost("order %s (%s): %s never applied" % (c["order"], c["kind"], a))
    # Idempotency keys seen by the target.
    with target.lock:
        seen = {p: list(k) for p, k in target.keys.items()}
    n_requests = sum(len(k) for k in seen.values())
    for path, keys in seen.items():
        parts = path.split("/")     # "", "hit", run, step
        want = "%s/%s" % (parts[2], parts[3]) if len(parts) == 4 else None
        if set(keys) != {want}:
            dup("%s: Idempotency-Key %s, want only %s" % (path, sorted(set(map(str, keys))),
                                                           want))
    for run_id, r in runs.items():
        for sid in HTTP_STEPS.get(r["wf"], []):
            st = steps[run_id].get(sid, (None, None, None))[1]
            path = "/hit/%s/%s" % (run_id, sid)
            if st == "completed" and path not in seen:
                lost("run %s: http_request %s completed, its target saw nothing"
                     % (run_id, sid))
            if st == "skipped" and path in seen:
                other("run %s: http_request %s skipped, its target saw %d requests"
                      % (run_id, sid, len(seen[path])))
    # Children: one per parent step attempt, keyed RUN/STEP#ATTEMPT (the
    # step has one attempt).
    children = collections.Counter(r["key"].split("#")[0] for r in runs.values()
                                   if r["wf"] == "torture-child")
    for k in (r["key"] for r in runs.values() if r["wf"] == "torture-child"):
        if not k.endswith("/child#1"):
            other("a child run keyed %s, not RUN/child#1" % k)
    for run_id, r in runs.items():
        if r["wf"] != "torture-order":
            continue
        st = steps[run_id].get("child", (None, None, None))[1]
        n = children.get("%s/child" % run_id, 0)
        if st == "completed" and n != 1:
            (dup if n > 1 else lost)("run %s: %d child runs" % (run_id, n))
        if st == "skipped" and n:
            other("run %s: child step skipped but %d child runs" % (run_id, n))
    # Approvals.
    for run_id, c in client.runs.items():
        if c["wanted"] is None or run_id not in steps:
            continue
        _, st, out = steps[run_id].get("ask", (None, None, None))
        if st != "completed" or not out or out.get("approved") != (c["wanted"] == "approve"):
            other("run %s: approval %s with %s, the client chose %s"
                  % (run_id, st, json.dumps(out), c["wanted"]))
    figures = {"runs": len(runs), "runs_started": len(client.runs),
               "child_runs": sum(children.values()), "steps": n_steps,
               "events": sum(len(e) for e in events.values()), "http_requests": n_requests,
               "orders": len(orders)}
    return problems, figures


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--durable", required=True)
    ap.add_argument("--seed", type=int, default=0, help="0: a random one (printed)")
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--inflight", type=int, default=24,
                    help="runs kept unfinished at a time (default 24)")
    ap.add_argument("--failpoint-share", type=float, default=0.25,
                    help="share of starts with a failpoint armed (default 0.25)")
    ap.add_argument("--min-delay", type=float, default=None,
                    help="seconds added to every timed kill's delay (default 0; with --pg 1:"
                    " a node claims its runs after /health answers, about a second later on"
                    " a loaded machine, and kills sooner would make no progress)")
    ap.add_argument("--pg", action="store_true",
                    help="the (fresh) database of DURABLE_TEST_PG (run under tests/pg_server.py)")
    ap.add_argument("--keep", help="keep the database and logs in this directory")
    args = ap.parse_args()
    if args.min_delay is None:
        args.min_delay = 1.0 if args.pg else 0.0
    su.DURABLE = os.path.abspath(args.durable)
    su.ARGS = argparse.Namespace(pg=args.pg)
    seed = args.seed or random.SystemRandom().randrange(1, 2 ** 31)
    log("torture: seed %d, %d kills (rerun with --seed %d)" % (seed, args.kills, seed))
    rng = random.Random(seed)

    tmp = args.keep or tempfile.mkdtemp(prefix="durable-torture-")
    os.makedirs(tmp, exist_ok=True)
    target = Target()
    threading.Thread(target=target.serve_forever, daemon=True).start()
    hit = "http://127.0.0.1:%d" % target.server_address[1]
    port = free_port()
    # On PostgreSQL the server keeps its node name across restarts, so that
    # it takes its runs back at once rather than after its lease.
    srv = su.Server(tmp, listen="127.0.0.1:%d" % port, name="torture",
                    args=["--node", "torture"] if args.pg else ())
    atexit.register(srv.kill)   # interrupted: leave no server behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not su.is_pg(srv.db) and os.path.exists(srv.db):
        sys.exit("torture: %s exists; give --keep an empty directory" % srv.db)
    t0 = time.monotonic()
    srv.start()
    for wf in workflows(hit):
        r = srv.post("/workflows", wf)
        if r.status not in (200, 201):
            sys.exit("torture: registering %s: %s" % (wf["name"], r))
    client = Client((srv.host, port), random.Random(rng.random()), args.inflight)
    client.start()

    kills = collections.Counter()
    armed = collections.Counter()
    snaps = Snapshots(srv, os.path.join(tmp, "snap"))
    problems = []
    last_report = time.monotonic()
    start_seconds = 0.0
    n = 0
    while n < args.kills:
        r = rng.random()
        delay = args.min_delay + (rng.uniform(0.02, 0.6) if r < 0.6 else
                                  rng.uniform(0.6, 2.0) if r < 0.9 else rng.uniform(2.0, 4.0))
        fp = None
        if rng.random() < args.failpoint_share:
            name = rng.choice(FAILPOINTS)
            # The writer commits many times a second; recovery reaches its
            # failpoints once per unfinished run.
            fp = "%s:%d" % (name, rng.randint(1, 60 if name.startswith("writer") else 20))
        if n > 0:
            if fp:
                armed[fp.split(":")[0]] += 1
            srv.env = {"DURABLE_FAILPOINT": fp} if fp else None
            t = time.monotonic()
            try:
                srv.start()
                start_seconds += time.monotonic() - t
            except su.ServerError as e:
                rc = srv.kill()
                if rc != -9 or not fp:
                    problems.append("start %d failed (exit %s): %s" % (srv.starts, rc, e))
                    break
                kills["failpoint " + fp.split(":")[0]] += 1   # during start-up
                n += 1
                snaps.take("kill %d" % n)
                continue
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and srv.proc.poll() is None:
            time.sleep(0.01)
        died = srv.proc.poll() is not None
        rc = srv.kill()
        if rc != -9:
            problems.append("kill %d: the server exited with %s by itself%s"
                            % (n + 1, rc, srv.describe()))
            break
        kills[("failpoint " + fp.split(":")[0]) if died and fp else "timed"] += 1
        n += 1
        snaps.take("kill %d" % n)
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            log("  %d kills, %d runs started, %d unfinished, %.0fs" % (
                n, len(client.runs), client.unfinished(), time.monotonic() - t0))

    # The end: no more kills nor new runs; every run finishes.
    srv.env = None
    client.starting = False
    if not problems:
        srv.start()
        deadline = time.monotonic() + 300
        while (client.unfinished() or client.pending) and time.monotonic() < deadline:
            time.sleep(0.2)
        if client.unfinished():
            problems.append("%d runs unfinished 300 s after the last kill"
                            % client.unfinished())
    client.stop.set()
    client.join(30)
    rc = srv.stop()
    if rc != 0 and not problems:
        problems.append("SIGTERM at the end: exit %s%s" % (rc, srv.describe()))
    problems += client.errors
    elapsed = time.monotonic() - t0

    db = Db(srv.db)
    found, figures = check(db, client, target, snaps.taken)
    integrity = "n/a (PostgreSQL)"
    if not su.is_pg(srv.db):
        integrity = ",".join(r[0] for r in db.rows("PRAGMA integrity_check"))
        if integrity != "ok":
            problems.append("PRAGMA integrity_check: %s" % integrity)
    n_lost, n_dup = len(found["lost"]), len(found["duplicated"])
    for k in ("lost", "duplicated", "other"):
        problems += ["%s: %s" % (k, p) for p in found[k]]

    print("torture: %s, seed %d" % ("PostgreSQL" if su.is_pg(srv.db) else "SQLite", seed))
    print("  kills       %d (%s)" % (sum(kills.values()), ", ".join(
        "%s %d" % kv for kv in sorted(kills.items()))))
    print("  armed       %s" % ", ".join("%s %d" % kv for kv in sorted(armed.items())))
    print("  runs        %d (%d started by the client, %d children)"
          % (figures["runs"], figures["runs_started"], figures["child_runs"]))
    print("  client      %d approvals decided, %d requests failed (server down) and retried"
          % (client.decisions, client.failed_requests))
    print("  steps       %d completed, %d events, %d http requests to the target"
          % (figures["steps"], figures["events"], figures["http_requests"]))
    print("  lost        %d" % n_lost)
    print("  duplicated  %d" % n_dup)
    print("  integrity   %s" % integrity)
    print("  elapsed     %.0f s (restarts until /health answered %.0f s, snapshots %.0f s)"
          % (elapsed, start_seconds, snaps.seconds))
    print("  reproduce   torture.py --seed %d --kills %d%s" % (seed, args.kills,
                                                                " --pg" if args.pg else ""))
    if problems:
        print("FAILED: %d problems" % len(problems))
        for p in problems[:40]:
            print("  - " + p)
        if not args.keep:
            print("  (the database is kept in %s)" % tmp)
        sys.exit(1)
    print("ok")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
