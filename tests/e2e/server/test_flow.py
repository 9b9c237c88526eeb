#!/usr/bin/env python3
"""Concurrency limits on the real server (issue 14 item 3).

  - `concurrency: {key: .input.customer_id, limit: 1}`: three runs of
    customer-7 and one of customer-8 start; each run's step is an
    http_request to a counting target on loopback that holds every request
    for a moment. The first customer-7 run executes, customer-8's is not
    held, the other two stay `pending` and GET /runs/{id}, GET /runs and
    `durable show --server` say why (`waiting`: reason, key, in_use, limit,
    message);
  - the server is SIGKILLed while the first run's request is in flight, and
    started again: the held runs are still held, and then every run
    finishes, customer-7's in the order started, and the target never saw
    two customer-7 runs at once;
  - six SIGKILLs at seeded random moments while three customers' runs go
    through: the same holds;
  - a priority: of two held runs the later one with the higher priority
    goes first;
  - a step's rate limit: a step waiting for its place says so, the starts
    are spaced; a step type's (`serve --rate-limit task=2`) spaces the
    steps of that type over every workflow, and a bad flag stops the server
    at start (exit 2) naming the fault;
  - hostile input: a limit of 0 or below, a blank key, a key that does not
    compile, a typo in a field (422, located), a priority that is not an
    integer in range (400).

With --pg the server runs on the PostgreSQL database of DURABLE_TEST_PG
(one node: limits are counted per node, README "Concurrency limits").

Usage: test_flow.py --durable PATH --examples DIR [--pg]
"""
import datetime
import http.server
import os
import random
import subprocess
import threading
import time

import server_util as su

HOLD_S = 0.8


def su_ms(text):
    """Unix ms of an RFC 3339 UTC time with milliseconds."""
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


class Target(http.server.BaseHTTPRequestHandler):
    """Holds each request HOLD_S seconds; records, per customer (the path),
    the runs in flight (from the Idempotency-Key header, RUN/STEP), the most
    seen at once and the order in which runs first arrived."""
    lock = threading.Lock()
    in_flight = {}   # customer -> {run: count}
    most = {}        # customer -> most distinct runs in flight at once
    order = {}       # customer -> runs in order of first arrival
    log = []         # (time, start|end, customer, run, in flight): told on a failure

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        customer = self.path.strip("/")
        run = (self.headers.get("Idempotency-Key") or "?").split("/")[0]
        with Target.lock:
            runs = Target.in_flight.setdefault(customer, {})
            runs[run] = runs.get(run, 0) + 1
            Target.most[customer] = max(Target.most.get(customer, 0), len(runs))
            Target.log.append((time.monotonic(), "start", customer, run, len(runs)))
            seen = Target.order.setdefault(customer, [])
            if run not in seen:
                seen.append(run)
        time.sleep(HOLD_S)
        with Target.lock:
            Target.log.append((time.monotonic(), "end", customer, run, 0))
            runs[run] -= 1
            if runs[run] == 0:
                del runs[run]
        body = b'{"ok": true}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the server that asked was killed


def flow_def(url, name="per-customer"):
    return {"name": name,
            "concurrency": {"key": ".input.customer_id", "limit": 1},
            "steps": [{"id": "call", "type": "http_request",
                       "retry": {"max_attempts": 3, "initial_interval_seconds": 0.2},
                       "config": {"url": url + "/{{ .input.customer_id }}", "method": "POST",
                                  "body": {"n": 1}, "timeout_seconds": 30}}]}


class FlowTest(su.ServerTest):

    @classmethod
    def setUpClass(cls):
        cls.target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
        cls.target.daemon_threads = True
        cls.url = "http://127.0.0.1:%d" % cls.target.server_address[1]
        threading.Thread(target=cls.target.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.target.shutdown()
        cls.target.server_close()

    def held(self, srv, run_id, key):
        """Polls until the run is held by a key in use, returns its `waiting`.
        (Right after a restart the node may not have taken back the run that
        holds the key yet: the held run says 0 of 1 in use for that moment.)"""
        def get():
            run = self.run_json(srv, run_id)
            w = run.get("waiting") if run["status"] == "pending" else None
            return w if w and w.get("in_use") else None
        w = self.wait_for(get, 30, "run %s held" % run_id)
        self.assertEqual(w["reason"], "concurrency", w)
        self.assertEqual(w["key"], key, w)
        self.assertEqual(w["limit"], 1, w)
        self.assertEqual(w["in_use"], 1, w)
        self.assertEqual(w["message"], "waiting for concurrency key %s, 1 of 1 in use" % key)
        return w

    def assert_one_at_a_time(self, customers, runs=None):
        """Never two runs of one customer at the target at once; with runs
        (customer -> run ids), each customer's arrived in that order."""
        with Target.lock:
            for c in customers:
                told = "\n".join("%.3f %s %s %s" % (t, e, r, n) for t, e, cc, r, n in Target.log
                                 if cc == c)
                if runs is not None:
                    self.assertEqual(Target.order[c], runs[c], told)
                self.assertEqual(Target.most[c], 1, "two %s runs at once:\n%s" % (c, told))

    def start(self, srv, customer, **extra):
        body = {"input": {"customer_id": customer}}
        body.update(extra)
        run = self.start_run(srv, "per-customer", body)
        time.sleep(0.01)  # created in distinct milliseconds: "in the order started" is exact
        return run["id"]

    def test_one_at_a_time_through_sigkill(self):
        srv = self.start_server()
        self.register(srv, flow_def(self.url))
        first = self.start(srv, "customer-7")
        second = self.start(srv, "customer-7")
        third = self.start(srv, "customer-7")
        other = self.start(srv, "customer-8")
        self.wait_run(srv, first, statuses=("running",))
        self.wait_run(srv, other, statuses=("running",))  # another key: not held
        self.held(srv, second, "customer-7")
        self.held(srv, third, "customer-7")
        r = srv.get("/runs?status=pending")
        self.assertOk(r)
        listed = {x["id"]: x for x in r.json()}
        self.assertEqual(listed[second]["waiting"]["key"], "customer-7")
        self.assertEqual(listed[third]["waiting"]["reason"], "concurrency")
        p = subprocess.run([su.DURABLE, "show", "--server", "http://%s:%d" % (srv.host, srv.port),
                            second], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("not running yet: waiting for concurrency key customer-7, 1 of 1 in use",
                      p.stdout)

        # SIGKILL while the first run's request is in flight.
        self.wait_for(lambda: first in Target.in_flight.get("customer-7", {}), 30,
                      "the first run's request at the target")
        srv.kill()
        srv.start()
        self.held(srv, second, "customer-7")
        self.held(srv, third, "customer-7")
        for run_id in (first, second, third, other):
            done = self.wait_run(srv, run_id, timeout=60)
            self.assertEqual(done["status"], "completed", done)
            self.assertNotIn("waiting", done)
        with Target.lock:
            self.assertEqual(Target.order["customer-7"], [first, second, third])
            self.assertEqual(Target.most["customer-7"], 1, "two customer-7 runs at once")
        # Finished in order, never overlapping, from the stored times too.
        runs = [self.run_json(srv, x) for x in (first, second, third)]
        for a, b in zip(runs, runs[1:]):
            self.assertLessEqual(a["completed_at"], b["started_at"], (a, b))

    def test_kill_cycles(self):
        """SIGKILL at seeded random moments, six times, while three customers'
        runs go through one at a time each: every run completes, each
        customer's in the order started, never two of one customer at once."""
        rng = random.Random(1403)
        srv = self.start_server()
        self.register(srv, flow_def(self.url))
        customers = ["kc-%d" % i for i in range(3)]
        runs = {c: [] for c in customers}
        for _ in range(3):
            for c in customers:
                runs[c].append(self.start(srv, c))
        for _ in range(6):
            time.sleep(rng.uniform(0.05, 1.2))
            srv.kill()
            srv.start()
        for c in customers:
            for run_id in runs[c]:
                done = self.wait_run(srv, run_id, timeout=90)
                self.assertEqual(done["status"], "completed", done)
        self.assert_one_at_a_time(customers, runs)

    def test_limit_over_two_nodes(self):
        """On PostgreSQL, two nodes on one database: a customer's runs
        started through either node go one at a time over both (the store
        counts every node's runs), a run held on one node for a run of the
        other says so, and every run completes."""
        if not su.ARGS.pg:
            self.skipTest("needs --pg: a SQLite database has one process")
        db = su.default_db(self.tmp)
        a = self.start_server(name="a", db=db, args=["--node", "a"])
        b = self.start_server(name="b", db=db, args=["--node", "b"])
        self.register(a, flow_def(self.url))
        first = self.start(a, "two-nodes-0")
        self.wait_run(a, first, statuses=("running",))
        second = self.start(b, "two-nodes-0")
        self.held(b, second, "two-nodes-0")
        customers = ["two-nodes-%d" % i for i in range(3)]
        runs = [first, second]
        for i in range(10):
            runs.append(self.start((a, b)[i % 2], customers[i % 3]))
        for run_id in runs:
            done = self.wait_run(a, run_id, timeout=90)
            self.assertEqual(done["status"], "completed", done)
        self.assert_one_at_a_time(customers)
        self.assertEqual(Target.order["two-nodes-0"][0], first)

    def test_priority(self):
        srv = self.start_server()
        self.register(srv, flow_def(self.url))
        first = self.start(srv, "customer-p")
        self.wait_run(srv, first, statuses=("running",))  # else `high` could go before it too
        low = self.start(srv, "customer-p")
        high = self.start(srv, "customer-p", priority=10)
        self.held(srv, low, "customer-p")
        self.assertEqual(self.held(srv, high, "customer-p")["limit"], 1)
        self.assertEqual(self.run_json(srv, high)["priority"], 10)
        self.assertNotIn("priority", self.run_json(srv, low))  # 0 is not shown
        for run_id in (first, low, high):
            self.assertEqual(self.wait_run(srv, run_id, timeout=60)["status"], "completed")
        with Target.lock:
            self.assertEqual(Target.order["customer-p"], [first, high, low])

    def test_step_rate_limit(self):
        srv = self.start_server()
        self.register(srv, {"name": "rated", "steps": [
            {"id": "t", "type": "task", "rate_limit": {"per_second": 2},
             "config": {"duration_seconds": 0}}]})
        runs = [self.start_run(srv, "rated", {})["id"] for _ in range(4)]

        def step_waiting():
            for run_id in runs:
                w = self.run_json(srv, run_id)["steps"][0].get("waiting")
                if w:
                    return w
            return None
        w = self.wait_for(step_waiting, 30, "a step waiting for its place")
        self.assertEqual(w["reason"], "rate_limit", w)
        self.assertEqual(w["message"], "waiting for the rate limit of step t, 2 per second")
        started = sorted(self.wait_run(srv, x)["steps"][0]["started_at"] for x in runs)
        self.assertGreaterEqual(su_ms(started[-1]) - su_ms(started[0]), 1000, started)
        for bad, what in ((0, "greater than 0"), (1001, "at most 1000"), ("x", "a number")):
            r = srv.post("/workflows", {"name": "bad-rate", "steps": [
                {"id": "a", "rate_limit": {"per_second": bad}}]})
            self.assertError(r, 422)
            self.assertIn("steps[0].rate_limit.per_second", r.text)
            self.assertIn(what, r.text)

    def test_limit_through_a_node_kill(self):
        """On PostgreSQL, two nodes (lease 2 s): the node executing a
        customer's run is SIGKILLed while its request is at the target; the
        other node, holding the customer's next runs, takes the run over and
        lets the next ones go only after it: every run completes, never two
        of the customer's runs at the target at once."""
        if not su.ARGS.pg:
            self.skipTest("needs --pg: a SQLite database has one process")
        db = su.default_db(self.tmp)
        a = self.start_server(name="a", db=db, args=["--node", "a", "--lease", "2s"])
        b = self.start_server(name="b", db=db, args=["--node", "b", "--lease", "2s"])
        self.register(a, flow_def(self.url))
        first = self.start(a, "kill-node")
        self.wait_for(lambda: first in Target.in_flight.get("kill-node", {}), 30,
                      "the first run's request at the target")
        later = [self.start(b, "kill-node") for _ in range(2)]
        self.held(b, later[0], "kill-node")
        a.kill()
        for run_id in [first] + later:
            done = self.wait_run(b, run_id, timeout=90)
            self.assertEqual(done["status"], "completed", done)
        self.assert_one_at_a_time(["kill-node"], {"kill-node": [first] + later})

    def test_rate_limit_over_two_nodes(self):
        """On PostgreSQL, two nodes on one database: a step's rate limit
        spaces its starts over both nodes (the database hands the places
        out), not per node."""
        if not su.ARGS.pg:
            self.skipTest("needs --pg: a SQLite database has one process")
        db = su.default_db(self.tmp)
        a = self.start_server(name="a", db=db, args=["--node", "a"])
        b = self.start_server(name="b", db=db, args=["--node", "b"])
        self.register(a, {"name": "rated-2", "steps": [
            {"id": "t", "type": "task", "rate_limit": {"per_second": 4},
             "config": {"duration_seconds": 0}}]})
        runs = [self.start_run((a, b)[k % 2], "rated-2", {})["id"] for k in range(8)]
        started = sorted(su_ms(self.wait_run(a, x)["steps"][0]["started_at"]) for x in runs)
        gaps = [y - x for x, y in zip(started, started[1:])]
        # Places one every 250 ms over both nodes: the last start comes at
        # least 7 x 250 ms after the first one's place (less the first
        # start's delay on a slow machine); per node, two at a time, the 8
        # starts would span 3 x 250 ms.
        self.assertGreaterEqual(started[-1] - started[0], 1200, gaps)

    def test_type_rate_limit(self):
        srv = self.start_server(args=["--rate-limit", "task=2"])
        for name in ("typed-a", "typed-b"):
            self.register(srv, {"name": name, "steps": [
                {"id": "t", "type": "task", "config": {"duration_seconds": 0}}]})
        runs = [self.start_run(srv, name, {})["id"] for name in ("typed-a", "typed-b") * 2]

        def step_waiting():
            for run_id in runs:
                w = self.run_json(srv, run_id)["steps"][0].get("waiting")
                if w:
                    return w
            return None
        w = self.wait_for(step_waiting, 30, "a step waiting for its type's place")
        self.assertEqual((w["reason"], w["step_type"]), ("rate_limit", "task"), w)
        self.assertEqual(w["message"], "waiting for the rate limit of step type task, 2 per second")
        started = sorted(self.wait_run(srv, x)["steps"][0]["started_at"] for x in runs)
        self.assertGreaterEqual(su_ms(started[-1]) - su_ms(started[0]), 1000, started)
        for bad, what in (("tsk=2", 'unknown step type "tsk"'), ("task=0", "above 0"),
                          ("task", "is not TYPE=N"), ("task=2,task=3", "given twice"),
                          ("task=1e9", "at most 1000")):
            p = subprocess.run([su.DURABLE, "serve", "--listen", "127.0.0.1:0", "--db",
                                os.path.join(self.tmp, "bad-rate.db"), "--rate-limit", bad],
                               capture_output=True, text=True, timeout=30 * su.slow_factor())
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(what, p.stderr)

    def test_hostile(self):
        srv = self.start_server()
        cases = [
            ({"limit": 0}, "concurrency.limit", "between 1 and 1000000"),
            ({"limit": -3, "key": ".input.c"}, "concurrency.limit", "between 1 and 1000000"),
            ({"key": " ", "limit": 1}, "concurrency.key", "blank key"),
            ({"key": ".input.c |", "limit": 1}, "concurrency.key", "syntax error"),
            ({"key": ".input.c"}, "concurrency.limit", "required"),
            ("one", "concurrency", "expected an object"),
            ({"limit": 1e12}, "concurrency.limit", "between 1 and 1000000"),
        ]
        for conc, where, what in cases:
            r = srv.post("/workflows", {"name": "bad-flow", "concurrency": conc,
                                        "steps": [{"id": "a"}]})
            err = self.assertError(r, 422)
            text = str(r.json())
            self.assertIn(where, text, (conc, text))
            self.assertIn(what, text, (conc, text))
            self.assertTrue(err["message"], conc)
        # A typo in a field is a warning naming it; the definition registers.
        r = srv.post("/workflows", {"name": "typo-flow", "concurrency": {"limit": 1, "kye": "x"},
                                    "steps": [{"id": "a"}]})
        self.assertStatus(r, 201, 200)
        self.assertIn("kye", r.text)
        self.register(srv, flow_def(self.url))
        for bad in (1e300, 2.5, "high", True, 1000001, -1000001):
            r = srv.post("/workflows/per-customer/runs",
                         {"input": {"customer_id": "x"}, "priority": bad})
            err = self.assertError(r, 400)
            self.assertIn("priority", err["message"], bad)
        r = srv.post("/workflows/per-customer/runs", {"input": {"customer_id": "x"}, "prio": 1})
        self.assertIn("priority", self.assertError(r, 400)["message"])  # lists the fields


if __name__ == "__main__":
    su.main()
