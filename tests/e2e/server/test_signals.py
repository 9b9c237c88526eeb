#!/usr/bin/env python3
"""Signals over HTTP (issue 14 item 4): POST /runs/{id}/signals/{name} and
the `wait_signal` step type, on the real server.

  - a run waits in a wait_signal step; the server is killed (SIGKILL) and
    started again; the signal sent then completes the step with its
    payload, and the step after it reads the payload;
  - a signal sent before its step is reached is kept (202, taken_by null)
    and taken when the step starts; an empty body is the payload null; the
    same through `durable signal --server URL RUN NAME [JSON]`;
  - a wait_signal step with a timeout and no signal fails with code
    timeout, and a signal to the finished run is 409;
  - hostile input: a bad name (404 or 400), a body that is not JSON (400),
    a body over 1 MiB (413), an unknown run (404), a definition whose
    wait_signal has no signal name (422 naming the field).

With --pg the server runs on the PostgreSQL database of DURABLE_TEST_PG.

Usage: test_signals.py --durable PATH --examples DIR [--pg]
"""
import json
import subprocess

import server_util as su

WAITER = {
    "name": "signal-waiter",
    "steps": [
        {"id": "approval", "type": "wait_signal", "config": {"signal": "approved"}},
        {"id": "after", "type": "transform", "depends_on": ["approval"],
         "config": {"expression": "{by: .steps.approval.output.by}"}},
    ],
}
LATE = {
    "name": "signal-late",
    "steps": [
        {"id": "nap", "type": "delay", "config": {"seconds": 1.0}},
        {"id": "go", "type": "wait_signal", "depends_on": ["nap"], "config": {"signal": "go"}},
    ],
}
TIMEOUT = {
    "name": "signal-timeout",
    "steps": [
        {"id": "w", "type": "wait_signal", "config": {"signal": "never", "timeout": 0.3}},
    ],
}


class SignalTest(su.ServerTest):

    def signal(self, srv, run_id, name, body):
        return srv.request("POST", "/runs/%s/signals/%s" % (run_id, name), body=body,
                           headers={"Content-Type": "application/json"})

    def step(self, run, step_id):
        return [s for s in run["steps"] if s["step_id"] == step_id][0]

    def test_signal_after_sigkill(self):
        srv = self.start_server()
        self.register(srv, WAITER)
        run = self.start_run(srv, "signal-waiter")
        run = self.wait_run(srv, run["id"], statuses=("waiting",))
        self.assertEqual(self.step(run, "approval")["status"], "waiting")
        srv.kill()
        srv.start()
        self.assertEqual(self.run_json(srv, run["id"])["status"], "waiting")
        r = self.signal(srv, run["id"], "approved", b'{"by": "ann"}')
        self.assertOk(r, 202)
        sig = r.json()
        self.assertEqual(sig["name"], "approved")
        self.assertEqual(sig["run_id"], run["id"])
        self.assertTrue(sig["id"].startswith("sig_"), sig)
        self.assertEqual(sig["taken_by"], "approval")
        done = self.wait_run(srv, run["id"])
        self.assertEqual(done["status"], "completed", done)
        self.assertEqual(self.step(done, "approval")["output"], {"by": "ann"})
        self.assertEqual(self.step(done, "after")["output"], {"by": "ann"})
        evs = self.events(srv, run["id"])
        received = [e for e in evs if e["type"] == "signal_received"]
        self.assertEqual(len(received), 1, su.format_events(evs))
        self.assertEqual(received[0]["seq"], sig["seq"])
        self.assertEqual(received[0]["data"]["payload"], {"by": "ann"})
        # Finished: a signal is refused.
        self.assertError(self.signal(srv, run["id"], "approved", b"1"), 409)

    def test_signal_before_step_is_reached(self):
        srv = self.start_server()
        self.register(srv, LATE)
        run = self.start_run(srv, "signal-late")
        r = self.signal(srv, run["id"], "go", b"")
        self.assertOk(r, 202)
        self.assertIsNone(r.json()["taken_by"])
        done = self.wait_run(srv, run["id"])
        self.assertEqual(done["status"], "completed", done)
        self.assertIsNone(self.step(done, "go")["output"])
        self.assertEqual(self.step(done, "go")["status"], "completed")
        # The command line: kept, then taken with its payload.
        url = "http://%s:%d" % (srv.host, srv.port)
        run = self.start_run(srv, "signal-late")
        p = subprocess.run([su.DURABLE, "signal", "--server", url, run["id"], "go", '{"n": 7}'],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("kept until a step waits for it", p.stdout)
        done = self.wait_run(srv, run["id"])
        self.assertEqual(self.step(done, "go")["output"], {"n": 7})
        p = subprocess.run([su.DURABLE, "signal", "--server", url, run["id"], "go"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("409", p.stderr)
        p = subprocess.run([su.DURABLE, "signal", "--server", url, run["id"]],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("NAME is required", p.stderr)

    def test_timeout(self):
        srv = self.start_server()
        self.register(srv, TIMEOUT)
        run = self.start_run(srv, "signal-timeout")
        done = self.wait_run(srv, run["id"])
        self.assertEqual(done["status"], "failed", done)
        failed = [e for e in self.events(srv, run["id"]) if e["type"] == "step_failed"]
        self.assertEqual(failed[-1]["data"]["code"], "timeout")
        self.assertError(self.signal(srv, run["id"], "never", b"1"), 409)

    def test_hostile_input(self):
        srv = self.start_server()
        self.register(srv, WAITER)
        run = self.start_run(srv, "signal-waiter")["id"]
        self.wait_run(srv, run, statuses=("waiting",))
        err = self.assertError(self.signal(srv, run, "n" * 65, b"1"), 400)
        self.assertIn("[A-Za-z0-9_.-]", err["message"])
        self.assertError(self.signal(srv, run, "bad!name", b"1"), 400, 404)
        err = self.assertError(self.signal(srv, run, "approved", b"{nope"), 400)
        self.assertIn("not JSON", err["message"])
        self.assertError(self.signal(srv, run, "approved", b"[" + b"1," * (600 * 1024) + b"1]"),
                         413)
        self.assertError(self.signal(srv, "run_nope", "approved", b"1"), 404)
        # None of them was kept: the run still waits.
        self.assertEqual(self.run_json(srv, run)["status"], "waiting")
        bad = {"name": "no-name", "steps": [{"id": "w", "type": "wait_signal", "config": {}}]}
        r = srv.post("/workflows", bad)
        self.assertError(r, 422)
        self.assertIn("steps[0].config.signal", json.dumps(r.json()))


if __name__ == "__main__":
    su.main()
