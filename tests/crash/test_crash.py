#!/usr/bin/env python3
"""Crash tests: the durability contract of SPEC §5 under SIGKILL.

Part A kills single runs of examples/slow-order.json (`durable run --order 10
--id kI`, about 8 s each) at many moments: at times spread over the run, and at
every commit through the failpoints writer.before_commit:N and
writer.after_commit:N (DURABLE_FAILPOINT, compiled in by DURABLE_FAILPOINTS);
a few cases again with --durability process, which must survive a process
crash too. Restarts use the same --id until exit 0.
Part B starts a batch of 30 concurrent runs through crash_driver (the public C
library), kills it at seeded random moments (a time, or a commit through a
failpoint) with resumes in between, then resumes it to the end; a fresh batch
follows while fewer than 8 kills happened before a batch finished.

After each kill the database is copied (db and WAL, as the kill left them);
after the restarts, every run is checked from the database:
  - it completed, and its order is shipped;
  - each action (validate_order, charge_payment, ship_order,
    send_notification) has exactly one action_applied event;
  - no step has more than one step_completed, and every step has one;
  - a step started only after all its depends_on completed;
  - attempts never go back nor pass max_attempts, and a retry starts no
    earlier than the wake_at of its back-off (timers survive restarts);
  - events seq is 1..n without gaps, and the history before a kill is a
    prefix of the final history (nothing rewritten);
  - a step completed before a kill got no step_started after the kill;
  - a run created but unfinished at a kill has a `recovered` event after it.

Usage: test_crash.py --durable PATH --driver PATH --examples DIR [--seed S]
The seed (printed) also comes from DURABLE_CRASH_SEED. Bounded to ~3 minutes.
"""
import argparse
import calendar
import collections
import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

DURABLE = DRIVER = EXAMPLES = None
SEED = None

ACTIONS = ["validate_order", "charge_payment", "ship_order", "send_notification"]
UNFINISHED = {"pending", "running", "waiting"}
FAILPOINTS = ["writer.before_commit", "writer.after_commit"]

A_TIME_KILLS = 12         # time-based kill moments, spread over A_SPREAD
A_SPREAD = (0.1, 8.0)     # seconds after the start of `durable run`
A_MAX_COMMIT = 16         # failpoint kills at commit 1..A_MAX_COMMIT (a run has ~14)
A_MIN_FAILPOINT_KILLS = 10  # per failpoint name: kills that really happened
A_MIN_KILLS = 20
B_RUNS = 30
B_KILLS = 10              # kills wanted per batch (at least B_MIN_KILLS in all)
B_MIN_KILLS = 8
B_MAX_PHASES = 14
B_MAX_ROUNDS = 4          # fresh batches while fewer than B_MIN_KILLS kills happened
PROC_TIMEOUT = 60         # one process, start to end
RESTARTS = 3              # restarts allowed after a kill until exit 0


def log(msg=""):
    print(msg, file=sys.stderr, flush=True)


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


class Db:
    """The tables of one database file, read at once."""

    def __init__(self, path):
        con = sqlite3.connect(path, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            q = lambda t, sql: [dict(r) for r in con.execute(sql)] if t in tables else []
            self.runs = q("runs", "SELECT * FROM runs ORDER BY created_at, id")
            self.steps = q("steps", "SELECT * FROM steps ORDER BY run_id, idx")
            self.events = q("events", "SELECT * FROM events ORDER BY run_id, seq")
            self.orders = q("orders", "SELECT * FROM orders ORDER BY created_at, id")
        finally:
            con.close()
        self._events = collections.defaultdict(list)
        for e in self.events:
            self._events[e["run_id"]].append(e)
        self._steps = collections.defaultdict(list)
        for s in self.steps:
            self._steps[s["run_id"]].append(s)

    def run(self, run_id):
        return next((r for r in self.runs if r["id"] == run_id), None)

    def run_by_key(self, key):
        return [r for r in self.runs if r["idempotency_key"] == key]

    def events_of(self, run_id):
        return self._events.get(run_id, [])

    def steps_of(self, run_id):
        return self._steps.get(run_id, [])

    def order(self, order_id):
        return next((o for o in self.orders if o["id"] == order_id), None)


def parse_ms(rfc3339):
    """Unix ms of "2026-11-22T13:05:01.123Z", None if absent."""
    if not rfc3339:
        return None
    t = time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S")
    frac = rfc3339[19:].rstrip("Z").lstrip(".") or "0"
    return calendar.timegm(t) * 1000 + int((frac + "000")[:3])


def snapshot(db, dest):
    """Copies the database as the kill left it (main file, WAL, rollback
    journal) and reads the copy: the state a restart will find. None when
    there is no database yet."""
    if not os.path.exists(db):
        return None
    os.makedirs(dest, exist_ok=True)
    copy = os.path.join(dest, os.path.basename(db))
    for suffix in ("", "-wal", "-journal"):
        if os.path.exists(db + suffix):
            shutil.copyfile(db + suffix, copy + suffix)
    return Db(copy)


def format_events(events):
    return "\n".join("    %3d %-16s %-18s %s" % (e["seq"], e["type"], e["step_id"] or "", e["data"])
                     for e in events)


def check_run(final, run_id, snaps, actions=ACTIONS):
    """Every invariant of one run. snaps: [(label, Db or None)] taken after
    each kill, oldest first. Returns a list of problems (empty when fine)."""
    problems = []
    bad = problems.append
    run = final.run(run_id)
    if run is None:
        return ["run %s is not in the database" % run_id]
    events = final.events_of(run_id)
    steps = final.steps_of(run_id)
    if run["status"] != "completed":
        bad("run status is %r, not completed (error: %s)" % (run["status"], run["error_message"]))
    seqs = [e["seq"] for e in events]
    if seqs != list(range(1, len(events) + 1)):
        bad("events seq is not 1..n without gaps: %s" % seqs)
    if not events or events[0]["type"] != "run_created":
        bad("the first event is not run_created")
    if not events or events[-1]["type"] != "run_completed":
        bad("the last event is not run_completed")
    order = final.order(run["order_id"]) if run["order_id"] else None
    if order is None:
        bad("run has no order")
    elif order["status"] != "shipped":
        bad("order %s is %r, not shipped" % (order["id"], order["status"]))
    applied = collections.Counter(json.loads(e["data"]).get("action") for e in events
                                  if e["type"] == "action_applied")
    for a in actions:
        if applied[a] != 1:
            bad("action %s applied %d times" % (a, applied[a]))
    for a in set(applied) - set(actions):
        bad("unexpected action %s applied %d times" % (a, applied[a]))
    completed = {}
    for e in events:
        if e["type"] == "step_completed":
            if e["step_id"] in completed:
                bad("step %s completed twice (seq %d and %d)"
                    % (e["step_id"], completed[e["step_id"]], e["seq"]))
            else:
                completed[e["step_id"]] = e["seq"]
    deps = {s["step_id"]: json.loads(s["depends_on"]) for s in steps}
    for s in steps:
        if s["status"] != "completed" or s["step_id"] not in completed:
            bad("step %s is %r with %s step_completed" % (
                s["step_id"], s["status"], "a" if s["step_id"] in completed else "no"))
    for e in events:
        if e["type"] == "step_started":
            for d in deps.get(e["step_id"], []):
                if d not in completed or completed[d] > e["seq"]:
                    bad("step %s started (seq %d) before its dependency %s completed"
                        % (e["step_id"], e["seq"], d))
    max_attempts = {s["step_id"]: s["max_attempts"] for s in steps}
    last_attempt = collections.defaultdict(int)
    wake = {}
    for e in events:
        data = json.loads(e["data"])
        if e["type"] == "retry_scheduled":
            wake[e["step_id"]] = parse_ms(data.get("wake_at"))
        if e["type"] != "step_started":
            continue
        attempt = data.get("attempt", 0)
        if attempt < last_attempt[e["step_id"]] or attempt > max_attempts.get(e["step_id"], 0):
            bad("step %s started attempt %s after attempt %s (max %s)" % (
                e["step_id"], attempt, last_attempt[e["step_id"]], max_attempts.get(e["step_id"])))
        last_attempt[e["step_id"]] = attempt
        if wake.get(e["step_id"]) and e["at"] < wake[e["step_id"]]:
            bad("step %s retried at seq %d, %d ms before its back-off ended"
                % (e["step_id"], e["seq"], wake[e["step_id"]] - e["at"]))
        wake.pop(e["step_id"], None)
    for label, snap in snaps:
        srun = snap.run(run_id) if snap else None
        if srun is None:
            continue
        sev = snap.events_of(run_id)
        key = lambda e: (e["seq"], e["type"], e["step_id"], e["data"])
        if [key(e) for e in events[:len(sev)]] != [key(e) for e in sev]:
            bad("history at kill %s is not a prefix of the final history; at the kill:\n%s"
                % (label, format_events(sev)))
            continue
        done_before = {e["step_id"] for e in sev if e["type"] == "step_completed"}
        after = events[len(sev):]
        for e in after:
            if e["type"] == "step_started" and e["step_id"] in done_before:
                bad("step %s completed before kill %s but started again (seq %d)"
                    % (e["step_id"], label, e["seq"]))
        if srun["status"] in UNFINISHED and "recovered" not in [e["type"] for e in after]:
            bad("run was %s at kill %s but has no recovered event after it"
                % (srun["status"], label))
        if srun["status"] not in UNFINISHED and after:
            bad("run had finished (%s) at kill %s but got %d more events"
                % (srun["status"], label, len(after)))
    if problems:
        problems.append("events of run %s:\n%s" % (run_id, format_events(events)))
    return problems


def run_bounded(cmd, out_path, env=None, timeout=PROC_TIMEOUT):
    """Runs cmd to the end, output appended to out_path. Returns its exit
    status (negative: killed by that signal), or "timeout"."""
    with open(out_path, "ab") as out:
        out.write(("$ %s\n" % " ".join(cmd)).encode())
        out.flush()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        out.write(("[exit %s]\n" % rc).encode())
    return rc


def clean_env(failpoint=None):
    env = dict(os.environ)
    env.pop("DURABLE_FAILPOINT", None)
    if failpoint:
        env["DURABLE_FAILPOINT"] = failpoint
    return env


# ---------------------------------------------------------------- part A

class Case:
    def __init__(self, tmp, index, label, kill_after=None, failpoint=None, durability=None):
        self.index, self.label, self.durability = index, label, durability
        self.kill_after, self.failpoint = kill_after, failpoint
        self.key = "k%d" % index
        self.dir = os.path.join(tmp, "a%02d" % index)
        os.makedirs(self.dir)
        self.db = os.path.join(self.dir, "run.db")
        self.out = os.path.join(self.dir, "output.txt")
        self.first_rc = None
        self.restart_rcs = []
        self.snap = None


def part_a_case(c, slow):
    """Runs, kills and restarts one case (in its own thread)."""
    cmd = [DURABLE, "run", slow, "--order", "10", "--id", c.key, "--db", c.db]
    if c.durability:
        cmd += ["--durability", c.durability]
    with open(c.out, "ab") as out:
        out.write(("$ %s   [%s]\n" % (" ".join(cmd), c.label)).encode())
        out.flush()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                             env=clean_env(c.failpoint), stdin=subprocess.DEVNULL)
        try:
            c.first_rc = p.wait(timeout=c.kill_after if c.kill_after else PROC_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            c.first_rc = p.wait()
        out.write(("[exit %s]\n" % c.first_rc).encode())
    c.snap = snapshot(c.db, os.path.join(c.dir, "snap"))
    for _ in range(RESTARTS):
        rc = run_bounded(cmd, c.out, env=clean_env())
        c.restart_rcs.append(rc)
        if rc == 0:
            break
    return c


def check_case(c):
    problems = []
    killed = c.first_rc == -signal.SIGKILL
    if not killed and c.first_rc != 0:
        problems.append("first run exited %s (neither killed nor completed)" % c.first_rc)
    if not c.restart_rcs or c.restart_rcs[-1] != 0:
        problems.append("restarts exited %s" % c.restart_rcs)
    if not os.path.exists(c.db):
        return problems + ["no database"]
    final = Db(c.db)
    runs = final.run_by_key(c.key)
    if len(runs) != 1:
        return problems + ["%d runs with key %s" % (len(runs), c.key)]
    run = runs[0]
    problems += check_run(final, run["id"], [(c.label, c.snap)] if killed else [])
    srun = c.snap.run_by_key(c.key) if c.snap else []
    output = read_text(c.out)
    restart_out = output.split("$ ", 2)[2] if output.count("$ ") >= 2 else ""
    if killed and srun:
        if len(final.orders) != len(c.snap.orders):
            problems.append("the restart created an order although the run existed"
                            " (%d orders before, %d after)" % (len(c.snap.orders), len(final.orders)))
        word = "resuming" if srun[0]["status"] in UNFINISHED else "already finished"
        if word not in restart_out:
            problems.append("the restart does not say %r" % word)
    summary = [l for l in restart_out.splitlines() if l.startswith("run ")]
    if not summary or not re.match(r"run %s completed in [0-9.]+s; order %s shipped$"
                                   % (run["id"], run["order_id"]), summary[-1]):
        problems.append("the restart's last line does not say the run completed and the order"
                        " shipped: %r" % (summary[-1:] or ""))
    for o in final.orders:
        if o["id"] != run["order_id"] and o["status"] != "pending":
            problems.append("order %s, not the run's, is %s" % (o["id"], o["status"]))
    return problems


def n_orphans(c):
    final = Db(c.db)
    runs = final.run_by_key(c.key)
    return sum(1 for o in final.orders if not runs or o["id"] != runs[0]["order_id"])


# ---------------------------------------------------------------- part B

B_DEFINITION = {
    "name": "fast-order",
    "description": "crash test part B: the order flow in about 1.5 s, with a flaky step",
    "steps": [
        {"id": "validate", "type": "task", "depends_on": [],
         "config": {"action": "validate_order", "duration_seconds": 0.3}},
        {"id": "check-stock", "type": "task", "depends_on": ["validate"],
         "config": {"duration_seconds": 0.2, "fail_probability": 0.3},
         "retry": {"max_attempts": 12, "initial_interval_seconds": 0.1,
                   "backoff_coefficient": 1.5, "max_interval_seconds": 0.3}},
        {"id": "charge", "type": "task", "depends_on": ["validate"],
         "config": {"action": "charge_payment", "duration_seconds": 0.5}},
        {"id": "ship", "type": "task", "depends_on": ["charge", "check-stock"],
         "config": {"action": "ship_order", "duration_seconds": 0.3}},
        {"id": "notify", "type": "task", "depends_on": ["ship"],
         "config": {"action": "send_notification", "duration_seconds": 0.1}},
    ],
}


class CrashTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="durable-crash-")
        self.keep = False

    def tearDown(self):
        if self.keep and os.environ.get("DURABLE_KEEP_TMP"):
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def fail_with(self, failures):
        self.keep = True
        text = "\n\n".join(failures)
        self.fail("%d invariant(s) broken (seed %s):\n%s" % (len(failures), SEED, text))

    def test_a_single_runs_killed_at_every_moment(self):
        slow = os.path.join(EXAMPLES, "slow-order.json")
        cases = []
        lo, hi = A_SPREAD
        for i in range(A_TIME_KILLS):
            t = lo + (hi - lo) * i / (A_TIME_KILLS - 1)
            cases.append(Case(self.tmp, len(cases), "after %.2fs" % t, kill_after=t))
        for name in FAILPOINTS:
            for n in range(1, A_MAX_COMMIT + 1):
                fp = "%s:%d" % (name, n)
                cases.append(Case(self.tmp, len(cases), fp, failpoint=fp))
        # --durability process promises to survive a crash of the process.
        for n in range(1, A_MAX_COMMIT + 1, 2):
            fp = "writer.after_commit:%d" % n
            cases.append(Case(self.tmp, len(cases), fp + " process", failpoint=fp,
                              durability="process"))
        for t in (1.0, 3.5, 6.0):
            cases.append(Case(self.tmp, len(cases), "after %.2fs process" % t, kill_after=t,
                              durability="process"))
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(cases)) as pool:
            list(pool.map(lambda c: part_a_case(c, slow), cases))
        elapsed = time.monotonic() - t0

        failures, rows = [], []
        for c in cases:
            problems = check_case(c)
            killed = c.first_rc == -signal.SIGKILL
            srun = c.snap.run_by_key(c.key) if c.snap else []
            state = ("no db" if c.snap is None else "no run" if not srun else
                     "%s, %d/5 steps done" % (srun[0]["status"], sum(
                         1 for s in c.snap.steps_of(srun[0]["id"]) if s["status"] == "completed")))
            rows.append("  %-30s %-9s %-28s %-14s %s" % (
                c.label, "killed" if killed else "exit %s" % c.first_rc, state,
                ",".join(str(r) for r in c.restart_rcs), "FAIL" if problems else "ok"))
            if problems:
                failures.append("case %s (key %s, db %s):\n  %s\n  output:\n%s" % (
                    c.label, c.key, c.db, "\n  ".join(problems), read_text(c.out)))
        kills = [c for c in cases if c.first_rc == -signal.SIGKILL]
        log("\npart A: %d cases in %.1fs, %d killed (the others finished before their kill"
            " moment)" % (len(cases), elapsed, len(kills)))
        log("  %-30s %-9s %-28s %-14s %s" % ("kill moment", "first run", "run in the db at the kill",
                                             "restart exits", "check"))
        for r in rows:
            log(r)
        orphans = sum(n_orphans(c) for c in cases if os.path.exists(c.db))
        if orphans:
            log("  note: %d order(s) created before a kill that came before the run was"
                " created stay pending, attached to no run" % orphans)
        if failures:
            self.fail_with(failures)
        self.assertGreaterEqual(len(kills), A_MIN_KILLS, "\n".join(rows))
        for name in FAILPOINTS:
            n = sum(1 for c in kills if c.failpoint and c.failpoint.startswith(name + ":")
                    and not c.durability)
            self.assertGreaterEqual(n, A_MIN_FAILPOINT_KILLS,
                                    "%s fired only %d times:\n%s" % (name, n, "\n".join(rows)))
        log("part A: %d kill moments tested, %d runs checked: ok" % (len(kills), len(cases)))

    def batch_round(self, rng, rnd):
        """One batch of B_RUNS runs: start, kill at random moments (resuming
        in between) until B_KILLS kills or the batch is done, resume to the
        end, check. Returns (kills, runs checked, failures, report lines)."""
        tmp = os.path.join(self.tmp, "round%d" % rnd)
        os.makedirs(tmp)
        definition = os.path.join(tmp, "fast-order.json")
        with open(definition, "w") as f:
            json.dump(B_DEFINITION, f, indent=1)
        db = os.path.join(tmp, "batch.db")
        ids_file = db + ".runs"
        out = os.path.join(tmp, "output.txt")
        start = [DRIVER, db, "start", definition, str(B_RUNS)]
        resume = [DRIVER, db, "resume"]
        snaps, phases, lines = [], [], []
        t0 = time.monotonic()
        finished = False
        for phase in range(B_MAX_PHASES):
            if len(snaps) >= B_KILLS:
                break
            cmd = resume if os.path.exists(ids_file) else start
            # Time kills land anywhere in the process's life; failpoint
            # kills exactly on a commit boundary. `start` makes ~2 quick
            # commits per run, while a resume commits at step boundaries
            # (a few per 0.1 s): its N is kept small so the kill comes
            # before the batch is done.
            if rng.random() < 0.6:
                t, env = rng.uniform(0.05, 1.0), clean_env()
                how = "after %.2fs" % t
            else:
                n = rng.randint(1, 2 * B_RUNS) if cmd is start else rng.randint(1, 12)
                fp = "%s:%d" % (rng.choice(FAILPOINTS), n)
                how, t, env = fp, None, clean_env(fp)
            with open(out, "ab") as o:
                o.write(("$ %s   [phase %d: kill %s]\n" % (" ".join(cmd), phase, how)).encode())
                o.flush()
                p = subprocess.Popen(cmd, stdout=o, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
                try:
                    rc = p.wait(timeout=t if t is not None else PROC_TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
                    rc = p.wait()
                o.write(("[exit %s]\n" % rc).encode())
            label = "round %d phase %d (%s, kill %s)" % (rnd, phase, cmd[2], how)
            if rc == -signal.SIGKILL:
                snap = snapshot(db, os.path.join(tmp, "snap%d" % phase))
                snaps.append((label, snap))
                if snap is None:
                    state = "no db"
                else:
                    n_done = sum(1 for x in snap.steps if x["status"] == "completed")
                    state = "%d runs, %d/%d steps completed" % (
                        len(snap.runs), n_done, B_RUNS * len(B_DEFINITION["steps"]))
                lines.append("  %-58s killed    %s" % (label, state))
            elif rc == 0:
                lines.append("  %-58s exit 0 (batch done)" % label)
                finished = True
                break
            else:
                return len(snaps), 0, ["%s exited %s\n%s" % (label, rc, read_text(out))], lines
        final_rcs = []
        if not finished:
            for _ in range(RESTARTS):
                cmd = resume if os.path.exists(ids_file) else start
                rc = run_bounded(cmd, out, env=clean_env(), timeout=PROC_TIMEOUT)
                final_rcs.append(rc)
                if rc == 0:
                    break
            lines.append("  round %d final start/resume exits %s" % (rnd, final_rcs))
            if final_rcs[-1] != 0:
                return len(snaps), 0, ["the final resume exited %s\n%s"
                                       % (final_rcs, read_text(out))], lines
        elapsed = time.monotonic() - t0

        final = Db(db)
        failures = []
        with open(ids_file) as f:
            ids = [l.strip() for l in f if l.strip()]
        keys = sorted(r["idempotency_key"] for r in final.runs)
        if keys != sorted("k%d" % i for i in range(B_RUNS)):
            failures.append("runs by idempotency key: %s" % keys)
        if sorted(ids) != sorted(r["id"] for r in final.runs):
            failures.append("%s lists %d runs that differ from the database's" % (ids_file, len(ids)))
        for run in final.runs:
            problems = check_run(final, run["id"], snaps)
            if problems:
                failures.append("run %s (key %s):\n  %s" % (run["id"], run["idempotency_key"],
                                                             "\n  ".join(problems)))
        per_order = collections.defaultdict(collections.Counter)
        for e in final.events:
            if e["type"] == "action_applied":
                data = json.loads(e["data"])
                per_order[data.get("order_id")][data.get("action")] += 1
        attached = {r["order_id"] for r in final.runs}
        for o in final.orders:
            if o["id"] in attached:
                if o["status"] != "shipped" or any(per_order[o["id"]][a] != 1 for a in ACTIONS):
                    failures.append("order %s is %s with actions %s"
                                    % (o["id"], o["status"], dict(per_order[o["id"]])))
            elif o["status"] != "pending" or per_order[o["id"]]:
                failures.append("order %s belongs to no run but is %s with actions %s"
                                % (o["id"], o["status"], dict(per_order[o["id"]])))
        if failures:
            failures.append("driver output:\n" + read_text(out))
        n_retries = sum(1 for e in final.events if e["type"] == "retry_scheduled")
        n_recovered = sum(1 for e in final.events if e["type"] == "recovered")
        lines.insert(0, "  round %d: %d runs, %d kills in %.1fs (%d retries, %d recovered events,"
                     " %d orders for no run)" % (rnd, len(final.runs), len(snaps), elapsed,
                                                 n_retries, n_recovered,
                                                 len(final.orders) - len(attached)))
        return len(snaps), len(final.runs), failures, lines

    def test_b_batch_killed_repeatedly(self):
        rng = random.Random(SEED)
        kills = runs = 0
        report = []
        for rnd in range(B_MAX_ROUNDS):
            k, n, failures, lines = self.batch_round(rng, rnd)
            kills, runs = kills + k, runs + n
            report += lines
            if failures:
                log("\npart B (seed %s):\n%s" % (SEED, "\n".join(report)))
                self.fail_with(failures)
            if kills >= B_MIN_KILLS:
                break
        log("\npart B (seed %s):\n%s" % (SEED, "\n".join(report)))
        self.assertGreaterEqual(kills, B_MIN_KILLS, "\n".join(report))
        log("part B: %d kill moments tested, %d runs checked: ok" % (kills, runs))


def main():
    global DURABLE, DRIVER, EXAMPLES, SEED
    ap = argparse.ArgumentParser()
    ap.add_argument("--durable", required=True)
    ap.add_argument("--driver", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("DURABLE_CRASH_SEED", "0")) or None)
    args, rest = ap.parse_known_args()
    DURABLE = os.path.abspath(args.durable)
    DRIVER = os.path.abspath(args.driver)
    EXAMPLES = os.path.abspath(args.examples)
    SEED = args.seed if args.seed else random.SystemRandom().randrange(1, 2 ** 31)
    log("crash test seed %d (rerun with --seed %d or DURABLE_CRASH_SEED=%d)" % (SEED, SEED, SEED))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
