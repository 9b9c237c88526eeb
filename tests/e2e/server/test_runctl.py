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


if __name__ == "__main__":
    su.main()
