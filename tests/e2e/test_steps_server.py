#!/usr/bin/env python3
"""End-to-end tests of durable waits with `durable serve` (SPEC §1, §3, §5):
approvals decided over HTTP and with `durable approve|reject`, delays, and
SIGKILL of the server while runs wait.

- an approval waits (run `waiting`), survives SIGKILL of the server, and
  `durable approve --server` completes it after the restart; a second
  decision is 409, an unknown step 404; reject completes the step with
  approved false and the branch after it is skipped;
- a delay that waits while the server is killed fires once, not before its
  time, after the restart;
- 1,000 runs wait for approval at once, then are approved in one burst, and
  all complete;
- a false `if` skips its step and its dependents, a join with its own `if`
  runs; an expression error at registration is a 422 naming the step.

Uses the helpers of tests/e2e/server (server_util.py).
Usage: test_steps_server.py --durable PATH/durable --examples DIR [unittest args]
"""
import concurrent.futures
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "server"))
import server_util as su  # noqa: E402

APPROVAL = {"name": "e2e-approval", "steps": [
    {"id": "prepare", "type": "task", "config": {"duration_seconds": 0.05}},
    {"id": "ask", "type": "approval", "depends_on": ["prepare"],
     "config": {"prompt": "ship {{ .input.what }}?"}},
    {"id": "ship", "type": "task", "depends_on": ["ask"], "if": ".steps.ask.output.approved",
     "config": {"duration_seconds": 0.05}},
    {"id": "after", "type": "log", "depends_on": ["ship"], "if": "true",
     "config": {"message": "approved={{ .steps.ask.output.approved }}"}}]}


def step(run, sid):
    return next(s for s in run["steps"] if s["step_id"] == sid)


class StepsServerTest(su.ServerTest):
    def register(self, srv, doc):
        r = srv.post("/workflows", json_body=doc)
        self.assertStatus(r, 200, 201)
        return r.json()["id"]

    def start_run(self, srv, wf, body=None):
        r = srv.post("/workflows/%s/runs" % wf, json_body=body or {})
        self.assertStatus(r, 202)
        return r.json()["id"]

    def wait_step(self, srv, run_id, sid, status, timeout=20):
        return self.wait_for(lambda: step(self.run_json(srv, run_id), sid)["status"] == status,
                             timeout, "step %s to be %s" % (sid, status))

    def cli(self, *args):
        return subprocess.run([su.DURABLE, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def test_approval_survives_sigkill_and_cli_approves(self):
        srv = self.start_server()
        wf = self.register(srv, APPROVAL)
        run_id = self.start_run(srv, wf, {"input": {"what": "books"}})
        self.wait_step(srv, run_id, "ask", "waiting")
        self.assertEqual(self.run_json(srv, run_id)["status"], "waiting")
        waiting = [e for e in self.events(srv, run_id) if e["type"] == "step_waiting"]
        self.assertEqual(waiting[0]["data"]["prompt"], "ship books?")
        srv.kill()
        srv.start()
        time.sleep(0.5)
        run = self.run_json(srv, run_id)
        self.assertEqual(run["status"], "waiting")
        self.assertEqual(step(run, "ask")["status"], "waiting")
        url = "http://%s:%d" % (srv.host, srv.port)
        bad = self.cli("approve", "--server", url, run_id, "nope", "--by", "x")
        self.assertEqual(bad.returncode, 1, bad.stderr)
        self.assertIn("404", bad.stderr)
        ok = self.cli("approve", "--server", url, run_id, "ask", "--by", "alice",
                      "--comment", "")
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        again = self.cli("reject", "--server", url, run_id, "ask", "--by", "bob")
        self.assertEqual(again.returncode, 1)
        self.assertIn("409", again.stderr)
        run = self.wait_run(srv, run_id)
        self.assertEqual(run["status"], "completed")
        out = step(run, "ask")["output"]
        self.assertEqual((out["approved"], out["by"]), (True, "alice"))
        # The run has finished: an unknown step is still 404, a known one 409.
        r = srv.post("/runs/%s/steps/nope/approve" % run_id, json_body={})
        self.assertError(r, 404)
        self.assertError(srv.post("/runs/%s/steps/ask/approve" % run_id, json_body={}), 409)
        self.assertIsNone(out["comment"])  # left blank
        self.assertEqual(step(run, "ship")["status"], "completed")
        self.assertEqual(step(run, "after")["output"], {"message": "approved=true", "level": "info"})
        evs = self.events(srv, run_id)
        decided = [e for e in evs if e["type"] == "approval_decided"]
        self.assertEqual(len(decided), 1)
        self.assertEqual(decided[0]["data"]["by"], "alice")

    def test_order_with_approval_example(self):
        """examples/order-with-approval.yaml: an order of 1500
        stops at the approval, still waits after SIGKILL, and ships once
        approved; an order of 500 needs no approval."""
        path = os.path.join(su.EXAMPLES, "order-with-approval.yaml")
        with open(path, "rb") as f:
            text = f.read()
        srv = self.start_server()
        r = srv.request("POST", "/workflows", body=text,
                        headers={"Content-Type": "application/yaml"})
        self.assertStatus(r, 201)
        runs = {}
        for amount in (1500, 500):
            order = srv.post("/orders", {"amount": amount}).json()
            runs[amount] = (self.start_run(srv, "order-with-approval",
                                           {"order_id": order["id"]}), order["id"])
        small = self.wait_run(srv, runs[500][0])
        self.assertEqual(small["status"], "completed")
        self.assertEqual(step(small, "manager_approval")["status"], "skipped")
        self.assertEqual(srv.get("/orders/%s" % runs[500][1]).json()["status"], "shipped")
        big, order_id = runs[1500]
        self.wait_step(srv, big, "manager_approval", "waiting")
        srv.kill()
        srv.start()
        time.sleep(0.3)
        self.assertEqual(self.run_json(srv, big)["status"], "waiting")
        self.assertEqual(srv.get("/orders/%s" % order_id).json()["status"], "validated")
        r = srv.post("/runs/%s/steps/manager_approval/approve" % big,
                     {"by": "manager", "comment": "ok"})
        self.assertStatus(r, 200)
        run = self.wait_run(srv, big)
        self.assertEqual(run["status"], "completed")
        self.assertEqual(step(run, "ship")["status"], "completed")
        self.assertEqual(step(run, "rejected")["status"], "skipped")
        self.assertEqual(srv.get("/orders/%s" % order_id).json()["status"], "shipped")

    def test_reject_over_http_skips_branch(self):
        srv = self.start_server()
        wf = self.register(srv, APPROVAL)
        run_id = self.start_run(srv, wf, {"input": {"what": "cars"}})
        self.wait_step(srv, run_id, "ask", "waiting")
        # What the UI sent when the optional comment was left blank.
        r = srv.post("/runs/%s/steps/ask/reject" % run_id,
                     json_body={"by": "carol", "comment": ""})
        self.assertStatus(r, 200)
        self.assertError(srv.post("/runs/%s/steps/ask/approve" % run_id, json_body={}), 409)
        self.assertError(srv.post("/runs/%s/steps/prepare/approve" % run_id, json_body={}), 409)
        run = self.wait_run(srv, run_id)
        self.assertEqual(run["status"], "completed")
        self.assertIs(step(run, "ask")["output"]["approved"], False)
        self.assertIsNone(step(run, "ask")["output"]["comment"])
        self.assertEqual(step(run, "ship")["status"], "skipped")
        self.assertEqual(step(run, "after")["output"], {"message": "approved=false", "level": "info"})

    def test_delay_fires_once_on_time_across_sigkill(self):
        srv = self.start_server()
        wf = self.register(srv, {"name": "e2e-delay", "steps": [
            {"id": "nap", "type": "delay", "config": {"seconds": 2.5}},
            {"id": "after", "type": "task", "depends_on": ["nap"],
             "config": {"duration_seconds": 0}}]})
        t0 = time.time()
        run_id = self.start_run(srv, wf)
        self.wait_step(srv, run_id, "nap", "waiting")
        wake_at = step(self.run_json(srv, run_id), "nap")["wake_at"]
        self.assertTrue(wake_at)
        srv.kill()
        time.sleep(0.5)
        srv.start()
        run = self.wait_run(srv, run_id)
        self.assertEqual(run["status"], "completed")
        self.assertGreaterEqual(time.time() - t0, 2.4)
        evs = self.events(srv, run_id)
        self.assertEqual(len([e for e in evs if e["type"] == "step_completed"
                              and e["step_id"] == "nap"]), 1)
        self.assertEqual(len([e for e in evs if e["type"] == "step_started"
                              and e["step_id"] == "nap"]), 1)
        done = next(e for e in evs if e["type"] == "step_completed" and e["step_id"] == "nap")
        self.assertGreaterEqual(done["at"], wake_at)

    def test_thousand_waiting_approvals_then_burst(self):
        n = 1000
        srv = self.start_server()
        wf = self.register(srv, {"name": "e2e-many", "steps": [
            {"id": "ask", "type": "approval", "config": {"prompt": "ok?"}}]})
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            runs = list(pool.map(lambda i: self.start_run(srv, wf), range(n)))
        self.wait_for(lambda: srv.get("/runs?status=waiting&limit=1").total() == n, 60,
                      "%d waiting runs" % n, interval=0.5)

        def approve(run_id):
            return srv.post("/runs/%s/steps/ask/approve" % run_id, json_body={"by": "bulk"}).status
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(approve, runs))
        self.assertEqual(set(statuses), {200})
        self.wait_for(lambda: srv.get("/runs?status=completed&limit=1").total() == n, 60,
                      "%d completed runs" % n, interval=0.5)

    def test_conditions_and_registration_errors(self):
        srv = self.start_server()
        wf = self.register(srv, {"name": "e2e-if", "steps": [
            {"id": "a", "type": "transform", "config": {"expression": ".input.n"}},
            {"id": "big", "depends_on": ["a"], "if": ".steps.a.output > 10",
             "config": {"duration_seconds": 0}},
            {"id": "after_big", "depends_on": ["big"], "config": {"duration_seconds": 0}},
            {"id": "join", "type": "log", "depends_on": ["after_big"], "if": "true",
             "config": {"message": "n={{ .input.n }}"}}]})
        run = self.wait_run(srv, self.start_run(srv, wf, {"input": {"n": 3}}))
        self.assertEqual(run["status"], "completed")
        self.assertEqual([step(run, s)["status"] for s in ("a", "big", "after_big", "join")],
                         ["completed", "skipped", "skipped", "completed"])
        r = srv.post("/workflows", json_body={"name": "e2e-bad", "steps": [
            {"id": "a"}, {"id": "b", "depends_on": ["a"], "if": ".x |"}]})
        err = self.assertError(r, 422)
        self.assertIn("steps[1].if: jq: syntax error", err["message"])


if __name__ == "__main__":
    su.main()
