#!/usr/bin/env python3
"""End-to-end tests of issue 13's operations, with the real binary:

- execution logs: GET /runs/{id}/logs builds a run's log from its history
  (a log step's message at its own level, retries as warnings, a step's and
  the run's failure as errors, the run's start and end as info), filtered
  by the least level, paged with after/limit; an unknown level is 400 with
  the allowed values, an unknown run 404;
- the operations CLI (`durable runs|show|cancel|retry|logs`), against a
  real server (--server) and against a database file (--db), with bad input.

Uses the helpers of tests/e2e/server (server_util.py).
Usage: test_ops.py --durable PATH/durable --examples DIR [unittest args]
"""
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "server"))
import server_util as su  # noqa: E402

LEVELS = ("debug", "info", "warning", "error")

# A log step at warning, then a task that fails every attempt (2 of them).
FAILING = {"name": "e2e-ops-failing", "steps": [
    {"id": "note", "type": "log", "config": {"message": "careful with {who}", "level": "warning"}},
    {"id": "hello", "type": "log", "depends_on": ["note"],
     "config": {"message": "hello", "level": "debug"}},
    {"id": "boom", "type": "task", "depends_on": ["hello"],
     "config": {"duration_seconds": 0, "fail_probability": 1},
     "retry": {"max_attempts": 2, "initial_interval_seconds": 0.05}}]}


class LogsTest(su.ServerTest):
    def logs(self, srv, run_id, query=""):
        r = srv.get("/runs/%s/logs%s" % (run_id, query))
        self.assertOk(r)
        doc = r.json()
        self.assertEqual(sorted(doc), ["logs", "next_after"], r)
        for line in doc["logs"]:
            self.assertEqual(sorted(line), ["at", "level", "message", "seq", "step_id"], line)
            self.assertIn(line["level"], LEVELS)
            self.assertTime(line["at"], "log line at")
        return doc

    def failed_run(self, srv):
        wf = self.register(srv, FAILING)["id"]
        run = self.start_run(srv, wf, {"input": {"who": "ada"}})
        run = self.wait_run(srv, run["id"])
        self.assertEqual(run["status"], "failed", run)
        return run["id"]

    def test_levels_of_a_retried_and_failed_run(self):
        srv = self.start_server()
        run_id = self.failed_run(srv)
        every = self.logs(srv, run_id)["logs"]
        seqs = [ln["seq"] for ln in every]
        self.assertEqual(seqs, sorted(seqs))
        by = {(ln["step_id"], ln["level"], ln["message"]) for ln in every}
        self.assertIn(("note", "warning", "careful with ada"), by)  # the log step's own level
        self.assertIn(("hello", "debug", "hello"), by)
        self.assertIn((None, "info", "run created"), by)
        boom = [ln for ln in every if ln["step_id"] == "boom"]
        warnings = [ln["message"] for ln in boom if ln["level"] == "warning"]
        self.assertTrue(any(m.startswith("attempt 1 failed: ") for m in warnings), boom)
        self.assertTrue(any(m.startswith("retrying: attempt 2") for m in warnings), boom)
        errors = [ln for ln in every if ln["level"] == "error"]
        self.assertEqual([ln["step_id"] for ln in errors], ["boom", None], errors)
        self.assertTrue(errors[1]["message"].startswith("run failed: "), errors)

        only_errors = self.logs(srv, run_id, "?level=error")
        self.assertEqual(only_errors["logs"], errors)
        self.assertEqual(only_errors["next_after"], seqs[-1])
        at_least_warning = self.logs(srv, run_id, "?level=warning")["logs"]
        self.assertEqual({ln["level"] for ln in at_least_warning}, {"warning", "error"})
        self.assertNotIn("hello", [ln["step_id"] for ln in self.logs(srv, run_id,
                                                                      "?level=info")["logs"]])

        # paging: after + limit walk the same lines
        page, after, walked = None, 0, []
        while page is None or page["logs"]:
            page = self.logs(srv, run_id, "?limit=2&after=%d" % after)
            self.assertLessEqual(len(page["logs"]), 2)
            walked += page["logs"]
            after = page["next_after"]
        self.assertEqual(walked, every)

    def test_bad_input(self):
        srv = self.start_server()
        run_id = self.failed_run(srv)
        err = self.assertError(srv.get("/runs/%s/logs?level=loud" % run_id), 400)
        for name in LEVELS:
            self.assertIn(name, err["message"])
        self.assertError(srv.get("/runs/%s/logs?limit=0" % run_id), 400)
        self.assertError(srv.get("/runs/%s/logs?after=-1" % run_id), 400)
        self.assertError(srv.get("/runs/run_nope/logs"), 404)
        self.assertError(srv.get("/runs/run_nope/logs?level=error"), 404)


APPROVAL = {"name": "e2e-ops-approval", "steps": [
    {"id": "ask", "type": "approval", "config": {"prompt": "ok?"}}]}
SLOW = {"name": "e2e-ops-slow", "steps": [
    {"id": "wait", "type": "task", "config": {"duration_seconds": 60}}]}


class CliTest(su.ServerTest):
    """durable runs|show|cancel|retry|logs against a server and a db file."""

    def cli(self, *args, env=None, timeout=60):
        e = dict(os.environ)
        e.pop("DURABLE_TOKEN", None)
        e.update(env or {})
        return subprocess.run([su.DURABLE, *args], capture_output=True, text=True,
                              timeout=timeout * su.slow_factor(), stdin=subprocess.DEVNULL,
                              cwd=self.tmp, env=e)

    def write(self, name, doc):
        path = self.path(name)
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def assertExit(self, r, code, out=None, err=None):
        self.assertEqual(r.returncode, code, "exit %d\nstdout:\n%s\nstderr:\n%s"
                         % (r.returncode, r.stdout, r.stderr))
        if out is not None:
            self.assertIn(out, r.stdout)
        if err is not None:
            self.assertIn(err, r.stderr)

    def failed_db_run(self, db):
        """A run of FAILING made by `durable run` in db; returns its id."""
        r = self.cli("run", self.write("failing.json", FAILING), "--db", db,
                     "--input", '{"who": "ada"}')
        self.assertExit(r, 1)
        m = re.search(r"run (run_\w+) failed", r.stdout)
        self.assertTrue(m, r.stdout)
        return m.group(1)

    def test_against_a_server(self):
        srv = self.start_server(token="s3cret")
        url = "http://%s:%d" % (srv.host, srv.port)
        tok = ("--token", "s3cret")
        failed = self.wait_run(srv, self.start_run(srv, self.register(srv, FAILING)["id"],
                                                   {"input": {"who": "ada"}})["id"])["id"]
        slow = self.start_run(srv, self.register(srv, SLOW)["id"])["id"]
        waiting = self.start_run(srv, self.register(srv, APPROVAL)["id"])["id"]
        self.wait_run(srv, waiting, statuses=("waiting",))

        r = self.cli("runs", "--server", url, *tok)
        self.assertExit(r, 0, out=failed)
        self.assertIn(slow, r.stdout)
        r = self.cli("runs", "--server", url, "--status", "failed", env={"DURABLE_TOKEN": "s3cret"})
        self.assertExit(r, 0, out=failed)
        self.assertNotIn(slow, r.stdout)
        r = self.cli("runs", "--server", url, *tok, "--workflow", "e2e-ops-slow")
        self.assertExit(r, 0, out=slow)
        self.assertNotIn(failed, r.stdout)

        r = self.cli("show", "--server", url, *tok, failed)
        self.assertExit(r, 0, out="e2e-ops-failing  %s  failed" % failed)
        self.assertRegex(r.stdout, r"✗ boom\s+failed\s+attempt 2/2")
        self.assertRegex(r.stdout, r"✓ note\s+completed")
        self.assertIn("error: ", r.stdout)
        r = self.cli("show", "--server", url, *tok, waiting)
        self.assertExit(r, 0, out="durable approve|reject --server %s %s ask" % (url, waiting))

        r = self.cli("logs", "--server", url, *tok, failed, "--level", "error")
        self.assertExit(r, 0, out=" error   boom: failed for good at attempt 2")
        self.assertNotIn(" info ", r.stdout)
        self.assertNotIn("careful", r.stdout)
        r = self.cli("logs", "--server", url, *tok, failed)
        self.assertExit(r, 0, out=" warning note: careful with ada")

        r = self.cli("cancel", "--server", url, *tok, slow)
        self.assertExit(r, 0, out="run %s cancelled" % slow)
        self.assertEqual(self.run_json(srv, slow)["status"], "cancelled")
        r = self.cli("cancel", "--server", url, *tok, slow)
        self.assertExit(r, 1, err="the server answered 409")

        r = self.cli("retry", "--server", url, *tok, failed)
        self.assertExit(r, 0, out="run %s retried" % failed)
        self.assertEqual(self.wait_run(srv, failed)["status"], "failed")  # fails again
        self.assertEqual(len([e for e in self.events(srv, failed)
                              if e["type"] == "run_retried"]), 1)

        # bad input
        for cmd in ("show", "cancel", "retry", "logs"):
            r = self.cli(cmd, "--server", url, *tok, "run_nope")
            self.assertExit(r, 1, err="the server answered 404")
        r = self.cli("runs", "--server", url)  # no token
        self.assertExit(r, 1, err="the server answered 401")
        r = self.cli("runs", "--server", url, *tok, "--status", "done")
        self.assertExit(r, 2, err='--status is pending, running, waiting, completed, failed, '
                                  'cancelled or paused, not "done"')
        r = self.cli("logs", "--server", url, *tok, failed, "--level", "loud")
        self.assertExit(r, 2, err="--level is debug, info, warning or error")

    def test_against_a_db_file(self):
        db = self.path("ops.db")
        failed = self.failed_db_run(db)
        r = self.cli("runs", "--db", db)
        self.assertExit(r, 0, out=failed)
        self.assertIn("e2e-ops-failing v1", r.stdout)
        r = self.cli("runs", "--db", db, "--status", "completed")
        self.assertExit(r, 0, out="no runs")
        r = self.cli("show", "--db", db, failed)
        self.assertExit(r, 0, out="e2e-ops-failing  %s  failed" % failed)
        self.assertRegex(r.stdout, r"✗ boom\s+failed\s+attempt 2/2")
        r = self.cli("logs", "--db", db, failed, "--level", "warning")
        self.assertExit(r, 0, out=" warning note: careful with ada")
        self.assertIn(" error   boom: failed for good", r.stdout)
        self.assertNotIn(" debug ", r.stdout)
        r = self.cli("cancel", "--db", db, failed)
        self.assertExit(r, 1, err="run %s has already failed" % failed)
        # retry --db runs the run here and follows it to its (failed) end
        r = self.cli("retry", "--db", db, failed)
        self.assertExit(r, 1, out="run %s retried" % failed)
        self.assertRegex(r.stdout, r"✗ boom\s+failed\s+attempt 2/2")
        r = self.cli("logs", "--db", db, failed, "--level", "info")
        self.assertExit(r, 0, out="run retried")
        for cmd in ("show", "cancel", "retry", "logs"):
            self.assertExit(self.cli(cmd, "--db", db, "run_nope"), 1, err='run "run_nope"')
        self.assertExit(self.cli("runs", "--db", self.path("absent.db")), 1,
                        err="no database at")
        self.assertFalse(os.path.exists(self.path("absent.db")))

    def test_a_db_a_server_has_open(self):
        db = self.path("served.db")
        self.failed_db_run(db)
        self.start_server(db=db)
        r = self.cli("runs", "--db", db)
        self.assertExit(r, 1, err="(use --server URL)")

    def test_a_run_another_process_executes(self):
        db = self.path("busy.db")
        p = subprocess.Popen([su.DURABLE, "run", self.write("slow.json", SLOW), "--db", db],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, cwd=self.tmp)
        try:
            def running():
                r = self.cli("runs", "--db", db, "--status", "running") if os.path.exists(db) \
                    else None
                m = r and r.returncode == 0 and re.search(r"^(run_\w+)", r.stdout, re.M)
                return m and m.group(1)
            run_id = self.wait_for(running, 30, "the run to be running")
            self.assertExit(self.cli("show", "--db", db, run_id), 0, out="running")
            for cmd in ("cancel", "retry"):
                self.assertExit(self.cli(cmd, "--db", db, run_id), 1,
                                err="is being executed by another durable process")
        finally:
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=30)

    def test_usage(self):
        for cmd in ("runs", "show", "cancel", "retry", "logs"):
            r = self.cli(cmd, "--help")
            self.assertExit(r, 0, out="usage: durable %s (--server URL | --db PATH)" % cmd)
            r = self.cli(cmd, "run_x") if cmd == "runs" else self.cli(cmd, "run_x")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("usage: durable %s" % cmd, r.stderr)
        self.assertExit(self.cli("show", "--db", "x.db"), 2, err="RUN is required")
        self.assertExit(self.cli("show", "--db", "x.db", "--server", "http://h", "r"), 2,
                        err="exclude each other")
        self.assertExit(self.cli("show", "--db", "x.db", "r", "--level", "info"), 2,
                        err='unknown option "--level"')
        self.assertExit(self.cli("logs", "--server"), 2, err="--server needs a value")
        r = self.cli("runs", "--server", "http://127.0.0.1:1")
        self.assertExit(r, 1, err="could not reach http://127.0.0.1:1")

    def test_run_says_an_approval_waits(self):
        self.run_until_hint()
        self.run_until_hint()  # resumed with the same --id: waiting already, said again

    def run_until_hint(self):
        path = self.write("approval.json", APPROVAL)
        p = subprocess.Popen([su.DURABLE, "run", path, "--db", self.path("a.db"), "--id", "k"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, cwd=self.tmp)
        try:
            out = []

            def said():
                line = p.stdout.readline()
                out.append(line)
                return "`durable run` cannot take decisions" in line or not line
            self.wait_for(said, 30, "the approval hint")
            text = "".join(out) + p.stdout.readline() + p.stdout.readline()
            self.assertIn("step ask waits for a person's approval", text)
            self.assertRegex(text, r"durable approve --server URL run_\w+ ask")
            self.assertIn("durable serve --db %s" % self.path("a.db"), text)
        finally:
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=30)


if __name__ == "__main__":
    su.main()
