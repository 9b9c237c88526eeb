#!/usr/bin/env python3
"""Crash test of `durable serve` (SPEC §5, issue 3): SIGKILL the server while
50 runs are in flight, start it again on the same database, and check that
every run completes and every order is shipped exactly once.

The flow is the order flow of examples/slow-order.json with shorter steps
(about 4.5 s end to end) and the four actions. Each of the 50 runs has its
own order and idempotency key. The server is killed three times at seeded
random moments (after the starts, then after each of two restarts); after each kill
the database is copied as the kill left it (the state the restart finds).
After the last restart, over HTTP:
  - every run completed, its order (GET /orders/{id}) is shipped;
  - GET /runs/{id}/events: seq 1..n without gaps, each action_applied
    exactly once, each step completed exactly once;
  - the history at each kill is a prefix of the final one, a step completed
    before a kill never started again, and a run unfinished at a kill has a
    `recovered` event after it;
  - starting again with the same idempotency keys returns the same runs
    (200) and creates nothing;
then the server stops cleanly and PRAGMA integrity_check is ok. Before the
first kill, GET /events/stream shows the runs' events with global ids that
follow each other without a gap.

With --pg the server runs on the PostgreSQL database of DURABLE_TEST_PG
(tests/pg_server.py starts one); the state at each kill is read with psql.

Usage: test_crash_server.py --durable PATH --examples DIR [--seed S] [--pg]
"""
import collections
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import unittest

import server_util as su
from server_util import task

N_RUNS = 50
ACTIONS = ["validate_order", "charge_payment", "ship_order", "send_notification"]
UNFINISHED = ("pending", "running", "waiting")
FLOW = {
    "name": "crash-order",
    "description": "the order flow in about 4.5 s, killed while 50 runs are in flight",
    "steps": [
        task("validate", 1.0, action="validate_order"),
        task("reserve", 1.5, ["validate"]),
        task("charge", 2.0, ["validate"], action="charge_payment"),
        task("ship", 1.0, ["charge", "reserve"], action="ship_order"),
        task("notify", 0.5, ["ship"], action="send_notification"),
    ],
}
SEED = None


psql_rows = su.psql_rows


def snapshot_pg(url):
    runs = {r: (st, []) for r, st in psql_rows(url, "SELECT id, status FROM runs")}
    for run_id, seq, typ, step in psql_rows(
            url, "SELECT run_id, seq, type, coalesce(step_id, '') FROM events"
            " ORDER BY run_id, seq"):
        runs[run_id][1].append((int(seq), typ, step or None))
    return runs


def snapshot(db, dest):
    """Copies the database files as the kill left them and reads the copy:
    {run_id: (status, [(seq, type, step_id)])}. PostgreSQL's is read as
    the kill left it."""
    if su.is_pg(db):
        return snapshot_pg(db)
    os.makedirs(dest, exist_ok=True)
    copy = os.path.join(dest, os.path.basename(db))
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(db + suffix):
            shutil.copyfile(db + suffix, copy + suffix)
    con = sqlite3.connect(copy, timeout=10)
    try:
        runs = {r: (st, []) for r, st in con.execute("SELECT id, status FROM runs")}
        for run_id, seq, typ, step in con.execute(
                "SELECT run_id, seq, type, step_id FROM events ORDER BY run_id, seq"):
            runs[run_id][1].append((seq, typ, step))
    finally:
        con.close()
    return runs


class CrashServerTest(su.ServerTest):

    def kill_at(self, srv, delay, label):
        time.sleep(delay)
        rc = srv.kill()
        self.assertEqual(rc, -9, "%s: the server was still running when killed%s"
                         % (label, srv.describe()))
        snap = snapshot(srv.db, self.path("snap-" + label))
        unfinished = sum(1 for st, _ in snap.values() if st in UNFINISHED)
        su.log("%s: killed %.2fs in, %d of %d runs unfinished" % (label, delay, unfinished,
                                                                   len(snap)))
        return snap, unfinished

    def test_sigkill_with_50_runs_in_flight(self):
        rng = random.Random(SEED)
        srv = self.start_server()
        t0 = time.monotonic()
        self.register(srv, FLOW, expect=(201,))
        stream = su.SSE(srv, "/events/stream")
        self.addCleanup(stream.close)
        self.assertEqual(stream.status, 200)
        runs = {}   # run id -> order id
        keys = {}   # run id -> idempotency key
        for i in range(N_RUNS):
            order = self.create_order(srv, 10 + i)
            run = self.start_run(srv, "crash-order", {"order_id": order["id"],
                                                      "idempotency_key": "crash-%d" % i})
            self.assertEqual(run["order_id"], order["id"])
            runs[run["id"]] = order["id"]
            keys[run["id"]] = "crash-%d" % i
        su.log("started %d runs in %.2fs" % (N_RUNS, time.monotonic() - t0))
        self.assertEqual(len(runs), N_RUNS)

        self.check_stream(stream, runs)
        snaps = []
        snap, unfinished = self.kill_at(srv, rng.uniform(0.3, 2.5), "kill1")
        self.assertGreater(unfinished, 0, "the first kill found no run in flight")
        snaps.append(("kill1", snap))
        srv.start()
        snap, _ = self.kill_at(srv, rng.uniform(0.5, 2.0), "kill2")
        snaps.append(("kill2", snap))
        srv.start()
        snap, _ = self.kill_at(srv, rng.uniform(2.0, 3.5), "kill3")
        snaps.append(("kill3", snap))
        srv.start()

        deadline = time.monotonic() + 60 * su.slow_factor()
        pending = set(runs)
        while pending and time.monotonic() < deadline:
            for run_id in list(pending):
                if self.run_json(srv, run_id)["status"] in su.FINISHED:
                    pending.discard(run_id)
            time.sleep(0.2)
        self.assertFalse(pending, "%d runs unfinished 60 s after the restart: %s"
                         % (len(pending), sorted(pending)[:5]))

        problems = []
        for run_id, order_id in sorted(runs.items()):
            p = self.check_run(srv, run_id, order_id, snaps)
            if p:
                problems.append("run %s:\n  %s" % (run_id, "\n  ".join(p)))
        self.assertGreater(self.n_recovered, 0, "no recovered event in any run")
        self.assertFalse(problems, "%d of %d runs broke the contract (seed %s):\n%s"
                         % (len(problems), N_RUNS, SEED, "\n\n".join(problems[:10])))

        # The same keys give the same runs, and nothing new.
        for run_id, order_id in list(runs.items())[::5]:
            r = srv.post("/workflows/crash-order/runs", {"order_id": order_id,
                                                         "idempotency_key": keys[run_id]})
            self.assertOk(r, 200)
            self.assertEqual(r.json()["id"], run_id, r)
        lst = srv.get("/runs?status=completed&limit=500")
        self.assertOk(lst)
        self.assertEqual(lst.total(), N_RUNS, lst)
        self.assertEqual(srv.get("/runs").total(), N_RUNS)
        orders = srv.get("/orders?limit=500")
        self.assertEqual(orders.total(), N_RUNS, orders)
        self.assertTrue(all(o["status"] == "shipped" for o in orders.json()), orders)

        self.assertEqual(srv.stop(), 0, "SIGTERM after recovery" + srv.describe())
        if not su.is_pg(srv.db):
            con = sqlite3.connect(srv.db)
            try:
                self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            finally:
                con.close()
        su.log("ok: %d runs, kills at seed %s, %d recovered events"
               % (N_RUNS, SEED, self.n_recovered))

    n_recovered = 0

    def check_stream(self, stream, runs):
        """The global stream shows every run's run_created, the global ids
        of its events following each other without a gap."""
        got, created = [], set()
        deadline = time.monotonic() + 20 * su.slow_factor()
        while not set(runs) <= created:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "run_created missing from the stream:\n"
                               + stream.transcript())
            ev = stream.next(left)
            self.assertIsNotNone(ev, "the stream ended:\n" + stream.transcript())
            got.append(ev)
            if isinstance(ev["data"], dict) and ev["data"].get("type") == "run_created":
                created.add(ev["data"].get("run_id"))
        ids = [int(e["id"]) for e in got]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))),
                         "global ids with a gap:\n" + stream.transcript())
        stream.close()

    def check_run(self, srv, run_id, order_id, snaps):
        problems = []
        bad = problems.append
        run = self.run_json(srv, run_id)
        if run["status"] != "completed":
            bad("status %r (error %s)" % (run["status"], run["error_message"]))
        if run["order_id"] != order_id:
            bad("order_id %r, not %r" % (run["order_id"], order_id))
        o = srv.get("/orders/%s" % order_id)
        if o.status != 200 or o.json().get("status") != "shipped":
            bad("order %s: %s %s" % (order_id, o.status, o.text[:200]))
        events = self.events(srv, run_id)
        seqs = [e["seq"] for e in events]
        if seqs != list(range(1, len(events) + 1)):
            bad("seq not 1..n without gaps: %s" % seqs)
        if not events or events[0]["type"] != "run_created" or events[-1]["type"] != "run_completed":
            bad("history does not go from run_created to run_completed")
        applied = collections.Counter(e["data"].get("action") for e in events
                                      if e["type"] == "action_applied")
        for a in ACTIONS:
            if applied[a] != 1:
                bad("action %s applied %d times" % (a, applied[a]))
        if set(applied) - set(ACTIONS):
            bad("unexpected actions %s" % (set(applied) - set(ACTIONS)))
        completed = collections.Counter(e["step_id"] for e in events
                                        if e["type"] == "step_completed")
        for s in FLOW["steps"]:
            if completed[s["id"]] != 1:
                bad("step %s completed %d times" % (s["id"], completed[s["id"]]))
        self.n_recovered += sum(1 for e in events if e["type"] == "recovered")
        final = [(e["seq"], e["type"], e["step_id"]) for e in events]
        for label, snap in snaps:
            if run_id not in snap:
                continue
            status, before = snap[run_id]
            if final[:len(before)] != before:
                bad("history at %s is not a prefix of the final history:\n%s"
                    % (label, "\n".join("    %s" % (x,) for x in before)))
                continue
            done = {s for _, t, s in before if t == "step_completed"}
            after = final[len(before):]
            again = [(q, s) for q, t, s in after if t == "step_started" and s in done]
            if again:
                bad("steps completed before %s started again: %s" % (label, again))
            if status in UNFINISHED and "recovered" not in [t for _, t, _ in after]:
                bad("%s at %s but no recovered event after it" % (status, label))
        if problems:
            problems.append("events:\n" + su.format_events(events))
        return problems


def main():
    global SEED

    def extra(ap):
        ap.add_argument("--seed", type=int,
                        default=int(os.environ.get("DURABLE_CRASH_SEED", "0")) or None)
    rest = su.parse_args(extra)
    SEED = su.ARGS.seed or random.SystemRandom().randrange(1, 2 ** 31)
    su.log("crash seed %d (rerun with --seed %d)" % (SEED, SEED))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
