#!/usr/bin/env python3
"""End-to-end tests of the `durable` command line (SPEC §1, §2, §5, §8).

Each test runs the real binary on a fresh temporary database and checks what a
user would check: the exit status, the plain (non-terminal) output, the
terminal view under a pseudo-terminal, and the database itself (tables runs,
steps, events and orders, read with sqlite3 once the process has exited).

Usage: test_cli.py --durable PATH/durable --examples PATH/examples [unittest args]
Every process is bounded by a timeout; on failure the assertion message holds
the command, its exit status and its whole output.
"""
import argparse
import collections
import errno
import glob
import json
import os
import pty
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

DURABLE = None
EXAMPLES = None

RUN_TIMEOUT = 60        # seconds for one `durable run` of a short workflow
EXAMPLES_TIMEOUT = 90   # seconds for all the examples, run concurrently
FLAKY_COPIES = 10       # extra runs of flaky-retries, so that one retries (0.35^11)

STEP_EVENTS = {"step_started", "step_completed", "step_failed", "retry_scheduled",
               "step_waiting", "action_applied", "step_skipped", "approval_decided"}
EVENT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([a-z_]+)(?: (.*))?$")
SUMMARY_LINE = re.compile(
    r"^run (\S+) (completed|failed|cancelled) in [0-9.]+s(?:: .*?)?(?:; order (\S+) (\w+))?$")


# ---------------------------------------------------------------- helpers

def text_of(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def describe(cmd, rc, out, err):
    return ("\n--- command: %s\n--- exit status: %s\n--- stdout:\n%s\n--- stderr:\n%s\n---"
            % (" ".join(cmd), rc, text_of(out), text_of(err)))



NEEDS_A_PEER = {"http-pipeline.json", "nightly-report.json"}

class Result:
    """A finished process: its command, exit status and output."""

    def __init__(self, cmd, rc, out, err):
        self.cmd, self.rc, self.out, self.err = cmd, rc, text_of(out), text_of(err)

    def __str__(self):
        return describe(self.cmd, self.rc, self.out, self.err)


def durable(*args, timeout=RUN_TIMEOUT, cwd=None, env=None):
    """Runs `durable ARGS` to the end (killed after timeout) and returns a Result."""
    cmd = [DURABLE] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=cwd, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("did not finish in %ss%s"
                             % (timeout, describe(cmd, "killed", e.stdout, e.stderr)))
    return Result(cmd, p.returncode, p.stdout, p.stderr)


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return path


def task(step_id, seconds=0.1, deps=(), **config):
    config["duration_seconds"] = seconds
    return {"id": step_id, "type": "task", "config": config, "depends_on": list(deps)}


class Db:
    """The rows a user would look at, read after the process has exited."""

    def __init__(self, path):
        con = sqlite3.connect(path, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            q = lambda sql: [dict(r) for r in con.execute(sql)] if tables else []
            self.workflows = q("SELECT * FROM workflows") if "workflows" in tables else []
            self.runs = q("SELECT * FROM runs ORDER BY created_at, id") if "runs" in tables else []
            self.steps = q("SELECT * FROM steps ORDER BY run_id, idx") if "steps" in tables else []
            self.events = q("SELECT * FROM events ORDER BY run_id, seq") if "events" in tables else []
            self.orders = q("SELECT * FROM orders") if "orders" in tables else []
        finally:
            con.close()

    def run(self, run_id):
        return next(r for r in self.runs if r["id"] == run_id)

    def steps_of(self, run_id):
        return [s for s in self.steps if s["run_id"] == run_id]

    def events_of(self, run_id):
        return [e for e in self.events if e["run_id"] == run_id]

    def order(self, order_id):
        return next(o for o in self.orders if o["id"] == order_id)


def db_or_empty(path):
    """The database if the command created one (usage errors may not)."""
    return Db(path) if os.path.exists(path) else None


def format_events(events):
    return "\n".join("  %3d %-16s %-12s %s" % (e["seq"], e["type"], e["step_id"] or "", e["data"])
                     for e in events)


def parse_plain(out):
    """The event lines of plain output as (type, step_id or None, rest)."""
    events = []
    for line in out.splitlines():
        m = EVENT_LINE.match(line)
        if not m:
            continue
        typ, rest = m.group(2), m.group(3) or ""
        step = None
        if typ in STEP_EVENTS:
            step, _, rest = rest.partition(" ")
        events.append((typ, step, rest))
    return events


def last_line(out):
    lines = [l for l in out.splitlines() if l.strip()]
    return lines[-1] if lines else ""


class CliTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="durable-e2e-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def assertExit(self, res, code):
        self.assertEqual(res.rc, code, "expected exit status %d%s" % (code, res))

    # -- the history of one run, from the database --

    def check_history(self, db, run_id, context, want_status="completed"):
        """Checks the database's record of a finished run: seq 1..n without gaps,
        every step completed exactly once (when the run completed), each
        step_started after the step_completed of all its depends_on, and the
        run's final event. Returns the run's events."""
        events = db.events_of(run_id)
        steps = db.steps_of(run_id)
        run = db.run(run_id)
        dump = "%s\nrun %s events:\n%s" % (context, run_id, format_events(events))
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)),
                         "event seq is not 1..n without gaps" + dump)
        self.assertEqual(run["status"], want_status, "run status" + dump)
        self.assertEqual(events[0]["type"], "run_created", dump)
        self.assertEqual(events[-1]["type"], "run_" + want_status, dump)
        self.assertEqual([e["type"] for e in events].count("run_" + want_status), 1, dump)
        completed_at = {}
        for e in events:
            if e["type"] == "step_completed":
                self.assertNotIn(e["step_id"], completed_at,
                                 "step %s completed twice" % e["step_id"] + dump)
                completed_at[e["step_id"]] = e["seq"]
        for s in steps:
            if want_status == "completed":
                self.assertEqual(s["status"], "completed", "step %s" % s["step_id"] + dump)
                self.assertIn(s["step_id"], completed_at,
                              "step %s has no step_completed" % s["step_id"] + dump)
            for e in events:
                if e["type"] != "step_started" or e["step_id"] != s["step_id"]:
                    continue
                for dep in json.loads(s["depends_on"]):
                    self.assertIn(dep, completed_at, "step %s started before its dependency %s"
                                  " completed" % (s["step_id"], dep) + dump)
                    self.assertLess(completed_at[dep], e["seq"],
                                    "step %s (seq %d) started before its dependency %s completed"
                                    % (s["step_id"], e["seq"], dep) + dump)
        # Steps that became ready at the same moment start in file order.
        first_start = {}
        for e in events:
            if e["type"] == "step_started":
                first_start.setdefault(e["step_id"], e["seq"])
        ready = collections.defaultdict(list)
        for s in steps:
            if s["step_id"] in first_start:
                deps = json.loads(s["depends_on"])
                ready[max([completed_at.get(d, 0) for d in deps] or [0])].append(s)
        for group in ready.values():
            order = [s["step_id"] for s in sorted(group, key=lambda s: s["idx"])]
            self.assertEqual(sorted(order, key=first_start.get), order,
                             "steps ready together did not start in file order" + dump)
        return events

    def check_plain_output(self, res, definition):
        """The plain output: one line per transition, every step completed
        exactly once, each started after its dependencies completed."""
        events = parse_plain(res.out)
        self.assertTrue(events, "no event lines in the plain output" + str(res))
        completed = {}
        for i, (typ, step, _) in enumerate(events):
            if typ == "step_completed":
                self.assertNotIn(step, completed, "step %s completed twice%s" % (step, res))
                completed[step] = i
        deps = {s["id"]: s.get("depends_on", []) for s in definition["steps"]}
        self.assertEqual(set(completed), set(deps), "steps completed in the output" + str(res))
        for i, (typ, step, _) in enumerate(events):
            if typ == "step_started":
                for dep in deps[step]:
                    self.assertLess(completed[dep], i, "output shows %s started before %s completed%s"
                                    % (step, dep, res))
        self.assertEqual(events[-1][0], "run_completed", res)
        return events


# ---------------------------------------------------------------- every example

class ExamplesTest(CliTestCase):
    """`durable run` on every file of examples/, all at once on fresh databases."""

    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.mkdtemp(prefix="durable-e2e-examples-")
        # http-pipeline.json needs a URL to call (its input), nightly-report
        # a registered child workflow (simple-pipeline: `durable serve
        # --workflows examples` has it); the YAML examples wait for a person.
        # tests/e2e/test_steps_*.py and the unit tests run those kinds.
        cls.files = sorted(f for f in glob.glob(os.path.join(EXAMPLES, "*.json"))
                           if os.path.basename(f) not in NEEDS_A_PEER)
        if not cls.files:
            raise RuntimeError("no examples in %s" % EXAMPLES)
        jobs = []
        for f in cls.files:
            jobs.append((f, os.path.basename(f)))
            if os.path.basename(f) == "flaky-retries.json":
                jobs += [(f, "flaky-retries.json#%d" % i) for i in range(1, FLAKY_COPIES + 1)]
        cls.results = {}
        procs = []
        for f, name in jobs:
            with open(f) as fh:
                definition = json.load(fh)
            has_actions = any("action" in s.get("config", {}) for s in definition["steps"])
            db = os.path.join(cls.tmpdir, name.replace("#", "-") + ".db")
            cmd = [DURABLE, "run", f, "--db", db] + (["--order", "25"] if has_actions else [])
            out = open(os.path.join(cls.tmpdir, name + ".out"), "w+b")
            err = open(os.path.join(cls.tmpdir, name + ".err"), "w+b")
            p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            procs.append((name, f, definition, has_actions, db, cmd, p, out, err))
        deadline = time.monotonic() + EXAMPLES_TIMEOUT
        for name, f, definition, has_actions, db, cmd, p, out, err in procs:
            try:
                rc = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "killed after %ds" % EXAMPLES_TIMEOUT
            out.seek(0)
            err.seek(0)
            cls.results[name] = dict(file=f, definition=definition, has_actions=has_actions,
                                     db=db, res=Result(cmd, rc, out.read(), err.read()))
            out.close()
            err.close()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmpdir, ignore_errors=True)

    def test_every_example_completes_once_in_order(self):
        for f in self.files:
            name = os.path.basename(f)
            with self.subTest(example=name):
                r = self.results[name]
                res = r["res"]
                self.assertExit(res, 0)
                self.check_plain_output(res, r["definition"])
                m = SUMMARY_LINE.match(last_line(res.out))
                self.assertTrue(m, "last line is not the run's summary" + str(res))
                self.assertEqual(m.group(2), "completed", res)
                db = Db(r["db"])
                self.assertEqual(len(db.runs), 1, res)
                run = db.runs[0]
                self.assertEqual(m.group(1), run["id"], "summary names another run" + str(res))
                self.check_history(db, run["id"], str(res))
                want = {s["id"] for s in r["definition"]["steps"]}
                self.assertEqual({s["step_id"] for s in db.steps_of(run["id"])}, want, res)
                if r["has_actions"]:
                    self.assertIsNotNone(run["order_id"], res)
                    order = db.order(run["order_id"])
                    self.assertEqual(m.group(3), order["id"], "summary names the order" + str(res))
                    self.assertEqual(m.group(4), order["status"], res)
                    actions = [json.loads(e["data"])["action"] for e in db.events_of(run["id"])
                               if e["type"] == "action_applied"]
                    declared = [s["config"]["action"] for s in r["definition"]["steps"]
                                if "action" in s.get("config", {})]
                    self.assertEqual(sorted(actions), sorted(declared),
                                     "each action applied exactly once" + str(res))
                    if "ship_order" in declared:
                        self.assertEqual(order["status"], "shipped", res)

    def test_order_processing_ships_the_order(self):
        r = self.results["order-processing.json"]
        res = r["res"]
        self.assertExit(res, 0)
        self.assertIn("--order", res.cmd)
        line = last_line(res.out)
        m = SUMMARY_LINE.match(line)
        self.assertTrue(m and m.group(4) == "shipped",
                        "final line should name the order status shipped: %r%s" % (line, res))
        db = Db(r["db"])
        self.assertEqual(len(db.orders), 1, res)
        self.assertEqual(db.orders[0]["status"], "shipped", res)
        self.assertEqual(db.orders[0]["amount"], 25, res)
        self.assertEqual(db.runs[0]["order_id"], db.orders[0]["id"], res)
        plain = parse_plain(res.out)
        self.assertEqual([rest.split()[0] for typ, _, rest in plain if typ == "action_applied"],
                         ["action=validate_order", "action=charge_payment", "action=ship_order"], res)

    def test_flaky_retries_retries_and_completes(self):
        names = ["flaky-retries.json"] + ["flaky-retries.json#%d" % i
                                          for i in range(1, FLAKY_COPIES + 1)]
        n_retries = 0
        for name in names:
            r = self.results[name]
            res = r["res"]
            db = Db(r["db"])
            run = db.runs[0]
            events = db.events_of(run["id"])
            dump = str(res) + "\nevents:\n" + format_events(events)
            if name != "flaky-retries.json" and res.rc == 1:
                # A copy may fail for good when a step exhausts its attempts
                # (p = 0.5^12): accept that outcome only when it is exactly that.
                final = [e for e in events if e["type"] == "step_failed"
                         and json.loads(e["data"]).get("final")]
                self.assertEqual(len(final), 1, dump)
                step = next(s for s in db.steps_of(run["id"]) if s["step_id"] == final[0]["step_id"])
                self.assertEqual(step["attempt"], step["max_attempts"], dump)
                n_retries += sum(1 for e in events if e["type"] == "retry_scheduled")
                continue
            self.assertExit(res, 0)
            self.check_history(db, run["id"], dump)
            for i, e in enumerate(events):
                if e["type"] != "retry_scheduled":
                    continue
                n_retries += 1
                attempt = json.loads(e["data"])["attempt"]
                prev = events[i - 1]
                self.assertEqual((prev["type"], prev["step_id"]), ("step_failed", e["step_id"]),
                                 "retry_scheduled follows the failure" + dump)
                self.assertEqual(json.loads(prev["data"])["attempt"], attempt - 1, dump)
                later = [x for x in events[i + 1:] if x["type"] == "step_started"
                         and x["step_id"] == e["step_id"]]
                self.assertTrue(later, "no new attempt after retry_scheduled" + dump)
                self.assertEqual(json.loads(later[0]["data"])["attempt"], attempt, dump)
            plain_retries = [x for x in parse_plain(res.out) if x[0] == "retry_scheduled"]
            self.assertEqual(len(plain_retries),
                             sum(1 for e in events if e["type"] == "retry_scheduled"),
                             "each retry_scheduled is printed" + dump)
        self.assertGreater(n_retries, 0, "no retry_scheduled in %d runs of flaky-retries.json"
                           " (chance 0.35^%d)" % (len(names), len(names)))


# ---------------------------------------------------------------- exit codes, --id

class RunTest(CliTestCase):

    def quick_def(self, name="quick", actions=False):
        steps = [task("a", 0.1, action="validate_order") if actions else task("a", 0.1),
                 task("b", 0.1, ["a"], **({"action": "charge_payment"} if actions else {})),
                 task("c", 0.1, ["a"]),
                 task("d", 0.1, ["b", "c"], **({"action": "ship_order"} if actions else {}))]
        return write_json(self.path(name + ".json"), {"name": name, "steps": steps})

    def failing_def(self):
        steps = [task("a", 0.1),
                 {"id": "b", "type": "task", "depends_on": ["a"],
                  "config": {"duration_seconds": 0.1, "fail_probability": 1.0, "max_retries": 1},
                  "retry": {"initial_interval_seconds": 0.1}},
                 task("c", 0.1, ["b"])]
        return write_json(self.path("fails.json"), {"name": "fails", "steps": steps})

    def test_failed_run_exits_1(self):
        f, db = self.failing_def(), self.path("d.db")
        res = durable("run", f, "--db", db)
        self.assertExit(res, 1)
        d = Db(db)
        run = d.runs[0]
        events = d.events_of(run["id"])
        dump = str(res) + "\nevents:\n" + format_events(events)
        self.check_history(d, run["id"], dump, want_status="failed")
        failed = [e for e in events if e["type"] == "step_failed"]
        self.assertEqual([e["step_id"] for e in failed], ["b", "b"], dump)
        self.assertEqual([json.loads(e["data"])["attempt"] for e in failed], [1, 2], dump)
        self.assertEqual([e["step_id"] for e in events if e["type"] == "retry_scheduled"], ["b"], dump)
        self.assertNotIn("c", [e["step_id"] for e in events if e["type"] == "step_started"], dump)
        self.assertEqual(events[-1]["type"], "run_failed", dump)
        self.assertTrue(run["error_message"], dump)
        plain = parse_plain(res.out)
        self.assertEqual([s for t, s, _ in plain if t == "step_failed"], ["b", "b"], res)
        self.assertEqual(plain[-1][0], "run_failed", res)
        m = SUMMARY_LINE.match(last_line(res.out))
        self.assertTrue(m and m.group(2) == "failed", res)

    def test_id_after_completion_prints_outcome_and_writes_nothing(self):
        f, db = self.quick_def(actions=True), self.path("d.db")
        first = durable("run", f, "--order", "5", "--id", "K1", "--db", db)
        self.assertExit(first, 0)
        before = Db(db)
        self.assertEqual(len(before.runs), 1, first)
        run_id = before.runs[0]["id"]
        self.check_history(before, run_id, str(first))
        second = durable("run", f, "--order", "5", "--id", "K1", "--db", db)
        self.assertExit(second, 0)
        after = Db(db)
        self.assertIn(run_id, second.out, "the stored run is named" + str(second))
        m = SUMMARY_LINE.match(last_line(second.out))
        self.assertTrue(m, "the stored outcome is printed" + str(second))
        self.assertEqual((m.group(1), m.group(2), m.group(4)), (run_id, "completed", "shipped"), second)
        self.assertEqual(parse_plain(second.out), [], "no step ran again" + str(second))
        self.assertEqual(after.events, before.events, "a repeat wrote events" + str(second))
        self.assertEqual(after.runs, before.runs, second)
        self.assertEqual(after.orders, before.orders, "a repeat created or changed an order" + str(second))
        self.assertNotIn("note:", second.err, "same file, same input: nothing to note" + str(second))

    def test_id_after_failure_exits_1_again(self):
        f, db = self.failing_def(), self.path("d.db")
        first = durable("run", f, "--id", "K2", "--db", db)
        self.assertExit(first, 1)
        before = Db(db)
        second = durable("run", f, "--id", "K2", "--db", db)
        self.assertExit(second, 1)
        self.assertIn(before.runs[0]["id"], second.out, second)
        m = SUMMARY_LINE.match(last_line(second.out))
        self.assertTrue(m and m.group(2) == "failed", second)
        after = Db(db)
        self.assertEqual(after.events, before.events, "a repeat wrote events" + str(second))
        self.assertEqual(after.runs, before.runs, second)

    def test_id_after_editing_the_file_returns_the_same_run(self):
        """SPEC §5: a key that already started a run of that workflow returns
        that run; a new version of the same workflow (same name, edited file)
        is the same workflow, and the run keeps the version it started with."""
        f, db = self.quick_def(actions=True), self.path("d.db")
        first = durable("run", f, "--order", "5", "--id", "K3", "--db", db)
        self.assertExit(first, 0)
        before = Db(db)
        with open(f) as fh:
            doc = json.load(fh)
        doc["description"] = "edited after the first run"
        doc["steps"][0]["config"]["duration_seconds"] = 0.2
        write_json(f, doc)
        second = durable("run", f, "--order", "5", "--id", "K3", "--db", db)
        self.assertExit(second, 0)
        after = Db(db)
        self.assertIn(before.runs[0]["id"], second.out, "the key's run is named" + str(second))
        self.assertEqual(len(after.runs), 1, "the same --id started a second run" + str(second))
        self.assertEqual(after.orders, before.orders, "the same --id created another order"
                         + str(second))
        self.assertEqual(after.events, before.events, str(second))
        notes = [l for l in second.err.splitlines() if "note:" in l]
        self.assertEqual(len(notes), 1, "one line says the key returned an older version" + str(second))
        self.assertIn("run %s of version 1 (this file is version 2)" % before.runs[0]["id"],
                      notes[0], second)
        self.assertIn("use another --id", notes[0], second)
        self.assertNotIn("another input", notes[0], second)

    def test_id_with_another_input_says_so(self):
        f, db = self.quick_def(), self.path("d.db")
        first = durable("run", f, "--input", '{"n": 1, "m": 2}', "--id", "K4", "--db", db)
        self.assertExit(first, 0)
        same = durable("run", f, "--input", '{"m": 2, "n": 1}', "--id", "K4", "--db", db)
        self.assertExit(same, 0)
        self.assertNotIn("note:", same.err, "the same input in another key order" + str(same))
        other = durable("run", f, "--input", '{"n": 2}', "--id", "K4", "--db", db)
        self.assertExit(other, 0)
        notes = [l for l in other.err.splitlines() if "note:" in l]
        self.assertEqual(len(notes), 1, other)
        self.assertIn("started with another input", notes[0], other)
        self.assertIn("use another --id", notes[0], other)
        self.assertEqual(len(Db(db).runs), 1, other)

    def test_second_invocation_while_running_does_not_hang(self):
        """`durable run FILE --id K` while another process still runs K (the
        user thinks it crashed): it must end, by refusing or by reporting the
        run's outcome, and the run's steps still complete exactly once."""
        steps = [task("a", 1.0), task("b", 1.0, ["a"])]
        f = write_json(self.path("busy.json"), {"name": "busy", "steps": steps})
        db = self.path("d.db")
        outs = [self.path("out1"), self.path("out2")]
        cmd = [DURABLE, "run", f, "--id", "B", "--db", db]
        procs = []

        def spawn(path):
            with open(path, "wb") as out:
                p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
            procs.append(p)
            self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
            return p

        first = spawn(outs[0])
        deadline = time.monotonic() + RUN_TIMEOUT
        while "step_started a" not in read_text(outs[0]):
            if time.monotonic() > deadline or first.poll() is not None:
                self.fail("never saw step_started a:\n" + read_text(outs[0]))
            time.sleep(0.05)
        second = spawn(outs[1])
        rcs = []
        deadline = time.monotonic() + 12
        for p in procs:
            try:
                rcs.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                rcs.append("still running after 12 s")
        report = "".join("\n--- process %d (exit %s):\n%s" % (i + 1, rc, read_text(o))
                         for i, (rc, o) in enumerate(zip(rcs, outs)))
        self.assertEqual(rcs[0], 0, report)
        self.assertIsInstance(rcs[1], int, "the second invocation hangs" + report)
        if rcs[1] == 0:
            self.assertRegex(read_text(outs[1]), r"run \S+ completed", report)
        d = Db(db)
        self.assertEqual(len(d.runs), 1, report)
        self.check_history(d, d.runs[0]["id"], report)

    def test_different_ids_make_different_runs(self):
        f, db = self.quick_def(), self.path("d.db")
        self.assertExit(durable("run", f, "--id", "A", "--db", db), 0)
        self.assertExit(durable("run", f, "--id", "B", "--db", db), 0)
        d = Db(db)
        self.assertEqual(sorted(r["idempotency_key"] for r in d.runs), ["A", "B"])
        self.assertEqual(len(d.workflows), 1, "an identical definition is stored once")

    def test_resume_after_kill_with_printed_command(self):
        """A run without --id prints how to resume it; after kill -9 that
        command finishes the run without re-running completed steps."""
        steps = [task("first", 0.1), task("second", 1.5, ["first"]), task("third", 0.1, ["second"])]
        f = write_json(self.path("long.json"), {"name": "long", "steps": steps})
        db, out_path = self.path("d.db"), self.path("out")
        with open(out_path, "wb") as out:
            p = subprocess.Popen([DURABLE, "run", f, "--db", db], stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        deadline = time.monotonic() + RUN_TIMEOUT
        text = ""
        while "step_started second" not in text:
            if time.monotonic() > deadline or p.poll() is not None:
                p.kill()
                p.wait()
                self.fail("never saw step_started second (exit %s):\n%s" % (p.returncode, text))
            time.sleep(0.05)
            with open(out_path) as fh:
                text = fh.read()
        p.kill()
        p.wait()
        m = re.search(r"to resume it after a crash: durable run (\S+) --id (\S+)", text)
        self.assertTrue(m, "no resume command printed:\n" + text)
        self.assertEqual(m.group(1), f)
        killed = Db(db)
        res = durable("run", f, "--id", m.group(2), "--db", db)
        self.assertExit(res, 0)
        self.assertIn("resuming", res.out, res)
        d = Db(db)
        self.assertEqual(len(d.runs), 1, res)
        events = self.check_history(d, d.runs[0]["id"], str(res))
        n_before = len(killed.events)
        self.assertEqual([(e["seq"], e["type"], e["step_id"]) for e in events[:n_before]],
                         [(e["seq"], e["type"], e["step_id"]) for e in killed.events],
                         "history before the kill was rewritten")
        after = events[n_before:]
        self.assertIn("recovered", [e["type"] for e in after], format_events(events))
        self.assertNotIn(("step_started", "first"), [(e["type"], e["step_id"]) for e in after],
                         "completed step ran again:\n" + format_events(events))

    def test_interrupt_then_resume(self):
        steps = [task("one", 0.1), task("two", 1.0, ["one"]), task("three", 0.1, ["two"])]
        f = write_json(self.path("int.json"), {"name": "int", "steps": steps})
        db, out_path = self.path("d.db"), self.path("out")
        with open(out_path, "wb") as out:
            p = subprocess.Popen([DURABLE, "run", f, "--id", "I", "--db", db], stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        deadline = time.monotonic() + RUN_TIMEOUT
        text = ""
        while "step_started two" not in text:
            if time.monotonic() > deadline or p.poll() is not None:
                self.fail("never saw step_started two (exit %s):\n%s" % (p.poll(), text))
            time.sleep(0.05)
            with open(out_path) as fh:
                text = fh.read()
        p.send_signal(signal.SIGINT)
        try:
            rc = p.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("SIGINT did not stop durable run")
        with open(out_path) as fh:
            text = fh.read()
        self.assertEqual(rc, 130, text)
        self.assertIn("durable run %s --id I" % f, text)
        res = durable("run", f, "--id", "I", "--db", db)
        self.assertExit(res, 0)
        self.assertIn("resuming", res.out, res)
        d = Db(db)
        self.check_history(d, d.runs[0]["id"], str(res))

    def test_durability_process_completes(self):
        f, db = self.quick_def(actions=True), self.path("d.db")
        res = durable("run", f, "--durability", "process", "--order", "3", "--db", db)
        self.assertExit(res, 0)
        with open(f) as fh:
            self.check_plain_output(res, json.load(fh))
        d = Db(db)
        self.check_history(d, d.runs[0]["id"], str(res))
        self.assertEqual(d.order(d.runs[0]["order_id"])["status"], "shipped", res)
        help_text = durable("run", "--help").out
        self.assertIn("process", help_text)
        self.assertIn("power", help_text, "--help says what process durability gives up")

    def test_default_db_is_durable_db_in_cwd(self):
        f = self.quick_def()
        res = durable("run", f, cwd=self.tmp)
        self.assertExit(res, 0)
        self.assertTrue(os.path.exists(self.path("durable.db")), res)
        self.assertEqual(len(Db(self.path("durable.db")).runs), 1, res)

    def test_durable_db_names_the_database(self):
        """$DURABLE_DB stands for --db (also as sqlite:PATH); --db wins; a
        blank one is as unset."""
        f, env = self.quick_def(), dict(os.environ)
        env["DURABLE_DB"] = "sqlite:" + self.path("env.db")
        res = durable("run", f, cwd=self.tmp, env=env)
        self.assertExit(res, 0)
        self.assertEqual(len(Db(self.path("env.db")).runs), 1, res)
        self.assertFalse(os.path.exists(self.path("durable.db")), res)
        res = durable("run", f, "--db", self.path("flag.db"), cwd=self.tmp, env=env)
        self.assertExit(res, 0)
        self.assertEqual(len(Db(self.path("flag.db")).runs), 1, res)
        self.assertEqual(len(Db(self.path("env.db")).runs), 1, res)
        env["DURABLE_DB"] = " "
        res = durable("run", f, cwd=self.tmp, env=env)
        self.assertExit(res, 0)
        self.assertEqual(len(Db(self.path("durable.db")).runs), 1, res)

    def test_unknown_type_is_a_located_error(self):
        """A typo in a type name must not run as something else: the type is
        named, located, and the closest known type suggested; nothing runs."""
        steps = [{"id": "a", "type": "http_reqest", "config": {"url": "http://127.0.0.1:9/"}},
                 {"id": "b", "type": "whatever", "depends_on": ["a"]},
                 {"id": "c", "type": "task", "config": {"duration_seconds": 0.1}}]
        f, db = write_json(self.path("old.json"), {"name": "old", "steps": steps}), self.path("d.db")
        res = durable("run", f, "--db", db)
        self.assertExit(res, 2)
        self.assertIn('steps[0].type: unknown step type "http_reqest" '
                      '(did you mean "http_request"?)', res.err)
        self.assertIn('steps[1].type: unknown step type "whatever" (known: task, http_request',
                      res.err)
        self.assertFalse(os.path.exists(db) and Db(db).runs, res)

    def test_input_is_stored(self):
        f, db = self.quick_def(), self.path("d.db")
        res = durable("run", f, "--input", '{"customer": "ada", "n": 3}', "--db", db)
        self.assertExit(res, 0)
        self.assertEqual(json.loads(Db(db).runs[0]["input"]), {"customer": "ada", "n": 3}, res)


class UsageTest(CliTestCase):
    """Exit status 2 for usage errors and invalid definitions; nothing runs."""

    def setUp(self):
        super().setUp()
        self.good = write_json(self.path("good.json"),
                               {"name": "good", "steps": [task("a", 0.1)]})

    def assertUsage(self, *args):
        db = self.path("usage.db")
        if os.path.exists(db):
            os.remove(db)
        res = durable(*args, "--db", db) if args and args[0] == "run" else durable(*args)
        self.assertExit(res, 2)
        self.assertTrue(res.err.strip(), "a usage error says what is wrong on stderr" + str(res))
        d = db_or_empty(db)
        self.assertFalse(d and d.runs, "a usage error started a run" + str(res))
        return res

    def test_run_without_file(self):
        res = self.assertUsage("run")
        self.assertIn("usage", res.err.lower())

    def test_no_command(self):
        self.assertUsage()

    def test_unknown_command(self):
        self.assertUsage("frobnicate")

    def test_unknown_option(self):
        res = self.assertUsage("run", self.good, "--frobnicate")
        self.assertIn("--frobnicate", res.err)

    def test_option_without_value(self):
        self.assertUsage("run", self.good, "--order")

    def test_bad_order(self):
        for amount in ("abc", "-5", "12x", ""):
            with self.subTest(order=amount):
                self.assertUsage("run", self.good, "--order", amount)

    def test_bad_durability(self):
        res = self.assertUsage("run", self.good, "--durability", "sometimes")
        self.assertIn("sometimes", res.err)

    def test_two_files(self):
        self.assertUsage("run", self.good, self.good)

    def test_missing_file(self):
        self.assertUsage("run", self.path("nope.json"))

    def test_bad_input(self):
        self.assertUsage("run", self.good, "--input", "[1, 2]")
        self.assertUsage("run", self.good, "--input", "{not json")

    def test_cycle_is_invalid_definition(self):
        steps = [task("validate", 0.1, ["charge"]), task("charge", 0.1, ["validate"])]
        f = write_json(self.path("cycle.json"), {"name": "cycle", "steps": steps})
        res = self.assertUsage("run", f)
        self.assertRegex(res.err, re.escape(f) + r": steps: cycle .*validate.*charge|"
                         + re.escape(f) + r": steps: cycle .*charge.*validate")
        d = db_or_empty(self.path("usage.db"))
        self.assertFalse(d and d.workflows, "an invalid definition was stored" + str(res))

    def test_unknown_dependency_is_invalid_definition(self):
        steps = [task("charge", 0.1), task("ship", 0.1, ["chrage"])]
        f = write_json(self.path("typo.json"), {"name": "typo", "steps": steps})
        res = self.assertUsage("run", f)
        self.assertIn('steps[1].depends_on[0]: unknown step "chrage"', res.err)

    def test_syntax_error_is_located(self):
        f = self.path("syntax.json")
        with open(f, "w") as fh:
            fh.write('{"name": "x",\n "steps": [\n  {"id": "a",}\n ]}\n')
        res = self.assertUsage("run", f)
        self.assertRegex(res.err, re.escape(f) + r": line 3, column \d+")


class ValidateTest(CliTestCase):

    def test_examples_are_ok(self):
        files = sorted(glob.glob(os.path.join(EXAMPLES, "*.json")))
        res = durable("validate", *files)
        self.assertExit(res, 0)
        self.assertEqual(res.out.splitlines(), ["%s: ok" % f for f in files], res)

    def test_every_error_of_every_file(self):
        good = write_json(self.path("good.json"), {"name": "good", "steps": [task("a")]})
        two = write_json(self.path("two.json"), {"name": "two", "steps": [
            task("a", 0.1, ["b"]), task("b", 0.1, ["a"]), task("c", 0.1, ["zz"])]})
        syntax = self.path("syntax.json")
        with open(syntax, "w") as fh:
            fh.write('{"name": "x",\n "steps": [\n  {"id": "a",}\n ]}\n')
        res = durable("validate", two, good, syntax)
        self.assertExit(res, 1)
        text = res.out + res.err
        self.assertIn("%s: ok" % good, res.out, res)
        self.assertIn('%s: steps[2].depends_on[0]: unknown step "zz"' % two, text, res)
        self.assertRegex(text, re.escape(two) + r": steps: cycle (a → b → a|b → a → b)")
        self.assertRegex(text, re.escape(syntax) + r": line 3, column \d+: ")
        self.assertNotIn("%s: ok" % two, text, res)

    def test_invalid_alone_exits_1(self):
        bad = write_json(self.path("bad.json"), {"steps": [task("a")]})
        res = durable("validate", bad)
        self.assertExit(res, 1)
        self.assertIn(bad + ": ", res.out + res.err)
        self.assertIn("name", res.out + res.err, "the missing field is named" + str(res))

    def test_unreadable_file_exits_1(self):
        res = durable("validate", self.path("missing.json"))
        self.assertExit(res, 1)
        self.assertIn("missing.json", res.out + res.err)

    def test_no_files_exits_2(self):
        res = durable("validate")
        self.assertExit(res, 2)
        self.assertIn("usage", (res.out + res.err).lower())


class MiscTest(CliTestCase):

    def test_version(self):
        res = durable("version")
        self.assertExit(res, 0)
        self.assertRegex(res.out.strip(), r"^durable \d+\.\d+\.\d+")

    def test_help_on_every_command(self):
        for args in (["--help"], ["help"], ["-h"], ["run", "--help"], ["validate", "--help"],
                     ["version", "--help"], ["run", "x.json", "--help"]):
            with self.subTest(args=args):
                res = durable(*args, cwd=self.tmp)
                self.assertExit(res, 0)
                self.assertIn("usage", res.out.lower(), res)
                self.assertFalse(os.path.exists(self.path("durable.db")),
                                 "--help created a database" + str(res))
        top = durable("--help").out
        for cmd in ("run", "validate", "version"):
            self.assertIn(cmd, top)


class TerminalTest(CliTestCase):
    """The live view on a terminal: redrawn in place, ends with the run."""

    def run_in_pty(self, args, timeout=RUN_TIMEOUT):
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(DURABLE, [DURABLE] + args)
            finally:
                os._exit(127)
        out = bytearray()
        deadline = time.monotonic() + timeout
        status = None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    os.kill(pid, signal.SIGKILL)
                    break
                ready, _, _ = select.select([fd], [], [], min(left, 0.5))
                if not ready:
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    break  # the child closed the terminal
                if not chunk:
                    break
                out += chunk
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        rc = os.waitstatus_to_exitcode(status)
        return Result([DURABLE] + args, rc, bytes(out), b"")

    def test_live_view_redraws(self):
        steps = [task("fetch", 0.3), task("transform", 0.4, ["fetch"]), task("load", 0.3, ["transform"])]
        f = write_json(self.path("tty.json"), {"name": "tty-pipeline", "steps": steps})
        db = self.path("d.db")
        res = self.run_in_pty(["run", f, "--db", db])
        self.assertExit(res, 0)
        ups = re.findall(r"\x1b\[(\d+)A", res.out)
        self.assertGreater(len(ups), 3, "the view is not redrawn in place" + repr(res.out[-2000:]))
        self.assertEqual(set(ups), {str(len(steps) + 1)}, "cursor-up by the table's height")
        for s in ("fetch", "transform", "load", "tty-pipeline"):
            self.assertIn(s, res.out)
        stripped = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", res.out).replace("\r", "")
        self.assertFalse([l for l in stripped.splitlines() if EVENT_LINE.match(l)],
                         "a terminal gets the view, not plain lines" + repr(res.out[-2000:]))
        self.assertRegex(stripped, r"run \S+ completed in")
        d = Db(db)
        self.check_history(d, d.runs[0]["id"], repr(res.out[-2000:]))


def main():
    global DURABLE, EXAMPLES
    ap = argparse.ArgumentParser()
    ap.add_argument("--durable", required=True)
    ap.add_argument("--examples", required=True)
    args, rest = ap.parse_known_args()
    DURABLE = os.path.abspath(args.durable)
    EXAMPLES = os.path.abspath(args.examples)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
