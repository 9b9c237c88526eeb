#!/usr/bin/env python3
"""End-to-end test of code-first durable steps with the onboarding demo
(examples/c/onboarding.c), a program linked against libdurable:

- --crash-after STEP for every step (the program SIGKILLs itself once STEP
  is recorded), then run again: every step ran once, steps recorded before
  the crash print "recorded, not run again", the run completes;
- an outside SIGKILL while each step is running (its side effect, a line
  with its idempotency key, is in the effects file), then run again: each
  step's effect is observed once, except the steps running at the kill
  (the laptop and the access run in parallel), seen twice under the same
  idempotency key;
- `durable show` on the database lists the run's steps in call order.

- on PostgreSQL (--pg), beside a `durable serve` node without the code: the
  demo killed, the server reaps it but leaves its run, which the demo
  started again completes.

Usage: test_onboarding.py --onboarding PATH --durable PATH [--pg] [unittest args]
"""
import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "server"))
import server_util as su  # noqa: E402  (psql_rows, pg_test_db)

STEPS = ["create_record", "provision_laptop", "setup_access", "send_welcome"]
# The steps recorded once each step is, and the steps running together:
# the laptop and the access run in parallel.
DONE_WITH = {"create_record": STEPS[:1], "provision_laptop": STEPS[:3],
             "setup_access": STEPS[:3], "send_welcome": STEPS}
RUNNING_WITH = {"create_record": ["create_record"],
                "provision_laptop": ["provision_laptop", "setup_access"],
                "send_welcome": ["send_welcome"]}
SPEED = "20"  # the demo's 8.5 s of steps in about 0.4 s
ARGS = None


def effects(path):
    """The effects file's idempotency keys, in order."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


class OnboardingTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.db = os.path.join(self.tmp.name, "ob.db")
        self.eff = os.path.join(self.tmp.name, "effects.txt")

    def tearDown(self):
        self.tmp.cleanup()

    def cmd(self, *extra):
        return [ARGS.onboarding, "--db", self.db, "--effects", self.eff,
                "--speed", SPEED] + list(extra)

    def run_demo(self, *extra):
        return subprocess.run(self.cmd(*extra), capture_output=True, text=True, timeout=60)

    def assert_completes_once(self, out, recorded):
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for s in STEPS:
            word = "recorded, not run again" if s in recorded else "ran"
            self.assertIn("%s: %s\n" % (s, word), out.stdout)
        self.assertIn("completed", out.stdout)

    def test_crash_after_each_step(self):
        for step in STEPS:
            with self.subTest(step=step):
                self.setUp()
                out = self.run_demo("--crash-after", step)
                self.assertEqual(out.returncode, -signal.SIGKILL, out.stderr)
                self.assertIn("crashing after %s" % step, out.stdout)
                out = self.run_demo()
                self.assert_completes_once(out, DONE_WITH[step])
                keys = effects(self.eff)
                self.assertEqual(sorted(k.split("/", 1)[1] for k in keys), sorted(STEPS))
                self.assertEqual(len(set(k.split("/", 1)[0] for k in keys)), 1)
                self.tearDown()

    def test_sigkill_while_each_step_runs(self):
        for step, running in RUNNING_WITH.items():
            with self.subTest(step=step):
                self.setUp()
                # slow enough to be killed inside the step
                p = subprocess.Popen(self.cmd()[:-2] + ["--speed", "2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                deadline = time.monotonic() + 30
                # every step of `running` has begun (the parallel two are
                # started one after the other, not at the same instant)
                while not all(any(k.endswith("/" + s) for k in effects(self.eff))
                              for s in running):
                    self.assertLess(time.monotonic(), deadline, "step never started")
                    self.assertIsNone(p.poll(), "the demo ended before the step")
                    time.sleep(0.02)
                p.send_signal(signal.SIGKILL)
                p.communicate(timeout=30)
                out = self.run_demo()
                self.assert_completes_once(out, STEPS[:STEPS.index(step)])
                keys = effects(self.eff)
                for s in STEPS:
                    n = sum(1 for k in keys if k.endswith("/" + s))
                    self.assertEqual(n, 2 if s in running else 1, (s, keys))
                self.tearDown()

    def test_show_lists_steps(self):
        out = self.run_demo()
        self.assert_completes_once(out, [])
        run_id = out.stdout.split("run ", 1)[1].split()[0]
        show = subprocess.run([ARGS.durable, "show", run_id, "--db", self.db],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(show.returncode, 0, show.stderr)
        pos = [show.stdout.find(s) for s in STEPS]
        self.assertTrue(all(p >= 0 for p in pos), show.stdout)
        self.assertEqual(pos, sorted(pos), show.stdout)

    def test_parallel(self):
        """The laptop and the access overlap in time, both after the record
        and before the email, which depends on both."""
        out = self.run_demo("--speed", "4")
        self.assert_completes_once(out, [])
        con = sqlite3.connect(self.db)
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT step_id, idx, depends_on, started_at, completed_at FROM steps")}
        con.close()
        self.assertEqual([rows[s][0] for s in STEPS], [0, 1, 2, 3])
        laptop, access = rows["provision_laptop"], rows["setup_access"]
        self.assertLess(laptop[2], access[3])
        self.assertLess(access[2], laptop[3])
        self.assertEqual(json.loads(rows["send_welcome"][1]),
                         ["provision_laptop", "setup_access"])
        self.assertEqual(json.loads(laptop[1]), ["create_record"])


class ClusterTest(unittest.TestCase):
    """On PostgreSQL (--pg, under tests/pg_server.py), beside a `durable
    serve` node that has no code: the demo is SIGKILLed after its first
    step; once its lease has run out, the server reaps the dead node but
    does not take the run (it could not execute it); the demo started again
    claims it and completes it, the first step recorded, not run again."""

    LEASE_S = 10  # the demo's: the library's default lease

    def setUp(self):
        if not ARGS.pg:
            self.skipTest("needs --pg")
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.url = su.pg_test_db(self.tmp.name)
        self.eff = os.path.join(self.tmp.name, "effects.txt")

    def run_demo(self, *extra):
        return subprocess.run([ARGS.onboarding, "--db", self.url, "--effects", self.eff,
                               "--speed", SPEED] + list(extra),
                              capture_output=True, text=True, timeout=120)

    def test_server_without_the_code_leaves_the_run(self):
        log = open(os.path.join(self.tmp.name, "serve.err"), "w")
        self.addCleanup(log.close)
        srv = subprocess.Popen([ARGS.durable, "serve", "--db", self.url, "--listen",
                                "127.0.0.1:0", "--node", "srv", "--lease", "2s"],
                               stdout=subprocess.DEVNULL, stderr=log)
        self.addCleanup(srv.wait)
        self.addCleanup(srv.terminate)
        out = self.run_demo("--crash-after", "create_record")
        self.assertEqual(out.returncode, -signal.SIGKILL, out.stdout + out.stderr)
        # The dead demo's lease runs out; the server reaps it (its heartbeat
        # every 2/3 s) and would claim the run at once.
        deadline = time.monotonic() + self.LEASE_S * 4
        while time.monotonic() < deadline:
            rows = su.psql_rows(self.url, "SELECT count(*) FROM nodes WHERE state = 'dead'")
            if rows[0][0] != "0":
                break
            time.sleep(0.5)
        self.assertNotEqual(rows[0][0], "0", "the dead demo was never reaped")
        time.sleep(2)  # time for the server's claim, had it made one
        owners = su.psql_rows(self.url, "SELECT coalesce(owner_node, '-') FROM runs")
        self.assertEqual(owners, [["-"]], "the server took a run it cannot execute")
        self.assertIsNone(srv.poll())
        out = self.run_demo()
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("create_record: recorded, not run again", out.stdout)
        self.assertIn("send_welcome: ran", out.stdout)
        self.assertEqual(effects(self.eff).count(effects(self.eff)[0]), 1)

    def test_run_started_through_the_server_goes_to_the_program(self):
        """A run of the demo's workflow started over HTTP through the server
        (which has no code for it) is released at once, not kept; the demo,
        started with the run's idempotency key, claims it and completes it,
        each step's effect once."""
        out = self.run_demo("--employee", "first")  # registers onboarding@1
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        srv = su.Server(self.tmp.name, db=self.url, args=["--node", "srv", "--lease", "2s"])
        srv.start()
        self.addCleanup(srv.stop)
        r = srv.post("/workflows/onboarding/runs",
                     json_body={"input": {"employee": "e-7"}, "idempotency_key": "e-7"})
        self.assertEqual(r.status, 202, r)
        run_id = r.json()["id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            owners = su.psql_rows(self.url, "SELECT coalesce(owner_node, '-') FROM runs"
                                            " WHERE id = '%s'" % run_id)
            if owners == [["-"]]:
                break
            time.sleep(0.2)
        self.assertEqual(owners, [["-"]], "the server kept a run it cannot execute")
        out = self.run_demo("--employee", "e-7")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("run %s completed" % run_id, out.stdout)
        for s in STEPS:
            self.assertIn("%s: ran\n" % s, out.stdout)
        self.assertEqual(srv.get("/runs/" + run_id).json()["status"], "completed")
        mine = [k for k in effects(self.eff) if run_id in k]
        self.assertEqual(len(mine), len(STEPS), mine)
        self.assertEqual(len(set(mine)), len(STEPS), mine)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--onboarding", required=True)
    ap.add_argument("--durable", required=True)
    ap.add_argument("--pg", action="store_true",
                    help="also the cluster test, on DURABLE_TEST_PG (tests/pg_server.py)")
    ARGS, rest = ap.parse_known_args()
    su.DURABLE = os.path.abspath(ARGS.durable)
    unittest.main(argv=[sys.argv[0]] + rest)
