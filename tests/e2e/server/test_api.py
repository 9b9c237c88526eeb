#!/usr/bin/env python3
"""End-to-end tests of the HTTP API of `durable serve` (SPEC §5, §6, §8, §9).

Each test starts the real server on a free loopback port with a fresh
database (server_util.Server) and drives it over HTTP as a client would: the
whole lifecycle of a run (register, start, watch, complete, the order
shipped), idempotent starts, cancel, retry, list filters and paging, the
event history with `after`, workflows by id and name, /health, /metrics,
/openapi.json, /db/snapshot, the bearer token, the refusal to listen on a
non-loopback address without one, usage errors, start-up registration and a
clean SIGTERM stop followed by recovery. Starts are answered after their
commit from a suspended connection: many at once (distinct runs, one run
per idempotency key), clients that leave before the answer, and a stop
with starts in flight.

Usage: test_api.py --durable PATH/durable --examples PATH/examples [unittest args]
"""
import copy
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import server_util as su
from server_util import task

SPEC_ROUTES = [
    ("POST", "/workflows"), ("GET", "/workflows"), ("GET", "/workflows/{}"),
    ("POST", "/workflows/{}/runs"), ("GET", "/runs"), ("GET", "/runs/{}"),
    ("GET", "/runs/{}/events"), ("GET", "/runs/{}/stream"), ("GET", "/events/stream"),
    ("POST", "/runs/{}/cancel"), ("POST", "/runs/{}/retry"),
    ("POST", "/runs/{}/pause"), ("POST", "/runs/{}/resume"), ("POST", "/runs/{}/restart"),
    ("POST", "/runs/{}/steps/{}/approve"), ("POST", "/runs/{}/steps/{}/reject"),
    ("POST", "/runs/{}/signals/{}"), ("POST", "/runs/bulk"), ("DELETE", "/runs/{}"),
    ("DELETE", "/runs"), ("DELETE", "/workflows/{}/versions/{}"),
    ("POST", "/orders"), ("GET", "/orders"), ("GET", "/orders/{}"),
    ("GET", "/db/snapshot"), ("GET", "/health"), ("GET", "/metrics"), ("GET", "/openapi.json"),
]
LABELS = r'\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}'
ORDER_FLOW = ["pending", "validated", "charged", "shipped"]
RUN_FLOW = ["pending", "running", "completed"]


def quick(name, seconds=0.05, **extra):
    """A small diamond of quick steps."""
    d = {"name": name, "steps": [task("a", seconds), task("b", seconds, ["a"]),
                                  task("c", seconds, ["a"]), task("d", seconds, ["b", "c"])]}
    d.update(extra)
    return d


def failing(name="fails"):
    """prep and side complete; flaky always fails (no retries); after never runs."""
    return {"name": name, "steps": [
        task("prep", 0.1),
        task("side", 0.05, ["prep"]),
        task("flaky", 0.5, ["prep"], fail_probability=1.0, max_retries=0),
        task("after", 0.1, ["flaky", "side"])]}


def example_name(filename):
    """The workflow name of an example file (JSON, or YAML's top-level name:)."""
    if filename.endswith(".json"):
        return su.load_example(filename)["name"]
    with open(os.path.join(su.EXAMPLES, filename)) as f:
        return re.search(r"^name:\s*['\"]?([^'\"\s#]+)", f.read(), re.M).group(1)


def started(events, step_id):
    return [e for e in events if e["type"] == "step_started" and e["step_id"] == step_id]


class ApiTest(su.ServerTest):

    def check_seq(self, events, context=""):
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)),
                         "event seq is 1..n without gaps\n" + su.format_events(events) + context)
        for e in events:
            for k in su.EVENT_KEYS:
                self.assertIn(k, e, "event has %r" % k)
            self.assertTime(e["at"], "event at")

    # ------------------------------------------------------------ workflows

    def test_register_yaml_both_shapes(self):
        srv = self.start_server()
        new_shape = ("name: yaml-flow\nsteps:\n  - id: a\n    config: {duration_seconds: 0}\n"
                     "  - id: b\n    depends_on: [a]\n    config: {duration_seconds: 0}\n")
        r = srv.request("POST", "/workflows", body=new_shape,
                        headers={"Content-Type": "application/yaml"})
        self.assertOk(r, 201)
        self.assertEqual(r.json()["definition"]["steps"][1]["depends_on"], ["a"], r)
        old_shape = ("name: yaml-old\ntasks:\n  - id: a\n    type: activity\n"
                     "    activity_type: task\n    config: {duration_seconds: 0}\n")
        r = srv.request("POST", "/workflows", body=old_shape,
                        headers={"Content-Type": "application/yaml"})
        self.assertOk(r, 201)
        self.assertEqual(r.json()["definition"]["steps"][0]["type"], "task", r)
        run = srv.post("/workflows/yaml-old/runs", {})
        self.assertOk(run, 202)
        self.assertEqual(self.wait_run(srv, run.json()["id"])["status"], "completed")
        bad = srv.request("POST", "/workflows", body="name: x\nsteps:\n  - id: a\n   bad: [\n",
                          headers={"Content-Type": "application/yaml"})
        self.assertError(bad, 400)
        self.assertEqual(bad.json()["error"]["code"], "malformed_yaml", bad)
        self.assertRegex(bad.json()["error"]["message"], r"line \d+, column \d+", bad)
        # A JSON body stays malformed_json whatever its label says.
        bad = srv.request("POST", "/workflows", body='{"name": "x",',
                          headers={"Content-Type": "application/yaml"})
        self.assertEqual(self.assertError(bad, 400)["code"], "malformed_json", bad)

    def test_register_identical_and_new_version(self):
        srv = self.start_server()
        doc = su.load_example("order-processing.json")
        r1 = srv.post("/workflows", doc)
        self.assertOk(r1, 201)
        w1 = r1.json()
        for k in ("id", "name", "version", "definition", "created_at"):
            self.assertIn(k, w1, "a workflow has %r%s" % (k, r1))
        self.assertEqual((w1["name"], w1["version"]), ("order-processing", 1), r1)
        self.assertIsInstance(w1["id"], str, r1)
        self.assertTime(w1["created_at"], "workflow created_at")

        r2 = srv.post("/workflows", doc)
        self.assertOk(r2, 200)
        self.assertEqual((r2.json()["id"], r2.json()["version"]), (w1["id"], 1),
                         "identical content is the same version" + str(r2))

        # Same content, other formatting: still identical.
        r2b = srv.request("POST", "/workflows", body=json.dumps(doc, indent=4),
                          headers={"Content-Type": "application/json"})
        self.assertOk(r2b, 200)
        self.assertEqual(r2b.json()["id"], w1["id"], r2b)

        changed = copy.deepcopy(doc)
        changed["steps"][0]["config"]["duration_seconds"] = 0.5
        changed["version"] = "informational-2b"
        r3 = srv.post("/workflows", changed)
        self.assertOk(r3, 201)
        w2 = r3.json()
        self.assertEqual((w2["name"], w2["version"]), ("order-processing", 2), r3)
        self.assertNotEqual(w2["id"], w1["id"], r3)

        # By id: that version and its definition; by name: the latest.
        g1 = srv.get("/workflows/%s" % w1["id"])
        self.assertOk(g1)
        self.assertEqual((g1.json()["id"], g1.json()["version"]), (w1["id"], 1), g1)
        self.assertEqual(g1.json()["definition"], doc, "definition as registered" + str(g1))
        gn = srv.get("/workflows/order-processing")
        self.assertOk(gn)
        self.assertEqual((gn.json()["id"], gn.json()["version"]), (w2["id"], 2), gn)
        self.assertEqual(gn.json()["definition"], changed,
                         "the definition's own version stays inside definition" + str(gn))
        self.assertError(srv.get("/workflows/no-such-workflow"), 404)
        self.assertError(srv.get("/workflows/%s" % ("0" * 32)), 404)

        # Runs keep the version they started with.
        run1 = self.start_run(srv, w1["id"])
        run2 = self.start_run(srv, "order-processing")
        self.assertEqual((run1["workflow_id"], run1["workflow_version"]), (w1["id"], 1), run1)
        self.assertEqual((run2["workflow_id"], run2["workflow_version"]), (w2["id"], 2), run2)
        self.assertEqual(run2["workflow_name"], "order-processing")

        # The list: both versions, bare array, X-Total-Count, paging.
        lst = srv.get("/workflows")
        self.assertOk(lst)
        self.assertIsInstance(lst.json(), list, lst)
        self.assertEqual(lst.total(), 2, lst)
        self.assertEqual(sorted(w["id"] for w in lst.json()), sorted([w1["id"], w2["id"]]), lst)
        p1 = srv.get("/workflows?limit=1")
        p2 = srv.get("/workflows?limit=1&offset=1")
        self.assertOk(p1)
        self.assertOk(p2)
        self.assertEqual((len(p1.json()), len(p2.json()), p1.total(), p2.total()), (1, 1, 2, 2))
        self.assertNotEqual(p1.json()[0]["id"], p2.json()[0]["id"])
        self.assertEqual(srv.get("/workflows?offset=2").json(), [])

    def test_invalid_definitions_are_located_and_not_stored(self):
        srv = self.start_server()
        bad = {"name": "typo", "steps": [task("charge"), task("ship", 0.1, ["chrage"])]}
        r = srv.post("/workflows", bad)
        err = self.assertError(r, 422)
        details = r.json()["error"].get("details")
        self.assertIsInstance(details, list, "422 carries the located messages in details" + str(r))
        self.assertTrue(any('steps[1].depends_on[0]: unknown step "chrage"' in d for d in details),
                        r)
        cyc = {"name": "cyc", "steps": [task("a", 0.1, ["b"]), task("b", 0.1, ["a"])]}
        r = srv.post("/workflows", cyc)
        self.assertError(r, 422)
        self.assertTrue(any(re.search(r"steps: cycle (a → b → a|b → a → b)", d)
                            for d in r.json()["error"]["details"]), r)
        # Both errors of one definition are listed.
        two = {"steps": [task("a", 0.1, ["zz"])]}
        r = srv.post("/workflows", two)
        self.assertError(r, 422)
        self.assertGreaterEqual(len(r.json()["error"]["details"]), 2,
                                "every error is listed (no name, unknown step)" + str(r))
        r = srv.request("POST", "/workflows", body='{"name": "x",\n "steps": [\n  {"id": "a",}\n ]}\n',
                        headers={"Content-Type": "application/json"})
        err = self.assertError(r, 400)
        self.assertRegex(err["message"], r"line 3, column \d+", r)
        lst = srv.get("/workflows")
        self.assertEqual((lst.json(), lst.total()), ([], 0), "nothing invalid is stored" + str(lst))

    def test_startup_registers_the_workflows_dir(self):
        srv = self.start_server(workflows=su.EXAMPLES)
        names = sorted(example_name(f) for f in os.listdir(su.EXAMPLES)
                       if f.endswith((".json", ".yaml", ".yml")))
        lst = srv.get("/workflows?limit=500")
        self.assertOk(lst)
        self.assertEqual(sorted(w["name"] for w in lst.json()), names, lst)
        self.assertTrue(all(w["version"] == 1 for w in lst.json()), lst)
        # Restart on the same database: identical definitions, no new versions.
        self.assertEqual(srv.stop(), 0, srv.describe())
        srv.start()
        lst2 = srv.get("/workflows?limit=500")
        self.assertEqual(sorted((w["name"], w["version"], w["id"]) for w in lst2.json()),
                         sorted((w["name"], w["version"], w["id"]) for w in lst.json()), lst2)
        # And the examples run from there, by name.
        run = self.start_run(srv, "simple-pipeline")
        self.assertEqual(self.wait_run(srv, run["id"], 30)["status"], "completed")

    # ------------------------------------------------------------ runs

    def test_lifecycle_order_is_shipped(self):
        """Register the README's order-processing, start it with an order,
        watch it by polling until it completes; the order ends shipped."""
        srv = self.start_server()
        w = self.register(srv, su.load_example("order-processing.json"), expect=(201,))
        r = srv.post("/orders", {"amount": 12.5})
        self.assertOk(r, 201)
        order = r.json()
        self.assertEqual((order["amount"], order["status"]), (12.5, "pending"), r)
        self.assertIsInstance(order["id"], str, r)

        r = srv.post("/workflows/order-processing/runs",
                     {"input": {"customer": "ada"}, "order_id": order["id"]})
        self.assertOk(r, 202)
        run = r.json()
        self.assertRunShape(run, str(r))
        self.assertEqual((run["workflow_id"], run["workflow_name"], run["workflow_version"],
                          run["order_id"], run["input"]),
                         (w["id"], "order-processing", 1, order["id"], {"customer": "ada"}), r)
        self.assertIn(run["status"], ("pending", "running"), r)
        self.assertEqual(sorted(s["step_id"] for s in run["steps"]), ["charge", "ship", "validate"])

        # Watch: statuses only move forward, for the run, each step and the order.
        seen_runs, seen_orders, seen_steps = [], [], {}
        deadline = time.monotonic() + 40 * su.slow_factor()
        while True:
            cur = self.run_json(srv, run["id"])
            o = srv.get("/orders/%s" % order["id"])
            self.assertOk(o)
            for lst, v in ((seen_runs, cur["status"]), (seen_orders, o.json()["status"])):
                if not lst or lst[-1] != v:
                    lst.append(v)
            for s in cur["steps"]:
                st = seen_steps.setdefault(s["step_id"], [])
                if not st or st[-1] != s["status"]:
                    st.append(s["status"])
            if cur["status"] in su.FINISHED:
                break
            self.assertLess(time.monotonic(), deadline, "run did not finish: %s" % cur)
            time.sleep(0.1)
        self.assertEqual(cur["status"], "completed", json.dumps(cur, indent=1))
        self.assertIn("running", seen_runs, "the watch saw the run running")
        self.assertEqual(seen_runs, [s for s in RUN_FLOW if s in seen_runs], seen_runs)
        self.assertEqual(seen_orders, [s for s in ORDER_FLOW if s in seen_orders], seen_orders)
        for sid, seq in seen_steps.items():
            self.assertEqual(seq, [s for s in ("pending", "running", "completed") if s in seq],
                             "step %s went %s" % (sid, seq))
        self.assertIn("running", seen_steps["validate"], "validate takes 2 s: seen running")

        final = self.run_json(srv, run["id"])
        self.assertRunShape(final)
        self.assertTime(final["started_at"], "run started_at")
        self.assertTime(final["completed_at"], "run completed_at")
        self.assertIsNone(final["error_message"])
        for s in final["steps"]:
            self.assertEqual((s["status"], s["attempt"]), ("completed", 1), s)
            self.assertTime(s["started_at"], "step started_at")
            self.assertTime(s["completed_at"], "step completed_at")
            self.assertIsInstance(s["output"], dict, s)
            self.assertIn("duration_seconds", s["output"], s)
        by_id = {s["step_id"]: s for s in final["steps"]}
        self.assertEqual(by_id["charge"]["depends_on"], ["validate"])
        self.assertEqual(by_id["validate"]["depends_on"], [])

        o = srv.get("/orders/%s" % order["id"])
        self.assertOk(o)
        self.assertEqual((o.json()["id"], o.json()["status"], o.json()["amount"]),
                         (order["id"], "shipped", 12.5), o)
        events = self.events(srv, run["id"])
        self.check_seq(events)
        types = [e["type"] for e in events]
        self.assertEqual((types[0], types[-1]), ("run_created", "run_completed"), types)
        applied = sorted(e["data"]["action"] for e in events if e["type"] == "action_applied")
        self.assertEqual(applied, ["charge_payment", "ship_order", "validate_order"],
                         su.format_events(events))
        self.assertEqual(sorted(e["step_id"] for e in events if e["type"] == "step_completed"),
                         ["charge", "ship", "validate"])
        orders = srv.get("/orders")
        self.assertOk(orders)
        self.assertEqual(orders.total(), 1, orders)
        self.assertEqual(orders.json()[0]["status"], "shipped", orders)
        self.assertError(srv.get("/orders/no-such-order"), 404)
        self.assertError(srv.get("/runs/no-such-run"), 404)
        self.assertError(srv.get("/runs/no-such-run/events"), 404)

    def test_idempotent_start(self):
        srv = self.start_server()
        self.register(srv, quick("idem"))
        a1 = srv.post("/workflows/idem/runs", {"idempotency_key": "key-1"})
        self.assertOk(a1, 202)
        a2 = srv.post("/workflows/idem/runs", {"idempotency_key": "key-1"})
        self.assertOk(a2, 200)
        self.assertEqual(a1.json()["id"], a2.json()["id"], "same key, same run" + str(a2))
        self.assertEqual(a2.json()["idempotency_key"], "key-1")
        self.assertRunShape(a2.json(), str(a2))
        self.assertEqual(a2.json()["reused"], {"run_version": 1, "requested_version": 1,
                                               "input_differs": False}, a2)
        self.assertNotIn("reused", a1.json(), "a new run was not reused" + str(a1))

        h1 = srv.request("POST", "/workflows/idem/runs", headers={"Idempotency-Key": "key-2"})
        self.assertOk(h1, 202)
        h2 = srv.request("POST", "/workflows/idem/runs", headers={"Idempotency-Key": "key-2"})
        self.assertOk(h2, 200)
        self.assertEqual(h1.json()["id"], h2.json()["id"], h2)
        self.assertNotEqual(h1.json()["id"], a1.json()["id"])
        # Header and body name the same key space.
        h3 = srv.request("POST", "/workflows/idem/runs", headers={"Idempotency-Key": "key-1"})
        self.assertOk(h3, 200)
        self.assertEqual(h3.json()["id"], a1.json()["id"], h3)

        # After completion the key still returns the same run, with 200.
        done = self.wait_run(srv, a1.json()["id"], 20)
        self.assertEqual(done["status"], "completed")
        a3 = srv.post("/workflows/idem/runs", {"idempotency_key": "key-1"})
        self.assertOk(a3, 200)
        self.assertEqual((a3.json()["id"], a3.json()["status"]), (a1.json()["id"], "completed"))
        n_events = len(self.events(srv, a1.json()["id"]))
        time.sleep(0.3)
        self.assertEqual(len(self.events(srv, a1.json()["id"])), n_events,
                         "a repeated start ran nothing")
        # Without a key, two starts are two runs.
        b1 = self.start_run(srv, "idem")
        b2 = self.start_run(srv, "idem")
        self.assertNotEqual(b1["id"], b2["id"])
        lst = srv.get("/runs?limit=500")
        self.assertEqual(lst.total(), 4, "runs: key-1, key-2 and two without a key" + str(lst))

    def test_key_across_versions_and_inputs_says_reused(self):
        """A key is per workflow name: after a new version, or with another
        input, it still returns its run (200), and `reused` says how that
        run differs from the request."""
        srv = self.start_server()
        self.register(srv, quick("keyed"))
        a1 = srv.post("/workflows/keyed/runs", {"idempotency_key": "k", "input": {"n": 1, "m": 2}})
        self.assertOk(a1, 202)
        same = srv.post("/workflows/keyed/runs", {"idempotency_key": "k", "input": {"m": 2, "n": 1}})
        self.assertOk(same, 200)
        self.assertEqual(same.json()["reused"], {"run_version": 1, "requested_version": 1,
                                                 "input_differs": False}, same)
        other = srv.post("/workflows/keyed/runs", {"idempotency_key": "k", "input": {"n": 2}})
        self.assertOk(other, 200)
        self.assertEqual(other.json()["id"], a1.json()["id"], other)
        self.assertEqual(other.json()["reused"], {"run_version": 1, "requested_version": 1,
                                                  "input_differs": True}, other)
        self.register(srv, quick("keyed", 0.06, description="version 2"))
        v2 = srv.request("POST", "/workflows/keyed/runs", headers={"Idempotency-Key": "k"},
                         json_body={"input": {"n": 1, "m": 2}})
        self.assertOk(v2, 200)
        self.assertEqual((v2.json()["id"], v2.json()["workflow_version"]), (a1.json()["id"], 1), v2)
        self.assertEqual(v2.json()["reused"], {"run_version": 1, "requested_version": 2,
                                               "input_differs": False}, v2)
        lst = srv.get("/runs?limit=500")
        self.assertEqual(lst.total(), 1, "one key, one run" + str(lst))

    def concurrent_posts(self, srv, n_clients, per_client, body_of, stop=None):
        """n_clients threads, each on its own keep-alive connection, released
        together, each POSTing per_client starts (body_of(i, k)). Returns
        [(status, Location, parsed body)] and the errors. With stop set, a
        client gives up quietly once it is set."""
        results, errors, lock = [], [], threading.Lock()
        barrier = threading.Barrier(n_clients)

        def client(i):
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60 * su.slow_factor())
            try:
                barrier.wait()
                for k in range(per_client):
                    conn.request("POST", "/workflows/many/runs", body=json.dumps(body_of(i, k)),
                                 headers=srv.headers({"Content-Type": "application/json"}))
                    r = conn.getresponse()
                    data = r.read()
                    with lock:
                        results.append((r.status, r.getheader("Location"), json.loads(data)))
            except Exception as e:  # noqa: BLE001
                if stop is None or not stop.is_set():
                    with lock:
                        errors.append("client %d: %r" % (i, e))
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
        for t in threads:
            t.start()
        return threads, results, errors

    def test_concurrent_starts(self):
        srv = self.start_server()
        self.register(srv, quick("many", 0))
        threads, results, errors = self.concurrent_posts(srv, 24, 5, lambda i, k: {"input": {}})
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(errors, errors)
        self.assertEqual(len(results), 120)
        for status, location, run in results:
            self.assertEqual(status, 202, run)
            self.assertRunShape(run)
            self.assertEqual(location, "/runs/" + run["id"])
        ids = {run["id"] for _, _, run in results}
        self.assertEqual(len(ids), 120, "every start answered with its own run")

        # One key from 16 connections at once: one run, started once.
        threads, same, errors = self.concurrent_posts(
            srv, 16, 1, lambda i, k: {"idempotency_key": "together"})
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(errors, errors)
        statuses = sorted(s for s, _, _ in same)
        self.assertEqual(statuses, [200] * 15 + [202], same)
        self.assertEqual(len({run["id"] for _, _, run in same}), 1, same)
        self.assertEqual(same[0][2]["idempotency_key"], "together")
        self.assertEqual(srv.get("/runs?limit=1").total(), 121)
        for run_id in list(ids)[:10] + [same[0][2]["id"]]:
            self.assertEqual(self.wait_run(srv, run_id, 60)["status"], "completed")

    def test_start_client_gone(self):
        srv = self.start_server()
        self.register(srv, quick("many", 0))
        body = b'{"input": {}}'
        head = ("POST /workflows/many/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        # Each sends a whole start and closes at once, before the commit.
        for _ in range(40):
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            s.sendall(head.encode() + body)
            s.close()
        self.assertOk(srv.get("/health"))
        run = self.start_run(srv, "many")
        self.assertEqual(self.wait_run(srv, run["id"], 30)["status"], "completed")
        self.wait_for(lambda: srv.get("/runs?limit=1").total() >= 1, 10, "the runs")
        self.assertLessEqual(srv.get("/runs?limit=1").total(), 41)
        # _cleanup checks that SIGTERM ends it with 0 (under ASan: no leak).

    def test_stop_with_starts_in_flight(self):
        srv = self.start_server()
        self.register(srv, quick("many", 0))
        stop = threading.Event()
        threads, results, errors = self.concurrent_posts(srv, 16, 1000, lambda i, k: {}, stop)
        self.wait_for(lambda: len(results) >= 50, 60, "starts to be answered")
        stop.set()
        rc = srv.stop()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(rc, 0, "SIGTERM with starts in flight exits 0" + srv.describe())
        self.assertFalse(errors, errors)
        self.assertTrue(all(s == 202 for s, _, _ in results), results[:5])
        # Every start that was answered has its run, after a restart too.
        srv.start()
        for _, _, run in results[:20]:
            self.assertEqual(self.wait_run(srv, run["id"], 60)["status"], "completed")

    def test_cancel_mid_run(self):
        srv = self.start_server()
        d = {"name": "slow", "steps": [task("first", 0.1), task("long", 3.0, ["first"]),
                                       task("last", 0.1, ["long"])]}
        self.register(srv, d)
        run = self.start_run(srv, "slow")

        def long_running():
            steps = {s["step_id"]: s for s in self.run_json(srv, run["id"])["steps"]}
            return steps["long"]["status"] == "running"
        self.wait_for(long_running, 15, "step long to be running")
        r = srv.post("/runs/%s/cancel" % run["id"])
        self.assertTrue(200 <= r.status < 300, "cancel is accepted" + str(r))
        cancelled = self.wait_run(srv, run["id"], 10)
        self.assertEqual(cancelled["status"], "cancelled", cancelled)
        steps = {s["step_id"]: s for s in cancelled["steps"]}
        self.assertEqual(steps["first"]["status"], "completed", steps)
        self.assertEqual(steps["long"]["status"], "cancelled", steps)
        self.assertEqual(steps["last"]["status"], "cancelled", steps)
        self.assertTime(cancelled["completed_at"], "cancelled run completed_at")

        self.assertError(srv.post("/runs/%s/cancel" % run["id"]), 409)
        self.assertError(srv.post("/runs/%s/retry" % run["id"]), 409)
        self.assertError(srv.post("/runs/no-such-run/cancel"), 404)
        # The abandoned step's late result (at ~3 s) changes nothing.
        before = self.events(srv, run["id"])
        time.sleep(3.5)
        after = self.events(srv, run["id"])
        self.assertEqual(after, before, "a late result changed the cancelled run")
        self.check_seq(after)
        self.assertEqual(after[-1]["type"], "run_cancelled", su.format_events(after))
        self.assertEqual(self.run_json(srv, run["id"])["status"], "cancelled")
        # Cancelling a completed run is a conflict too.
        self.register(srv, quick("q"))
        q = self.start_run(srv, "q")
        self.assertEqual(self.wait_run(srv, q["id"], 20)["status"], "completed")
        self.assertError(srv.post("/runs/%s/cancel" % q["id"]), 409)

    def test_retry_after_failure(self):
        srv = self.start_server()
        self.register(srv, failing())
        run = self.start_run(srv, "fails")
        failed = self.wait_run(srv, run["id"], 20)
        self.assertEqual(failed["status"], "failed", failed)
        self.assertTrue(failed["error_message"], failed)
        steps = {s["step_id"]: s for s in failed["steps"]}
        self.assertEqual(steps["flaky"]["status"], "failed", steps)
        self.assertTrue(steps["flaky"]["error_message"], steps)
        self.assertEqual(steps["prep"]["status"], "completed", steps)
        self.assertEqual(steps["side"]["status"], "completed", steps)
        self.assertNotEqual(steps["after"]["status"], "completed", steps)
        before = self.events(srv, run["id"])
        self.check_seq(before)
        self.assertEqual(before[-1]["type"], "run_failed")

        r = srv.post("/runs/%s/retry" % run["id"])
        self.assertTrue(200 <= r.status < 300, "retry of a failed run is accepted" + str(r))
        # The failed run was read (and its JSON cached): it is read anew now.
        again = self.run_json(srv, run["id"])
        self.assertNotEqual((again["status"], again["completed_at"]),
                            (failed["status"], failed["completed_at"]), again)

        def failed_again():
            evs = self.events(srv, run["id"])
            return evs if len(evs) > len(before) and evs[-1]["type"] == "run_failed" else None
        events = self.wait_for(failed_again, 20, "the retried run to fail again")
        self.check_seq(events)
        self.assertEqual(events[:len(before)], before, "history before the retry rewritten")
        new = events[len(before):]
        dump = "\nafter the retry:\n" + su.format_events(new)
        self.assertTrue(started(new, "flaky"), "the failed step ran again" + dump)
        self.assertFalse(started(new, "prep"), "a completed step ran again" + dump)
        self.assertFalse(started(new, "side"), "a completed step ran again" + dump)
        self.assertEqual(self.run_json(srv, run["id"])["status"], "failed")
        # Only a failed run can be retried.
        self.register(srv, quick("q"))
        q = self.start_run(srv, "q")
        self.assertError(srv.post("/runs/%s/retry" % q["id"]), 409)   # pending or running
        self.assertEqual(self.wait_run(srv, q["id"], 20)["status"], "completed")
        self.assertError(srv.post("/runs/%s/retry" % q["id"]), 409)   # completed
        self.assertError(srv.post("/runs/no-such-run/retry"), 404)

    # ------------------------------------------------------------ lists

    def test_list_filters_and_paging(self):
        srv = self.start_server()
        wa = self.register(srv, quick("alpha"))
        wb = self.register(srv, quick("beta"))
        self.register(srv, failing())
        ids_a = [self.start_run(srv, "alpha")["id"] for _ in range(5)]
        ids_b = [self.start_run(srv, wb["id"])["id"] for _ in range(3)]
        id_f = self.start_run(srv, "fails")["id"]
        for i in ids_a + ids_b + [id_f]:
            self.wait_run(srv, i, 30)

        everything = srv.get("/runs")
        self.assertOk(everything)
        self.assertEqual(everything.total(), 9, everything)
        runs = everything.json()
        self.assertIsInstance(runs, list)
        self.assertEqual(sorted(r["id"] for r in runs), sorted(ids_a + ids_b + [id_f]))
        created = [r["created_at"] for r in runs]
        self.assertEqual(created, sorted(created, reverse=True), "newest first")

        fa = srv.get("/runs?workflow_id=%s" % wa["id"])
        self.assertOk(fa)
        self.assertEqual((fa.total(), sorted(r["id"] for r in fa.json())), (5, sorted(ids_a)), fa)
        self.assertTrue(all(r["workflow_id"] == wa["id"] for r in fa.json()))
        ff = srv.get("/runs?status=failed")
        self.assertOk(ff)
        self.assertEqual((ff.total(), [r["id"] for r in ff.json()]), (1, [id_f]), ff)
        fc = srv.get("/runs?status=completed&workflow_id=%s" % wb["id"])
        self.assertEqual((fc.total(), sorted(r["id"] for r in fc.json())), (3, sorted(ids_b)), fc)
        none = srv.get("/runs?status=cancelled")
        self.assertOk(none)
        self.assertEqual((none.json(), none.total()), ([], 0), none)

        # Pages of 2 walk the whole list once, in the same order.
        paged = []
        for off in range(0, 10, 2):
            p = srv.get("/runs?limit=2&offset=%d" % off)
            self.assertOk(p)
            self.assertEqual(p.total(), 9, p)
            self.assertLessEqual(len(p.json()), 2, p)
            paged += [r["id"] for r in p.json()]
        self.assertEqual(paged, [r["id"] for r in runs], "paging = the list, in order")
        self.assertEqual(srv.get("/runs?offset=9").json(), [])
        p = srv.get("/runs?limit=3&offset=1&workflow_id=%s" % wa["id"])
        self.assertEqual((len(p.json()), p.total()), (3, 5), p)
        # Over the maximum of 500: clamped, or refused with 400 (SPEC says only "max 500").
        big = srv.get("/runs?limit=100000")
        if big.status == 200:
            self.assertEqual(len(big.json()), 9, big)
        else:
            self.assertError(big, 400)
        self.assertEqual(len(srv.get("/runs?limit=500").json()), 9)

    def test_events_after_paging(self):
        srv = self.start_server()
        self.register(srv, quick("ev"))
        run = self.start_run(srv, "ev")
        self.wait_run(srv, run["id"], 20)
        all_ev = self.events(srv, run["id"])
        self.check_seq(all_ev)
        n = len(all_ev)
        self.assertGreaterEqual(n, 10, su.format_events(all_ev))
        self.assertEqual(self.events(srv, run["id"], after=0), all_ev)
        self.assertEqual(self.events(srv, run["id"], after=4), all_ev[4:])
        self.assertEqual(self.events(srv, run["id"], after=n - 1), all_ev[-1:])
        self.assertEqual(self.events(srv, run["id"], after=n), [])
        self.assertEqual(self.events(srv, run["id"], after=n + 100), [])
        # Reading in pages with after = last seen seq loses nothing.
        walked, last = [], 0
        for _ in range(n + 1):
            page = self.events(srv, run["id"], after=last)
            if not page:
                break
            walked.append(page[0])
            last = page[0]["seq"]
        self.assertEqual(walked, all_ev)

    # ------------------------------------------------------------ the rest of §6

    def test_health_metrics_openapi_snapshot(self):
        srv = self.start_server()
        self.register(srv, quick("m"))
        run = self.start_run(srv, "m")
        self.wait_run(srv, run["id"], 20)
        h = srv.get("/health")
        self.assertOk(h)
        self.assertEqual(h.json().get("status"), "ok", h)

        m = srv.get("/metrics")
        self.assertStatus(m, 200)
        self.assertIn("text/plain", m.header("Content-Type", ""), m)
        text = m.text
        sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(%s)? (-?[0-9.eE+-]+|[+-]?Inf|NaN)( -?\d+)?$"
                            % LABELS)
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, sample, "a Prometheus sample line")
        self.assertRegex(text, r'(?m)^durable_runs\w*\{[^\n]*"completed"[^\n]*\} [1-9]',
                         "runs by state, one completed" + str(m))
        self.assertRegex(text, r"(?m)^durable_steps\w*\{", "steps by state" + str(m))
        self.assertRegex(text, r"(?m)^durable_\w*step\w*_bucket\{", "step duration histogram")
        self.assertRegex(text, r"(?m)^durable_\w*batch\w*_bucket\{", "commit batch histogram")
        self.assertRegex(text, r'(?m)^durable_http_requests\w*\{[^\n]*"20[012]"[^\n]*\} [1-9]',
                         "HTTP requests by route and status" + str(m))
        self.assertRegex(text, r'(?m)^durable_http_requests\w*\{[^\n]*/workflows', str(m))

        o = srv.get("/openapi.json")
        self.assertOk(o)
        api = o.json()
        self.assertTrue(str(api.get("openapi", "")).startswith("3"), "OpenAPI 3" + str(o)[:500])
        paths = {re.sub(r"\{[^}]*\}", "{}", p): v for p, v in api.get("paths", {}).items()}
        for method, route in SPEC_ROUTES:
            self.assertIn(route, paths, "openapi.json describes %s" % route)
            self.assertIn(method.lower(), paths[route], "openapi.json: %s %s" % (method, route))

        s = srv.get("/db/snapshot")
        self.assertOk(s)
        tables = {t["name"]: t for t in s.json()["tables"]}
        for name in ("workflows", "runs", "steps", "events", "orders"):
            self.assertIn(name, tables, s)
            self.assertIn("columns", tables[name])
            self.assertIn("rows", tables[name])
        self.assertEqual(len(tables["runs"]["rows"]), 1, s)

    # ------------------------------------------------------------ access

    def test_token_required_except_health(self):
        srv = self.start_server(token="s3cret-token")
        for path in ("/runs", "/workflows", "/metrics", "/openapi.json", "/orders",
                     "/db/snapshot", "/runs/x/stream", "/events/stream"):
            with self.subTest(path=path):
                self.assertError(srv.get(path, auth=False), 401)
                self.assertError(srv.get(path, auth=False,
                                         headers={"Authorization": "Bearer wrong"}), 401)
                self.assertError(srv.get(path, auth=False,
                                         headers={"Authorization": "Basic czNjcmV0LXRva2Vu"}), 401)
                self.assertError(srv.get(path, auth=False,
                                         headers={"Authorization": "Bearer s3cret-token-x"}), 401)
        r = srv.post("/workflows", quick("sneaky"), auth=False)
        self.assertError(r, 401)
        self.assertError(srv.post("/orders", {"amount": 1}, auth=False), 401)
        self.assertOk(srv.get("/health", auth=False))
        ok = srv.get("/workflows")
        self.assertOk(ok)
        self.assertEqual(ok.json(), [], "a refused request stored nothing" + str(ok))
        self.register(srv, quick("allowed"), expect=(201,))
        run = self.start_run(srv, "allowed")
        self.assertEqual(self.wait_run(srv, run["id"], 20)["status"], "completed")

    def test_non_loopback_without_token_is_refused(self):
        db = self.path("refused.db")
        empty = self.path("empty")
        os.makedirs(empty)
        for listen in ("0.0.0.0:0", "[::]:0"):
            with self.subTest(listen=listen):
                cmd = [su.DURABLE, "serve", "--listen", listen, "--db", db, "--workflows", empty]
                try:
                    p = subprocess.run(cmd, capture_output=True, timeout=20 * su.slow_factor(),
                                       stdin=subprocess.DEVNULL, cwd=self.tmp)
                except subprocess.TimeoutExpired as e:
                    self.fail("durable serve --listen %s without --token did not exit: it runs"
                              "\nstdout: %s\nstderr: %s" % (listen, su.text_of(e.stdout),
                                                            su.text_of(e.stderr)))
                out, err = su.text_of(p.stdout), su.text_of(p.stderr)
                msg = "\n$ %s\nexit %s\nstdout: %s\nstderr: %s" % (" ".join(cmd), p.returncode,
                                                                    out, err)
                self.assertEqual(p.returncode, 2, msg)
                self.assertNotIn("listening", out, msg)
                self.assertIn("--token", err, "the message says what to do" + msg)

    def test_usage_errors_and_help(self):
        h = subprocess.run([su.DURABLE, "serve", "--help"], capture_output=True, timeout=20,
                           cwd=self.tmp)
        text = su.text_of(h.stdout)
        self.assertEqual(h.returncode, 0, text + su.text_of(h.stderr))
        for word in ("usage", "--listen", "--db", "--workflows", "--workers", "--durability",
                     "--token", "process", "power"):
            self.assertIn(word, text.lower() if word == "usage" else text, "serve --help: " + word)
        self.assertFalse(os.path.exists(self.path("durable.db")), "--help created a database")
        top = subprocess.run([su.DURABLE, "--help"], capture_output=True, timeout=20, cwd=self.tmp)
        self.assertIn("serve", su.text_of(top.stdout))
        for args in (["--frobnicate"], ["--durability", "sometimes"], ["--workers", "abc"], ["--listen", "not-an-address"], ["--listen"],
                     ["--listen", "127.0.0.1:99999"], ["extra-argument"]):
            with self.subTest(args=args):
                cmd = [su.DURABLE, "serve", "--db", self.path("u.db")] + args
                try:
                    p = subprocess.run(cmd, capture_output=True, timeout=20 * su.slow_factor(),
                                       stdin=subprocess.DEVNULL, cwd=self.tmp)
                except subprocess.TimeoutExpired:
                    self.fail("%s did not exit" % cmd)
                self.assertEqual(p.returncode, 2, "%s\n%s%s" % (cmd, su.text_of(p.stdout),
                                                               su.text_of(p.stderr)))
                self.assertTrue(p.stderr.strip(), "a usage error says why on stderr")

    # ------------------------------------------------------------ stop and restart

    def test_sigterm_stops_cleanly_and_restart_resumes(self):
        srv = self.start_server()
        d = {"name": "interrupted", "steps": [task("one", 0.1), task("two", 2.0, ["one"]),
                                              task("three", 0.1, ["two"])]}
        self.register(srv, d)
        run = self.start_run(srv, "interrupted")

        def two_running():
            steps = {s["step_id"]: s for s in self.run_json(srv, run["id"])["steps"]}
            return steps["two"]["status"] == "running"
        self.wait_for(two_running, 15, "step two running")
        t0 = time.monotonic()
        rc = srv.stop()
        self.assertEqual(rc, 0, "SIGTERM exits 0" + srv.describe())
        self.assertLess(time.monotonic() - t0, 10 * su.slow_factor(), "SIGTERM stops promptly")
        srv.start()
        done = self.wait_run(srv, run["id"], 30)
        self.assertEqual(done["status"], "completed", done)
        events = self.events(srv, run["id"])
        self.check_seq(events)
        types = [e["type"] for e in events]
        self.assertIn("recovered", types, su.format_events(events))
        after = events[types.index("recovered"):]
        self.assertFalse(started(after, "one"), "a completed step ran again\n"
                         + su.format_events(events))
        self.assertEqual([e["step_id"] for e in events if e["type"] == "step_completed"],
                         ["one", "two", "three"], su.format_events(events))


if __name__ == "__main__":
    su.main()
