#!/usr/bin/env python3
"""Soak: `durable serve` under a steady mixed load for a long time, its
memory and file descriptors sampled all along (issue 15 item 5,
docs/RELIABILITY.md section 5).

One server on a temporary database (a file, or with --pg a database of its
own on the PostgreSQL server DURABLE_TEST_PG names, tests/pg_server.py) gets,
for --duration, at about --rate run starts a second and at most --inflight
unfinished runs of the soak's own workflows:
  order  soak-order on a new demo order: an action, a task failing 30% of its
         attempts and retried, a delay, an approval (when input.ask) that the
         soak approves, rejects or cancels the run at, a child run
         (soak-child: task, delay, transform), the other order actions;
  fail   soak-fail: a task failing 70% of its two attempts, so that most runs
         fail; the soak retries a failed run up to 3 times (POST .../retry);
  long   soak-long: a 15 s delay then a task; half of them are cancelled
         while they run (POST .../cancel);
plus list and read requests (runs, one run, its events and logs, workflows,
orders, metrics, health, the UI) and --sse clients that follow
/events/stream or one run's /runs/{id}/stream for a few seconds, go away and
come back with Last-Event-ID (each checks that ids only grow: nothing is
replayed twice; a run stream's seqs are 1, 2, ... with no gap).

Every --sample seconds (default 5) the soak reads /proc/PID/status (VmRSS,
RssAnon, Threads) and counts /proc/PID/fd; every --print seconds (default
60) it prints one line: elapsed, RSS, RssAnon, fds, threads, runs started /
completed / failed / cancelled / unfinished, requests, 5xx, database size
(with its -wal).

At the end no new run starts, the soak waits for every run it started to
finish (approvals still decided), checks that no run of the database is
pending, running or waiting, stops the server with SIGTERM (exit status 0:
a clean stop, and under ASan no LeakSanitizer report) and gives the
verdict. Flat: over the samples of the second quarter (after warm-up) and
of the last quarter of the load,
  RSS     max(last quarter) <= max(second quarter) * 1.10 + 8 MiB
  RssAnon the same
  fds     max(last quarter) <= max(second quarter) + 16
(the slack absorbs allocator caching, SQLite's page cache filling and the
connections open at the moment of a sample; a leak of a few hundred bytes
per request, or one fd per run or per SSE client, exceeds it within an
hour). Exit status 1 when not flat, when the server died or did not stop
cleanly, when a run is stuck, on any HTTP 5xx, on a request that failed to
connect, or on a broken SSE resume.

Usage: soak.py --durable PATH [--duration 1h|10m|90s|SECONDS] [--pg]
               [--rate N] [--inflight N] [--sse N] [--seed S] [--keep DIR]
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e", "server"))
import server_util as su  # noqa: E402

UNFINISHED = ("pending", "running", "waiting")
RSS_FACTOR, RSS_SLACK_KIB, FD_SLACK = 1.10, 8 * 1024, 16


def log(msg):
    print(msg, flush=True)


def parse_duration(text):
    """'1h', '10m', '90s', '1h30m' or plain seconds -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise argparse.ArgumentTypeError(
            "duration %r: write it as 1h, 10m, 90s, 1h30m or a number of seconds" % text)
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


# ---------------------------------------------------------------- workflows

def task(sid, seconds, deps=(), config=None, **kw):
    c = {"duration_seconds": seconds}
    c.update(config or {})
    step = {"id": sid, "type": "task", "depends_on": list(deps), "config": c}
    step.update(kw)
    return step


FAST_RETRY = {"initial_interval_seconds": 0.05, "backoff_coefficient": 1}

WORKFLOWS = [
    {"name": "soak-child", "description": "the child of soak-order",
     "input": {"amount": 0},
     "steps": [
         task("work", 0.05),
         {"id": "nap", "type": "delay", "depends_on": ["work"], "config": {"seconds": 0.2}},
         {"id": "out", "type": "transform", "depends_on": ["nap"],
          "config": {"expression": "{child: .run.id, amount: .input.amount}"}},
     ]},
    {"name": "soak-order", "description": "actions, a flaky step, an approval, a child",
     "input": {"ask": False},
     "steps": [
         task("validate", 0.05, config={"action": "validate_order"}),
         task("flaky", 0.05, ["validate"], config={"fail_probability": 0.3},
              retry=dict(FAST_RETRY, max_attempts=20)),
         {"id": "pause", "type": "delay", "depends_on": ["validate"],
          "config": {"seconds": 0.3}},
         {"id": "ask", "type": "approval", "depends_on": ["flaky", "pause"],
          "if": ".input.ask", "config": {"prompt": "ship order {{ .run.order.id }}?"}},
         {"id": "approved", "type": "condition", "depends_on": ["ask"], "if": "true",
          "config": {"expression":
                     ".steps.ask.status == \"skipped\" or .steps.ask.output.approved"}},
         {"id": "child", "type": "workflow", "depends_on": ["approved"],
          "if": ".steps.approved.output",
          "config": {"workflow": "soak-child", "input": {"amount": "{{ .run.order.amount }}"}}},
         task("charge", 0.05, ["child"], config={"action": "charge_payment"},
              **{"if": ".steps.approved.output"}),
         task("ship", 0.05, ["charge"], config={"action": "ship_order"},
              **{"if": ".steps.approved.output"}),
         {"id": "notify", "type": "log", "depends_on": ["ship"], "if": ".steps.approved.output",
          "config": {"message": "order {{ .run.order.id }} shipped",
                     "action": "send_notification"}},
         {"id": "rejected", "type": "log", "depends_on": ["approved"],
          "if": ".steps.approved.output | not",
          "config": {"message": "order {{ .run.order.id }} rejected", "level": "warning"}},
     ]},
    {"name": "soak-fail", "description": "fails most of the time; the soak retries it",
     "steps": [
         task("first", 0.05),
         task("doomed", 0.05, ["first"], config={"fail_probability": 0.7},
              retry=dict(FAST_RETRY, max_attempts=2)),
         task("after", 0.05, ["doomed"]),
     ]},
    {"name": "soak-long", "description": "a long delay, cancelled half of the time",
     "steps": [
         {"id": "wait", "type": "delay", "config": {"seconds": 15}},
         task("after", 0.05, ["wait"]),
     ]},
]
KINDS = ["order", "fail", "long"]
KIND_WEIGHTS = [6, 3, 1]


# ---------------------------------------------------------------- the load

class Soak:
    def __init__(self, srv, args, rng):
        self.srv = srv
        self.args = args
        self.rng = rng
        self.lock = threading.Lock()
        self.stop = threading.Event()     # everything stops
        self.starting = True              # false: no new run
        self.runs = {}                    # id -> dict(kind, status, plan, retries, ...)
        self.errors = []
        self.requests = 0
        self.status_counts = {}
        self.c = dict(approved=0, rejected=0, cancelled_asks=0, cancels=0, retries=0,
                      sse_sessions=0, sse_events=0, sse_resumes=0, reads=0)

    # -- HTTP --

    def req(self, method, path, body=None, ok=(200,), what=None):
        """One request; None after a connection failure (an error). Any 5xx
        or a status outside ok is recorded as an error."""
        try:
            r = self.srv.request(method, path, json_body=body, timeout=60 * su.slow_factor())
        except (OSError, http.client.HTTPException) as e:
            self.error("%s %s: %r" % (method, path, e))
            return None
        with self.lock:
            self.requests += 1
            self.status_counts[r.status] = self.status_counts.get(r.status, 0) + 1
        if r.status not in ok:
            self.error("%s %s -> %d %s" % (method, path, r.status, r.text[:300]))
            return None
        return r

    def error(self, msg):
        with self.lock:
            if len(self.errors) < 200:
                self.errors.append("%.0fs %s" % (time.monotonic() - self.t0, msg))

    def count(self, k, n=1):
        with self.lock:
            self.c[k] += n

    # -- starting runs --

    def unfinished(self):
        with self.lock:
            return sum(1 for r in self.runs.values() if r["status"] in UNFINISHED)

    def start_one(self):
        kind = self.rng.choices(KINDS, KIND_WEIGHTS)[0]
        run = {"kind": kind, "status": "pending", "retries": 0, "plan": None}
        if kind == "order":
            o = self.req("POST", "/orders", {"amount": self.rng.choice([10, 60, 250])}, (201,))
            if o is None:
                return
            ask = self.rng.random() < 0.7
            # approve 70%, reject 15%, cancel the run at its approval 15%
            run["plan"] = (self.rng.choices(["approve", "reject", "cancel"], [70, 15, 15])[0]
                           if ask else None)
            body = {"order_id": o.json()["id"], "input": {"ask": ask}}
        elif kind == "long":
            run["plan"] = "cancel" if self.rng.random() < 0.5 else None
            run["cancel_after"] = time.monotonic() + self.rng.uniform(0.5, 10)
            body = {}
        else:
            body = {}
        r = self.req("POST", "/workflows/soak-%s/runs" % kind, body, (202,))
        if r is None:
            return
        with self.lock:
            self.runs[r.json()["id"]] = run

    def starter(self):
        interval = 1.0 / self.args.rate
        nxt = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < nxt:
                time.sleep(min(0.05, nxt - now))
                continue
            nxt = max(nxt + interval, now - 1.0)
            if not self.starting or self.unfinished() >= self.args.inflight:
                continue
            try:
                self.start_one()
            except Exception as e:  # reported, never silent
                self.error("starter: %r" % e)

    # -- following runs: approvals, cancellations, retries --

    def follow(self, rid, run):
        r = self.req("GET", "/runs/%s" % rid)
        if r is None:
            return
        doc = r.json()
        status = doc["status"]
        steps = {s["step_id"]: s for s in doc["steps"]}
        if status == "failed" and run["kind"] == "fail" and run["retries"] < 3:
            run["retries"] += 1
            if self.req("POST", "/runs/%s/retry" % rid, None, (202,)) is not None:
                self.count("retries")
                status = "running"
        elif status in UNFINISHED and run["kind"] == "order" and run["plan"] and \
                steps.get("ask", {}).get("status") == "waiting":
            plan, run["plan"] = run["plan"], None
            if plan == "cancel":
                if self.req("POST", "/runs/%s/cancel" % rid, None, (200,)) is not None:
                    self.count("cancelled_asks")
            else:
                verb = "approve" if plan == "approve" else "reject"
                if self.req("POST", "/runs/%s/steps/ask/%s" % (rid, verb),
                            {"by": "soak", "comment": "soak %s" % verb}, (200,)) is not None:
                    self.count("approved" if plan == "approve" else "rejected")
        elif status in UNFINISHED and run["kind"] == "long" and run["plan"] == "cancel" and \
                time.monotonic() >= run["cancel_after"]:
            run["plan"] = None
            # 409: it finished meanwhile (a race the API allows)
            if self.req("POST", "/runs/%s/cancel" % rid, None, (200, 409)) is not None:
                self.count("cancels")
        with self.lock:
            run["status"] = status

    def follower(self):
        while not self.stop.is_set():
            with self.lock:
                todo = [(k, v) for k, v in self.runs.items()
                        if v["status"] in UNFINISHED or
                        (v["status"] == "failed" and v["kind"] == "fail" and v["retries"] < 3)]
            for rid, run in todo:
                if self.stop.is_set():
                    return
                try:
                    self.follow(rid, run)
                except Exception as e:
                    self.error("follower %s: %r" % (rid, e))
            time.sleep(0.3)

    # -- list and read requests --

    def reader(self):
        paths = ["/runs?limit=50", "/runs?status=failed&limit=20", "/runs?status=running",
                 "/workflows", "/orders?limit=20", "/metrics", "/health", "/",
                 "/workflows/soak-order", "/db/snapshot?limit=5"]
        while not self.stop.is_set():
            with self.lock:
                ids = list(self.runs)[-50:]
            if ids and self.rng.random() < 0.5:
                rid = self.rng.choice(ids)
                path = self.rng.choice(["/runs/%s", "/runs/%s/events", "/runs/%s/logs"]) % rid
            else:
                path = self.rng.choice(paths)
            self.req("GET", path)
            self.count("reads")
            time.sleep(self.rng.uniform(0.05, 0.3))

    # -- SSE clients --

    def sse_client(self, n):
        rng = random.Random(self.args.seed * 1000 + n)
        last_global = None
        while not self.stop.is_set():
            try:
                if rng.random() < 0.6:
                    last_global = self.sse_global(rng, last_global)
                else:
                    self.sse_run(rng)
            except (OSError, http.client.HTTPException) as e:
                if not self.stop.is_set():
                    self.error("sse client %d: %r" % (n, e))
            self.stop.wait(rng.uniform(0.2, 2))

    def sse_global(self, rng, last):
        s = su.SSE(self.srv, "/events/stream", last_event_id=last)
        self.count("sse_sessions")
        if last is not None:
            self.count("sse_resumes")
        try:
            if s.status != 200:
                self.error("GET /events/stream -> %d" % s.status)
                return last
            until = time.monotonic() + rng.uniform(1, 8)
            while time.monotonic() < until and not self.stop.is_set():
                try:
                    ev = s.next(max(0.1, until - time.monotonic()))
                except socket.timeout:
                    break
                if ev is None:
                    break
                eid = int(ev["id"])
                if last is not None and eid <= last:
                    self.error("/events/stream: id %d after %d (Last-Event-ID resume)"
                               % (eid, last))
                last = eid
                self.count("sse_events")
        finally:
            s.close()
        return last

    def sse_run(self, rng):
        with self.lock:
            live = [k for k, v in self.runs.items() if v["status"] in UNFINISHED]
        if not live:
            return
        rid = rng.choice(live)
        last = 0
        for _ in range(20):             # follow it to its end, reconnecting
            s = su.SSE(self.srv, "/runs/%s/stream" % rid, last_event_id=last or None)
            self.count("sse_sessions")
            if last:
                self.count("sse_resumes")
            try:
                if s.status == 204:
                    return
                if s.status != 200:
                    self.error("GET /runs/%s/stream -> %d" % (rid, s.status))
                    return
                until = time.monotonic() + rng.uniform(0.5, 4)
                while time.monotonic() < until and not self.stop.is_set():
                    try:
                        ev = s.next(max(0.1, until - time.monotonic()))
                    except socket.timeout:
                        break
                    if ev is None:
                        return          # the run's final event came
                    seq = int(ev["id"])
                    if seq != last + 1:
                        self.error("/runs/%s/stream: seq %d after %d" % (rid, seq, last))
                    last = seq
                    self.count("sse_events")
            finally:
                s.close()
            if self.stop.is_set():
                return

    # -- sampling --

    def sample(self):
        pid = self.srv.pid
        st = self.srv.status_file()
        fds = len(os.listdir("/proc/%d/fd" % pid))
        size = 0
        if not su.is_pg(self.srv.db):
            for suffix in ("", "-wal", "-shm"):
                try:
                    size += os.path.getsize(self.srv.db + suffix)
                except OSError:
                    pass
        kib = lambda k: int(st[k].split()[0])  # noqa: E731
        with self.lock:
            by = {}
            for r in self.runs.values():
                s = "unfinished" if r["status"] in UNFINISHED else r["status"]
                by[s] = by.get(s, 0) + 1
            fives = sum(n for code, n in self.status_counts.items() if code >= 500)
            return {"t": time.monotonic() - self.t0, "rss": kib("VmRSS"),
                    "anon": kib("RssAnon"), "fds": fds, "threads": int(st["Threads"]),
                    "started": len(self.runs), "completed": by.get("completed", 0),
                    "failed": by.get("failed", 0), "cancelled": by.get("cancelled", 0),
                    "unfinished": by.get("unfinished", 0), "requests": self.requests,
                    "5xx": fives, "db": size}


HEADER = ("%8s %9s %9s %5s %7s %8s %9s %7s %9s %6s %8s %4s %9s"
          % ("elapsed", "rss_kib", "anon_kib", "fds", "threads", "started", "completed",
             "failed", "cancelled", "unfin", "requests", "5xx", "db_mib"))


def line(s):
    m, sec = divmod(int(s["t"]), 60)
    return ("%5d:%02d %9d %9d %5d %7d %8d %9d %7d %9d %6d %8d %4d %9.1f"
            % (m, sec, s["rss"], s["anon"], s["fds"], s["threads"], s["started"],
               s["completed"], s["failed"], s["cancelled"], s["unfinished"], s["requests"],
               s["5xx"], s["db"] / 1048576.0))


def verdict(samples, duration, rss_counts=True):
    """(flat, text): the last quarter's maxima against the second's. RSS
    is left out of flat (reported only) when not rss_counts: under ASan it
    measures the sanitizer's quarantine and shadow memory as much as the
    program's heap, and LeakSanitizer is the leak check there."""
    q2 = [s for s in samples if duration * 0.25 <= s["t"] < duration * 0.5]
    q4 = [s for s in samples if duration * 0.75 <= s["t"] <= duration]
    if not q2 or not q4:
        return False, "too few samples for a verdict (%d, %d)" % (len(q2), len(q4))
    out, flat = [], True
    for key, name in (("rss", "RSS"), ("anon", "RssAnon")):
        a, b = max(s[key] for s in q2), max(s[key] for s in q4)
        limit = a * RSS_FACTOR + RSS_SLACK_KIB
        ok = b <= limit
        flat &= ok or not rss_counts
        out.append("%s max %d KiB in Q2, %d KiB in Q4 (limit %d): %s"
                   % (name, a, b, limit, "ok" if ok else
                      "GROWS" if rss_counts else "grows (reported only)"))
    a, b = max(s["fds"] for s in q2), max(s["fds"] for s in q4)
    ok = b <= a + FD_SLACK
    flat &= ok
    out.append("fds max %d in Q2, %d in Q4 (limit %d): %s"
               % (a, b, a + FD_SLACK, "ok" if ok else "GROWS"))
    return flat, "; ".join(out)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--durable", required=True)
    ap.add_argument("--duration", type=parse_duration, default=3600.0)
    ap.add_argument("--pg", action="store_true",
                    help="a database on the PostgreSQL server of DURABLE_TEST_PG")
    ap.add_argument("--rate", type=float, default=2.0, help="run starts per second")
    ap.add_argument("--inflight", type=int, default=24, help="unfinished runs at most")
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--sse", type=int, default=3, help="SSE clients")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--print", dest="print_every", type=float, default=60.0,
                    help="seconds between printed lines")
    ap.add_argument("--seed", type=int, default=0, help="0: a random one (printed)")
    ap.add_argument("--keep", help="keep the database and logs in this directory")
    ap.add_argument("--rss-report-only", action="store_true",
                    help="report RSS growth without failing on it (the ASan build)")
    args = ap.parse_args()
    if args.rate <= 0 or args.inflight < 1 or args.sample <= 0 or args.duration <= 0:
        ap.error("--rate, --inflight, --sample and --duration must be positive")
    if not os.access(args.durable, os.X_OK):
        ap.error("--durable %s: not an executable" % args.durable)
    su.DURABLE = os.path.abspath(args.durable)
    su.ARGS = args
    seed = args.seed or random.SystemRandom().randrange(1, 2**31)
    args.seed = seed
    rng = random.Random(seed)

    tmp = tempfile.mkdtemp(prefix="durable-soak-")
    env = {}
    if su.sanitizer() == "asan":
        env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "detect_leaks=1") +
                               ":quarantine_size_mb=32").lstrip(":")
    srv = su.Server(tmp, env=env)
    problems = []
    samples = []
    try:
        srv.start()
        log("soak: %s (sanitizer: %s), %s, duration %ds, seed %d, pid %d"
            % (su.DURABLE, su.sanitizer() or "none", "PostgreSQL" if args.pg else "SQLite",
               args.duration, seed, srv.pid))
        for wf in WORKFLOWS:
            r = srv.post("/workflows", wf)
            if r.status not in (200, 201):
                raise su.ServerError("registering %s: %s" % (wf["name"], r))
        soak = Soak(srv, args, rng)
        soak.t0 = time.monotonic()
        threads = [threading.Thread(target=soak.starter, daemon=True),
                   threading.Thread(target=soak.follower, daemon=True)]
        threads += [threading.Thread(target=soak.reader, daemon=True)
                    for _ in range(args.readers)]
        threads += [threading.Thread(target=soak.sse_client, args=(i,), daemon=True)
                    for i in range(args.sse)]
        for t in threads:
            t.start()
        log(HEADER)
        next_print = 0.0
        died = False
        while True:
            now = time.monotonic() - soak.t0
            if not srv.running():
                died = True
                problems.append("the server died (exit status %s) at %.0fs"
                                % (srv.proc.returncode if srv.proc else "?", now))
                break
            s = soak.sample()
            samples.append(s)
            if s["t"] >= next_print or s["t"] >= args.duration:
                log(line(s))
                next_print += args.print_every
            if now >= args.duration:
                break
            time.sleep(min(args.sample, max(0.05, args.duration - now)))

        if not died:
            # The tail: no new run; every run the soak started finishes.
            soak.starting = False
            tail_limit = 180 * su.slow_factor()
            deadline = time.monotonic() + tail_limit
            while soak.unfinished() and time.monotonic() < deadline and srv.running():
                time.sleep(0.5)
            soak.stop.set()
            for t in threads:
                t.join(timeout=90 * su.slow_factor())
            if not srv.running():
                problems.append("the server died during the tail")
            else:
                s = soak.sample()
                log(line(s) + "   (tail done)")
                with soak.lock:
                    stuck = [(k, v["kind"], v["status"]) for k, v in soak.runs.items()
                             if v["status"] in UNFINISHED]
                if stuck:
                    problems.append("%d runs unfinished %ds after the load: %s"
                                    % (len(stuck), tail_limit, stuck[:10]))
                for st in UNFINISHED:
                    r = srv.get("/runs?status=%s&limit=1" % st)
                    if r.status != 200:
                        problems.append("GET /runs?status=%s -> %d" % (st, r.status))
                    elif r.total():
                        problems.append("%d runs of the database are %s after the tail"
                                        % (r.total(), st))
        c = soak.c
        log("soak: %d runs started (%s), %d requests (%s), %d retries, %d approved, "
            "%d rejected, %d cancelled at an approval, %d long runs cancelled, "
            "%d SSE sessions (%d resumed), %d SSE events"
            % (len(soak.runs),
               ", ".join("%s %d" % (k, sum(1 for r in soak.runs.values() if r["kind"] == k))
                         for k in KINDS),
               soak.requests,
               ", ".join("%d: %d" % kv for kv in sorted(soak.status_counts.items())),
               c["retries"], c["approved"], c["rejected"], c["cancelled_asks"], c["cancels"],
               c["sse_sessions"], c["sse_resumes"], c["sse_events"]))
        fives = sum(n for code, n in soak.status_counts.items() if code >= 500)
        if fives:
            problems.append("%d HTTP 5xx answers" % fives)
        if soak.errors:
            problems.append("%d request errors, first: %s"
                            % (len(soak.errors), "\n  ".join(soak.errors[:20])))
        if not died:
            flat, text = verdict(samples, args.duration, not args.rss_report_only)
            log("soak: %s — %s" % ("flat" if flat else "NOT FLAT", text))
            if not flat:
                problems.append("RSS or fds not flat: " + text)
            rc = srv.stop(timeout=120 * su.slow_factor())
            log("soak: SIGTERM, exit status %s" % rc)
            if rc != 0:
                problems.append("the server's exit status after SIGTERM is %s, not 0%s"
                                % (rc, " (LeakSanitizer report below?)"
                                   if su.sanitizer() == "asan" else ""))
    except su.ServerError as e:
        problems.append(str(e))
    finally:
        if srv.running():
            srv.kill()
        if problems:
            print(srv.log_text(), file=sys.stderr)
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
        if args.pg:
            su.pg_drop_test_db(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    for p in problems:
        log("soak: FAIL: " + p)
    log("soak: %s (seed %d)" % ("FAIL" if problems else "PASS", seed))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
