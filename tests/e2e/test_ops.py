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


if __name__ == "__main__":
    su.main()
