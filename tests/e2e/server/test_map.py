#!/usr/bin/env python3
"""End-to-end tests of the `map` step type over `durable serve`.

- SIGKILL in the middle of a map of 120 http_request items (4 in flight)
  to a counting HTTP target: after the restart the run completes with the
  120 outputs in order, every item was requested with the idempotency key
  RUN/each[INDEX], an item whose map_item_completed was committed before
  the kill was never requested again, and the others at most twice (with
  the same key);
- the step's `progress` while it runs and once completed;
- per-item retries, fail_fast (the step fails, code item_failed) and collect
  ({results, errors}); items that are not a list; more than 1,000,000
  items; hostile definitions refused with located errors.

With --pg every test runs on a fresh PostgreSQL database.

Usage: test_map.py --durable PATH --examples DIR [--pg]
"""
import collections
import http.server
import json
import threading
import time
import unittest

import server_util as su

N_ITEMS = 120
CONCURRENCY = 4


class Target:
    """A loopback HTTP target counting requests by Idempotency-Key. POST
    /item/N answers {"index": N} after `delay` seconds; /fail/N answers 500
    for the N listed in `failing`, else 200."""

    def __init__(self, delay=0.05, failing=()):
        self.hits = collections.Counter()
        self.lock = threading.Lock()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = int(self.path.rsplit("/", 1)[1])
                with target.lock:
                    target.hits[self.headers.get("Idempotency-Key")] += 1
                time.sleep(delay)
                status = 500 if self.path.startswith("/fail/") and n in failing else 200
                body = json.dumps({"index": n}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the server was killed while it waited

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def counts(self):
        with self.lock:
            return dict(self.hits)


def map_flow(name, target, n, path="/item/", retry=None, policy=None, concurrency=CONCURRENCY):
    step = {"type": "http_request",
            "config": {"url": target.url(path) + "{{ .index }}", "method": "POST",
                       "body": {"value": "{{ .item }}"}}}
    if retry:
        step["retry"] = retry
    config = {"items": ".steps.fetch.output.rows", "max_concurrency": concurrency, "step": step}
    if policy:
        config["on_item_failure"] = policy
    return {"name": name, "steps": [
        {"id": "fetch", "type": "transform",
         "config": {"expression": "{rows: [range(0; %d)]}" % n}},
        {"id": "each", "type": "map", "depends_on": ["fetch"], "config": config},
    ]}


def step_of(run, step_id):
    return next(s for s in run["steps"] if s["step_id"] == step_id)


class MapTest(su.ServerTest):
    def target(self, **kw):
        t = Target(**kw)
        self.addCleanup(t.close)
        return t

    def test_sigkill_mid_map(self):
        target = self.target(delay=0.05)
        srv = self.start_server()
        self.register(srv, map_flow("mapkill", target, N_ITEMS))
        run_id = self.start_run(srv, "mapkill")["id"]

        def progressed():
            p = step_of(self.run_json(srv, run_id), "each").get("progress") or {}
            return p if p.get("done", 0) >= 30 else None
        p = self.wait_for(progressed, 60, "30 items done")
        self.assertEqual(p["total"], N_ITEMS)
        self.assertLessEqual(p["running"], CONCURRENCY)
        self.assertIsNone(step_of(self.run_json(srv, run_id), "each")["output"],
                          "no output while the map runs")
        srv.kill()
        at_kill = target.counts()
        self.assertLess(len(at_kill), N_ITEMS, "the kill came before the end")

        srv.start()
        run = self.wait_run(srv, run_id, timeout=120)
        self.assertEqual(run["status"], "completed", json.dumps(run, indent=1))
        each = step_of(run, "each")
        out = each["output"]
        self.assertEqual(len(out), N_ITEMS)
        self.assertEqual([o["body"]["index"] for o in out], list(range(N_ITEMS)),
                         "outputs in item order")
        self.assertEqual(each["progress"], {"total": N_ITEMS, "done": N_ITEMS, "failed": 0,
                                            "running": 0})

        evs = self.events(srv, run_id)
        rec = [e["seq"] for e in evs if e["type"] == "recovered"]
        self.assertTrue(rec, "a recovered event after the restart:\n" + su.format_events(evs))
        before = {e["data"]["index"] for e in evs
                  if e["type"] == "map_item_completed" and e["seq"] < rec[0]}
        self.assertTrue(before, "items completed before the kill")
        completed = collections.Counter(e["data"]["index"] for e in evs
                                        if e["type"] == "map_item_completed")
        self.assertEqual(set(completed), set(range(N_ITEMS)))
        self.assertEqual(max(completed.values()), 1, "each item completed once in the history")

        hits = target.counts()
        keys = {"%s/each[%d]" % (run_id, k) for k in range(N_ITEMS)}
        self.assertEqual(set(hits), keys, "one idempotency key per item")
        for k in before:
            self.assertEqual(hits["%s/each[%d]" % (run_id, k)], 1,
                             "item %d completed before the kill was requested again" % k)
        # Run again: the items whose outcome had not committed at the kill
        # (in flight, or answered while the writer had not committed it
        # yet), with the same key; each at most once more.
        self.assertTrue(all(c <= 2 for c in hits.values()), hits)
        # History stays linear: one event per item settled, plus the steps'.
        n_item_events = sum(1 for e in evs if e["type"].startswith("map_item_"))
        self.assertEqual(n_item_events, N_ITEMS)

    def test_retries_fail_fast_and_collect(self):
        target = self.target(delay=0.0)
        srv = self.start_server()
        retry = {"max_attempts": 2, "initial_interval_seconds": 0.05}
        self.register(srv, map_flow("mapff", target, 10, path="/fail/", retry=retry))
        self.register(srv, map_flow("mapcol", target, 10, path="/fail/", retry=retry,
                                    policy="collect"))
        # No item fails: 200 for every index but those in `failing` (none).
        run = self.wait_run(srv, self.start_run(srv, "mapff")["id"])
        self.assertEqual(run["status"], "completed", json.dumps(run, indent=1))

        target.close()
        target = self.target(delay=0.0, failing=(3, 7))
        self.register(srv, map_flow("mapff2", target, 10, path="/fail/", retry=retry))
        self.register(srv, map_flow("mapcol2", target, 10, path="/fail/", retry=retry,
                                    policy="collect", concurrency=1))
        run = self.wait_run(srv, self.start_run(srv, "mapff2")["id"])
        self.assertEqual(run["status"], "failed")
        each = step_of(run, "each")
        self.assertEqual(each["status"], "failed")
        self.assertRegex(each["error_message"], r"^item [37] failed: ")
        self.assertGreaterEqual(each["progress"]["failed"], 1)

        run = self.wait_run(srv, self.start_run(srv, "mapcol2")["id"])
        self.assertEqual(run["status"], "completed", json.dumps(run, indent=1))
        out = step_of(run, "each")["output"]
        self.assertEqual([r is None for r in out["results"]],
                         [k in (3, 7) for k in range(10)])
        self.assertEqual([(e["index"], e["attempt"], e["code"]) for e in out["errors"]],
                         [(3, 2, "http_status"), (7, 2, "http_status")])
        self.assertEqual(step_of(run, "each")["progress"],
                         {"total": 10, "done": 8, "failed": 2, "running": 0})
        hits = target.counts()
        rid = run["id"]
        self.assertEqual(hits["%s/each[3]" % rid], 2, "a failed item is retried (same key)")
        self.assertEqual(hits["%s/each[4]" % rid], 1)
        evs = self.events(srv, rid)
        failed = [e["data"] for e in evs if e["type"] == "map_item_failed"]
        self.assertEqual(sorted((d["index"], d["attempt"], d["final"]) for d in failed),
                         [(3, 1, False), (3, 2, True), (7, 1, False), (7, 2, True)])

    def test_run_retry_runs_the_map_again(self):
        failing = {3}
        target = self.target(delay=0.0, failing=failing)
        srv = self.start_server()
        self.register(srv, map_flow("mapretry", target, 6, path="/fail/"))
        run_id = self.start_run(srv, "mapretry")["id"]
        run = self.wait_run(srv, run_id)
        self.assertEqual(run["status"], "failed")
        self.assertEqual(step_of(run, "each")["error_message"][:14], "item 3 failed:")
        failing.clear()
        self.assertStatus(srv.post("/runs/%s/retry" % run_id), 200, 202)
        run = self.wait_run(srv, run_id, statuses=("completed",))
        out = step_of(run, "each")["output"]
        self.assertEqual([o["body"]["index"] for o in out], list(range(6)))
        self.assertEqual(target.counts()["%s/each[3]" % run_id], 2)

    def test_child_workflow_per_item(self):
        """A `workflow` template: a child run per item, keyed by item and
        attempt, its output the item's; a failed child fails its item; a
        SIGKILL in the middle starts no second child for any item."""
        srv = self.start_server()
        child = self.register(srv, {"name": "half", "steps": [
            {"id": "t", "type": "task", "config": {"duration_seconds": 0.2}},
            {"id": "h", "type": "transform", "depends_on": ["t"], "config": {
                "expression": 'if .input.n % 5 == 4 then error("no") else .input.n / 2 end'}}]})
        self.register(srv, {"name": "fan", "steps": [
            {"id": "each", "type": "map", "config": {
                "items": "[range(0; 30)]", "max_concurrency": 3, "on_item_failure": "collect",
                "step": {"type": "workflow",
                         "config": {"workflow": "half", "input": {"n": "{{ .item }}"}}}}}]})
        run_id = self.start_run(srv, "fan")["id"]

        def progressed():
            p = step_of(self.run_json(srv, run_id), "each").get("progress") or {}
            return p if p.get("done", 0) + p.get("failed", 0) >= 6 else None
        self.wait_for(progressed, 60, "6 items settled")
        srv.kill()
        srv.start()
        run = self.wait_run(srv, run_id, timeout=120)
        self.assertEqual(run["status"], "completed", json.dumps(run, indent=1))
        evs = self.events(srv, run_id)
        rec = [e["seq"] for e in evs if e["type"] == "recovered"]
        self.assertTrue(rec, "killed in the middle:\n" + su.format_events(evs))
        self.assertTrue(any(e["seq"] > rec[0] for e in evs if e["type"].startswith("map_item_")))
        out = step_of(run, "each")["output"]
        self.assertEqual(out["results"],
                         [None if n % 5 == 4 else {"h": n / 2} for n in range(30)])
        self.assertEqual([(e["index"], e["code"]) for e in out["errors"]],
                         [(n, "child_failed") for n in range(30) if n % 5 == 4])
        children = srv.get("/runs?workflow_id=%s&limit=500" % child["id"]).json()
        self.assertEqual(len(children), 30, "one child per item, none started twice")
        self.assertEqual(sorted(c["idempotency_key"] for c in children),
                         sorted("%s/each[%d]#1" % (run_id, n) for n in range(30)))

    def test_pause_stops_new_items(self):
        srv = self.start_server()
        self.register(srv, {"name": "mappause", "steps": [
            {"id": "each", "type": "map", "config": {
                "items": "[range(0; 60)]", "max_concurrency": 2,
                "step": {"type": "task", "config": {"duration_seconds": 0.05}}}}]})
        run_id = self.start_run(srv, "mappause")["id"]

        def progress():
            return step_of(self.run_json(srv, run_id), "each").get("progress") or {}
        self.wait_for(lambda: progress().get("done", 0) >= 4, 30, "4 items done")
        self.assertStatus(srv.post("/runs/%s/pause" % run_id), 200, 202)
        # The items in flight finish, then nothing moves.
        seen = []

        def still():
            seen.append(progress()["done"])
            return len(seen) >= 4 and seen[-1] == seen[-2] == seen[-3] == seen[-4]
        self.wait_for(still, 30, "the map to stand still while paused", interval=0.3)
        self.assertLess(seen[-1], 60)
        self.assertStatus(srv.post("/runs/%s/resume" % run_id), 200, 202)
        run = self.wait_run(srv, run_id, timeout=60)
        self.assertEqual(run["status"], "completed")
        self.assertEqual(len(step_of(run, "each")["output"]), 60)

    def test_items_hostile(self):
        srv = self.start_server()
        base = {"max_concurrency": "", "on_item_failure": None,
                "step": {"type": "transform", "config": {"expression": ".item * 2"}}}
        flows = {
            "notlist": ".input",
            "toomany": "[range(0; 1000001)]",
            "empty": "[]",
            "numbers": "[range(0; 5)]",
        }
        for name, items in flows.items():
            self.register(srv, {"name": "map" + name, "steps": [
                {"id": "each", "type": "map", "config": dict(base, items=items)}]})
        run = self.wait_run(srv, self.start_run(srv, "mapnotlist", {"input": {"a": 1}})["id"])
        self.assertEqual(run["status"], "failed")
        self.assertIn("items: expected a list, got object", step_of(run, "each")["error_message"])
        run = self.wait_run(srv, self.start_run(srv, "maptoomany")["id"], timeout=120)
        self.assertEqual(run["status"], "failed")
        # The list is bounded twice: 1 MiB of JSON (every expression's
        # result) and 1,000,000 items; a million numbers pass neither.
        self.assertRegex(step_of(run, "each")["error_message"],
                         r"^items: (expression result larger than 1048576 bytes|"
                         r"1000001 items, more than the 1000000)")
        run = self.wait_run(srv, self.start_run(srv, "mapempty")["id"])
        self.assertEqual((run["status"], step_of(run, "each")["output"]), ("completed", []))
        run = self.wait_run(srv, self.start_run(srv, "mapnumbers")["id"])
        self.assertEqual(step_of(run, "each")["output"], [0, 2, 4, 6, 8])

        bad = {"name": "mapbad", "steps": [{"id": "each", "type": "map", "config": {
            "items": ".x", "max_concurrency": 5000, "on_item_failure": "colect",
            "step": {"type": "aproval"}}}]}
        r = srv.post("/workflows", bad)
        err = self.assertError(r, 400, 422)
        text = json.dumps(r.json())
        for needle in ('steps[0].config.on_item_failure: unknown policy \\"colect\\" '
                       '(did you mean \\"collect\\"?)',
                       "steps[0].config.max_concurrency: must be an integer between 1 and 1000",
                       'steps[0].config.step.type: unknown step type \\"aproval\\" '
                       '(did you mean \\"approval\\"?)'):
            self.assertIn(needle, text, err)


if __name__ == "__main__":
    su.main()
