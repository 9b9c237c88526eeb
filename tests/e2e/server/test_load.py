#!/usr/bin/env python3
"""A bounded load test of `durable serve` (issue 3): loopback only, stops by
itself.

--clients threads (100) hammer one server for --warmup (5) + --duration (20)
seconds, each on its own keep-alive connection, mixing run starts of a
workflow whose steps take no time (POST /workflows/load/runs, each with a
fresh idempotency key, so that a request resent after the server closed an
idle keep-alive connection cannot start a second run), GET /runs/{id} of the
runs it started and GET /runs?limit=10.

Asserted: zero errors (every answer 2xx with a valid JSON body of the
expected shape), every started run completes, and no memory growth: the
server's RSS (VmRSS and RssAnon of /proc/PID/status), sampled under load at
the end of the warm-up and again at the end, grows by less than 50% + 20 MiB.
This is a leak detector, not a benchmark: requests/s and latencies are
printed for information only. Under ASan the quarantine is capped at 32 MiB
so that it is full by the end of the warm-up (its default, 256 MiB, would
look like a leak); LeakSanitizer checks the exit anyway.

Usage: test_load.py --durable PATH --examples DIR [--duration S] [--warmup S] [--clients N]
"""
import http.client
import json
import os
import random
import socket
import threading
import time

import server_util as su
from server_util import task

MIB_KIB = 1024
LOAD = {"name": "load", "description": "steps of no duration, for the load test",
        "steps": [task("a", 0), task("b", 0, ["a"]), task("c", 0, ["a"]),
                  task("d", 0, ["b", "c"])]}


class Client:
    """One keep-alive connection. A request that finds the connection closed
    by the server before any answer (allowed between requests in HTTP/1.1)
    is sent once more on a new connection; that is counted, not an error."""

    def __init__(self, srv):
        self.srv = srv
        self.conn = None
        self.reconnects = 0

    def request(self, method, path, body=None):
        for attempt in (1, 2):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection(self.srv.host, self.srv.port,
                                                       timeout=30 * su.slow_factor())
            try:
                headers = self.srv.headers({"Content-Type": "application/json"} if body else {})
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, r.headers, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if fresh or attempt == 2:
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class LoadTest(su.ServerTest):

    def test_load_zero_errors_no_growth(self):
        args = su.ARGS
        env = {}
        if su.sanitizer() == "asan":
            env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                   ":quarantine_size_mb=32").lstrip(":")
        srv = self.start_server(env=env)
        self.register(srv, LOAD, expect=(201,))
        start = time.monotonic()
        warm_end = start + args.warmup
        end = warm_end + args.duration
        lock = threading.Lock()
        errors, latencies = [], []
        counts = {"start": 0, "get": 0, "list": 0, "reconnects": 0}
        started = []

        def fail(what, detail):
            with lock:
                errors.append("%s: %s" % (what, detail))

        def body_of(status, data, what, want):
            if not 200 <= status < 300:
                fail(what, "status %s: %r" % (status, data[:300]))
                return None
            try:
                doc = json.loads(data.decode("utf-8"))
            except ValueError as e:
                fail(what, "body is not JSON (%s): %r" % (e, data[:300]))
                return None
            if not isinstance(doc, want):
                fail(what, "body is not a %s: %r" % (want.__name__, data[:300]))
                return None
            return doc

        def worker(k):
            rng = random.Random(k)
            c = Client(srv)
            mine = []
            n = 0
            local = {"start": 0, "get": 0, "list": 0}
            lat = []
            while time.monotonic() < end:
                op = rng.random()
                t0 = time.monotonic()
                try:
                    if op < 0.25 or not mine:
                        n += 1
                        key = "c%d-%d" % (k, n)
                        status, _, data = c.request(
                            "POST", "/workflows/load/runs",
                            json.dumps({"idempotency_key": key, "input": {"n": n}}).encode())
                        doc = body_of(status, data, "POST runs", dict)
                        if doc is not None:
                            if status != 202 or doc.get("idempotency_key") != key:
                                fail("POST runs", "status %s, run %r" % (status, doc))
                            else:
                                mine.append(doc["id"])
                        local["start"] += 1
                    elif op < 0.65:
                        run_id = rng.choice(mine[-20:])
                        status, _, data = c.request("GET", "/runs/%s" % run_id)
                        doc = body_of(status, data, "GET run", dict)
                        if doc is not None and doc.get("id") != run_id:
                            fail("GET run", "asked %s, got %r" % (run_id, data[:200]))
                        local["get"] += 1
                    else:
                        status, headers, data = c.request("GET", "/runs?limit=10")
                        doc = body_of(status, data, "GET runs", list)
                        total = headers.get("X-Total-Count", "")
                        if doc is not None and (len(doc) > 10 or not total.isdigit()):
                            fail("GET runs", "%d items, X-Total-Count %r" % (len(doc), total))
                        local["list"] += 1
                except (OSError, http.client.HTTPException, socket.timeout) as e:
                    fail("request", repr(e))
                    c.close()
                lat.append(time.monotonic() - t0)
            c.close()
            with lock:
                for kk, v in local.items():
                    counts[kk] += v
                counts["reconnects"] += c.reconnects
                started.extend(mine)
                latencies.extend(lat)

        threads = [threading.Thread(target=worker, args=(k,), daemon=True)
                   for k in range(args.clients)]
        for t in threads:
            t.start()
        samples = []

        def sample(label):
            st = srv.status_file()
            s = (label, round(time.monotonic() - start, 1), int(st["VmRSS"].split()[0]),
                 int(st.get("RssAnon", "0 kB").split()[0]), int(st["Threads"]))
            samples.append(s)
            return s

        while time.monotonic() < warm_end:
            time.sleep(min(1.0, max(0.0, warm_end - time.monotonic())))
            sample("warm-up")
        warm = samples[-1]
        while time.monotonic() < end - 0.5:
            time.sleep(min(1.0, max(0.0, end - 0.5 - time.monotonic())))
            sample("load")
        last = samples[-1]
        for t in threads:
            t.join(timeout=60 * su.slow_factor())
        self.assertFalse([t for t in threads if t.is_alive()], "client threads did not stop")
        elapsed = time.monotonic() - start
        n_req = counts["start"] + counts["get"] + counts["list"]
        latencies.sort()
        pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
        su.log("load: %d clients, %.1fs: %d requests (%.0f/s; %d starts, %d run reads, %d lists),"
               " %d reconnects, latency p50 %.1f ms p99 %.1f ms max %.1f ms"
               % (args.clients, elapsed, n_req, n_req / elapsed, counts["start"], counts["get"],
                  counts["list"], counts["reconnects"], pct(0.5), pct(0.99), pct(1.0)))
        su.log("RSS samples (label, s, VmRSS KiB, RssAnon KiB, threads):\n  "
               + "\n  ".join(map(str, samples)))
        self.assertFalse(errors, "%d errors under load, first ones:\n%s"
                         % (len(errors), "\n".join(errors[:20])))
        self.assertGreater(n_req, args.clients, "the load test made almost no requests")

        # Every run started under load completes.
        def drained():
            for st in ("pending", "running", "waiting"):
                r = srv.get("/runs?status=%s&limit=1" % st)
                self.assertOk(r)
                if r.total():
                    return False
            return True
        self.wait_for(drained, 120, "every run started under load to finish", interval=0.5)
        total = srv.get("/runs?limit=1").total()
        completed = srv.get("/runs?status=completed&limit=1").total()
        self.assertEqual(total, len(started), "runs in the database = runs started")
        self.assertEqual(completed, total, "every run completed")
        after = sample("drained")
        su.log("after the drain: VmRSS %d KiB, RssAnon %d KiB" % (after[2], after[3]))

        for i, name in ((2, "VmRSS"), (3, "RssAnon")):
            if not warm[i]:
                continue
            bound = warm[i] * 1.5 + 20 * MIB_KIB
            self.assertLess(last[i], bound,
                            "%s grew from %d KiB after the warm-up to %d KiB at the end (bound"
                            " %d KiB): a leak?" % (name, warm[i], last[i], bound))


def extra(ap):
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load after warm-up")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the first"
                    " RSS sample")
    ap.add_argument("--clients", type=int, default=100)


if __name__ == "__main__":
    su.main(extra)
