#!/usr/bin/env python3
"""Pausing and resuming runs over HTTP (issue 14 item 4): POST
/runs/{id}/pause and /runs/{id}/resume, on the real server.

  - a run paused while its first step runs: that step finishes (its
    outcome recorded), the next one does not start; the server is killed
    (SIGKILL) while the step still runs and started again: the run is still
    paused, the step that was running runs again and completes, nothing new
    starts; resumed, the run completes, its next steps started after
    run_resumed;
  - a step failing with retries left: its next attempt does not start while
    the run is paused, and starts once it is resumed;
  - an approval decided while paused is recorded (the step completes), the
    step after it waits for the resume;
  - GET /runs?status=paused lists the paused run; the CLI's `durable pause`
    and `durable resume --server`;
  - refusals: pause of a paused or finished run and resume of a run that is
    not paused (409), an unknown run (404), GET on the routes (405).

Restarting a finished run from a step, POST /runs/{id}/restart:

  - a completed run restarted from a middle step: a new run linked to the
    original (restarted_from), the steps before and beside it kept with the
    original's outputs (copied_from, no step_started), the step and its
    dependents run again under the new run's idempotency keys; the server
    is killed (SIGKILL) while the restarted step runs and started again:
    the new run completes and the kept steps never ran; the original is
    unchanged; the same through `durable restart --server URL RUN --from`;
  - a failed run restarted from its failed step fails again, its other
    steps kept;
  - hostile input: an unknown step (400, suggesting the closest id), a blank
    or missing from_step, a from_step that is not a string or too long, an
    unknown field, a body that is not JSON (400); an unfinished run (409),
    an unknown run (404).

With --pg the server runs on the PostgreSQL database of DURABLE_TEST_PG.

Usage: test_runctl.py --durable PATH --examples DIR [--pg]
"""
import subprocess
import time

import server_util as su
from server_util import task

CHAIN = {
    "name": "pause-chain",
    "steps": [task("a", 3.0), task("b", 0.1, ["a"]), task("c", 0.1, ["b"])],
}
RETRIES = {
    "name": "pause-retries",
    "steps": [dict(task("f", 0.05, fail_probability=1.0),
                   retry={"max_attempts": 5, "initial_interval_seconds": 1.0,
                          "backoff_coefficient": 1.0})],
}
APPROVAL = {
    "name": "pause-approval",
    "steps": [{"id": "ok", "type": "approval", "config": {}}, task("after", 0.05, ["ok"])],
}
def url(srv):
    return "http://%s:%d" % (srv.host, srv.port)


# How long a step that must not start is watched (its start would come in
# milliseconds when the run is not paused).
QUIET = 1.5


class PauseTest(su.ServerTest):

    def step(self, run, step_id):
        return [s for s in run["steps"] if s["step_id"] == step_id][0]

    def pause(self, srv, run_id, code=200):
        r = srv.post("/runs/%s/pause" % run_id)
        if code == 200:
            self.assertOk(r)
            return r.json()
        return self.assertError(r, code)

    def resume(self, srv, run_id, code=200):
        r = srv.post("/runs/%s/resume" % run_id)
        if code == 200:
            self.assertOk(r)
            return r.json()
        return self.assertError(r, code)

    def assert_stays(self, srv, run_id, step_id, status):
        """step_id keeps status (and the run stays paused) for QUIET seconds."""
        end = time.monotonic() + QUIET
        while time.monotonic() < end:
            run = self.run_json(srv, run_id)
            self.assertEqual(run["status"], "paused", run)
            self.assertEqual(self.step(run, step_id)["status"], status, run)
            time.sleep(0.1)

    def test_pause_survives_sigkill(self):
        srv = self.start_server()
        self.register(srv, CHAIN)
        run_id = self.start_run(srv, "pause-chain")["id"]
        self.wait_for(lambda: self.step(self.run_json(srv, run_id), "a")["status"] == "running",
                      10, "step a to run")
        paused = self.pause(srv, run_id)
        self.assertEqual(paused["status"], "paused")
        self.assertEqual(self.step(paused, "a")["status"], "running")
        # Killed while a still runs (3 s): recovery runs it again, paused.
        srv.kill()
        srv.start()
        run = self.run_json(srv, run_id)
        self.assertEqual(run["status"], "paused", run)
        self.wait_for(lambda: self.step(self.run_json(srv, run_id), "a")["status"] == "completed",
                      30, "step a to complete while paused")
        self.assert_stays(srv, run_id, "b", "pending")
        # And again, killed with a ready step held: still nothing starts.
        srv.kill()
        srv.start()
        self.assert_stays(srv, run_id, "b", "pending")
        listed = srv.get("/runs?status=paused")
        self.assertOk(listed)
        self.assertIn(run_id, [r["id"] for r in listed.json()], listed)
        self.pause(srv, run_id, 409)
        resumed = self.resume(srv, run_id)
        self.assertNotEqual(resumed["status"], "paused", resumed)
        done = self.wait_run(srv, run_id)
        self.assertEqual(done["status"], "completed", done)
        evs = self.events(srv, run_id)
        types = [e["type"] for e in evs]
        self.assertEqual(types.count("run_paused"), 1, su.format_events(evs))
        self.assertEqual(types.count("run_resumed"), 1, su.format_events(evs))
        resumed_at = types.index("run_resumed")
        b_start = [i for i, e in enumerate(evs)
                   if e["type"] == "step_started" and e["step_id"] == "b"]
        self.assertEqual(len(b_start), 1, su.format_events(evs))
        self.assertGreater(b_start[0], resumed_at, su.format_events(evs))
        self.assertEqual(evs[resumed_at]["data"], {})
        # A finished run is neither paused nor resumed.
        self.pause(srv, run_id, 409)
        self.resume(srv, run_id, 409)

    def test_retry_waits_for_resume(self):
        srv = self.start_server()
        self.register(srv, RETRIES)
        run_id = self.start_run(srv, "pause-retries")["id"]
        self.wait_for(lambda: self.step(self.run_json(srv, run_id), "f")["status"] == "retrying",
                      10, "step f to retry")
        self.pause(srv, run_id)
        attempt = self.step(self.run_json(srv, run_id), "f")["attempt"]
        end = time.monotonic() + QUIET + 1.0  # past the 1 s back-off
        while time.monotonic() < end:
            run = self.run_json(srv, run_id)
            self.assertEqual(self.step(run, "f")["attempt"], attempt, run)
            time.sleep(0.1)
        self.resume(srv, run_id)
        self.wait_for(lambda: self.step(self.run_json(srv, run_id), "f")["attempt"] > attempt,
                      10, "the next attempt after the resume")
        self.assertOk(srv.post("/runs/%s/cancel" % run_id))

    def test_decision_while_paused(self):
        srv = self.start_server()
        self.register(srv, APPROVAL)
        run_id = self.start_run(srv, "pause-approval")["id"]
        self.wait_run(srv, run_id, statuses=("waiting",))
        self.pause(srv, run_id)
        r = srv.post("/runs/%s/steps/ok/approve" % run_id, {"by": "ann"})
        self.assertOk(r)
        self.assertEqual(self.step(r.json(), "ok")["status"], "completed", r)
        self.assert_stays(srv, run_id, "after", "pending")
        # Through the CLI this time.
        out = subprocess.run([su.DURABLE, "resume", "--server", url(srv), run_id],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out)
        self.assertIn("resumed", out.stdout)
        done = self.wait_run(srv, run_id)
        self.assertEqual(done["status"], "completed", done)

    def test_refusals_and_cli(self):
        srv = self.start_server()
        self.register(srv, CHAIN)
        run_id = self.start_run(srv, "pause-chain")["id"]
        self.resume(srv, run_id, 409)
        out = subprocess.run([su.DURABLE, "pause", "--server", url(srv), run_id],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out)
        self.assertIn("paused", out.stdout)
        self.assertEqual(self.run_json(srv, run_id)["status"], "paused")
        err = self.pause(srv, run_id, 409)
        self.assertIn("paused", err["message"])
        out = subprocess.run([su.DURABLE, "pause", "--server", url(srv), run_id],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out)
        self.pause(srv, "run_nope", 404)
        self.resume(srv, "run_nope", 404)
        self.assertStatus(srv.get("/runs/%s/pause" % run_id), 405)
        r = srv.get("/runs?status=pausd")
        err = self.assertError(r, 400)
        self.assertIn("paused", err["message"])
        self.assertOk(srv.post("/runs/%s/cancel" % run_id))
        self.assertEqual(self.run_json(srv, run_id)["status"], "cancelled")
        self.resume(srv, run_id, 409)

RESTART = {
    "name": "restart-chain",
    "steps": [task("a", 0.05), task("side", 0.05), task("b", 2.0, ["a"]),
              task("c", 0.05, ["b", "side"])],
}
FAILING = {
    "name": "restart-fails",
    "steps": [task("prep", 0.05), task("flaky", 0.05, ["prep"], fail_probability=1.0,
                                       max_retries=0), task("after", 0.05, ["flaky"])],
}


class RestartTest(su.ServerTest):

    def restart(self, srv, run_id, body, code=202):
        r = srv.post("/runs/%s/restart" % run_id, body)
        if code == 202:
            self.assertOk(r, 202)
            return r.json()
        return self.assertError(r, code)

    def by_step(self, evs, step_id, typ):
        return [e for e in evs if e["step_id"] == step_id and e["type"] == typ]

    def test_restart_survives_sigkill(self):
        srv = self.start_server()
        self.register(srv, RESTART)
        orig = self.start_run(srv, "restart-chain")["id"]
        self.assertEqual(self.wait_run(srv, orig)["status"], "completed")
        orig_events = self.events(srv, orig)
        new = self.restart(srv, orig, {"from_step": "b"})
        self.assertNotEqual(new["id"], orig)
        self.assertEqual(new["restarted_from"], {"run_id": orig, "step_id": "b"})
        self.assertEqual(new["input"], self.run_json(srv, orig)["input"])
        kept = {s["step_id"]: s for s in new["steps"]}
        self.assertEqual(kept["a"]["status"], "completed")
        self.assertEqual(kept["side"]["status"], "completed")
        self.assertIn(kept["c"]["status"], ("pending",))
        self.wait_for(lambda: self.step_status(srv, new["id"], "b") == "running", 10,
                      "the restarted step to run")
        srv.kill()
        srv.start()
        done = self.wait_run(srv, new["id"])
        self.assertEqual(done["status"], "completed", done)
        self.assertEqual(done["restarted_from"], {"run_id": orig, "step_id": "b"})
        evs = self.events(srv, new["id"])
        for step in ("a", "side"):
            self.assertEqual(self.by_step(evs, step, "step_started"), [], su.format_events(evs))
            copied = self.by_step(evs, step, "step_completed")
            self.assertEqual(len(copied), 1, su.format_events(evs))
            self.assertEqual(copied[0]["data"]["copied_from"], orig)
            original = self.by_step(orig_events, step, "step_completed")[0]
            self.assertEqual(copied[0]["data"]["output"], original["data"]["output"])
        for step in ("b", "c"):
            started = self.by_step(evs, step, "step_started")
            self.assertGreaterEqual(len(started), 1, su.format_events(evs))
            self.assertEqual(started[0]["data"]["idempotency_key"], "%s/%s" % (new["id"], step))
            self.assertNotIn("copied_from", self.by_step(evs, step, "step_completed")[0]["data"])
        # The original is unchanged, and has no restarted_from of its own.
        self.assertEqual(self.events(srv, orig), orig_events)
        self.assertNotIn("restarted_from", self.run_json(srv, orig))
        # Through the CLI, from the last step: only it runs again.
        out = subprocess.run([su.DURABLE, "restart", "--server", url(srv), orig, "--from", "c"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out)
        new2 = out.stdout.split(" as run ")[1].split()[0]
        done2 = self.wait_run(srv, new2)
        self.assertEqual(done2["status"], "completed", done2)
        evs2 = self.events(srv, new2)
        self.assertEqual([e["step_id"] for e in evs2 if e["type"] == "step_started"], ["c"],
                         su.format_events(evs2))
        out = subprocess.run([su.DURABLE, "restart", "--server", url(srv), orig],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 2, out)
        self.assertIn("--from", out.stderr)

    def step_status(self, srv, run_id, step_id):
        run = self.run_json(srv, run_id)
        return [s for s in run["steps"] if s["step_id"] == step_id][0]["status"]

    def test_restart_failed_run(self):
        srv = self.start_server()
        self.register(srv, FAILING)
        orig = self.start_run(srv, "restart-fails")["id"]
        self.assertEqual(self.wait_run(srv, orig)["status"], "failed")
        new = self.restart(srv, orig, {"from_step": "flaky"})
        done = self.wait_run(srv, new["id"])
        self.assertEqual(done["status"], "failed", done)
        evs = self.events(srv, new["id"])
        self.assertEqual(self.by_step(evs, "prep", "step_started"), [], su.format_events(evs))
        self.assertEqual(len(self.by_step(evs, "flaky", "step_started")), 1,
                         su.format_events(evs))

    def test_restart_hostile_input(self):
        srv = self.start_server()
        self.register(srv, RESTART)
        run = self.start_run(srv, "restart-chain")["id"]
        err = self.restart(srv, run, {"from_step": "b"}, 409)
        self.assertIn("finished", err["message"])
        self.wait_run(srv, run)
        err = self.restart(srv, run, {"from_step": "sdie"}, 400)
        self.assertIn('did you mean "side"', err["message"])
        err = self.restart(srv, run, {"from_step": "zzzzzz"}, 400)
        self.assertIn("zzzzzz", err["message"])
        self.assertNotIn("did you mean", err["message"])
        err = self.restart(srv, run, {"from_step": ""}, 400)
        self.assertIn("from_step", err["message"])
        self.assertIn("from_step", self.restart(srv, run, {}, 400)["message"])
        self.assertIn("from_step", self.restart(srv, run, {"from_step": 5}, 400)["message"])
        self.restart(srv, run, {"from_step": "b" * 300}, 400)
        err = self.restart(srv, run, {"from_step": "b", "form_step": "b"}, 400)
        self.assertIn("form_step", err["message"])
        r = srv.request("POST", "/runs/%s/restart" % run, body=b"{from_step",
                        headers={"Content-Type": "application/json"})
        self.assertError(r, 400)
        self.restart(srv, "run_nope", {"from_step": "b"}, 404)
        # Nothing was created by any of them.
        listed = srv.get("/runs?workflow_id=restart-chain")
        self.assertOk(listed)
        self.assertEqual(len(listed.json()), 1, listed)


if __name__ == "__main__":
    su.main()
