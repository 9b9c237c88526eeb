#!/usr/bin/env python3
"""Deleting finished runs (issue 14 item 6), on the real server:

  - DELETE /runs/{id}: 204, then the run, its events and its place in the
    list are gone (404); 404 for an unknown run, 409 for an unfinished one
    (the message says why), 401 without the token; `durable delete`;
  - DELETE /runs?older_than=&workflow=&status=&dry_run= (purge) and
    `durable purge` through the server and on the database file; typos and
    bad values are 400 (HTTP) or exit 2 (CLI) naming the problem;
  - DELETE /workflows/{name}/versions/{v}: 204 for a version with no runs,
    409 with runs, 404 unknown;
  - `serve --retain-finished`: finished runs disappear after the window,
    unfinished ones stay; a bad duration (flag or DURABLE_RETAIN_FINISHED)
    stops the server at start with exit 2;
  - a workflow's own window (`retain_finished` in its definition) applies
    to its runs instead of the server's, longer or shorter, also on a
    server without --retain-finished (after a SIGKILL and restart); a bad
    value is refused at registration naming the field;
  - SIGKILL while a retention pass deletes 1,500 runs: after a restart the
    database is intact (PRAGMA integrity_check), every run left has all
    its rows, no step, event or signal is left of a deleted run, and the
    unfinished run is untouched; global event ids are not given out again.

With --pg the server runs on the PostgreSQL database of DURABLE_TEST_PG
(the SQLite-only checks are skipped there).

Usage: test_retention.py --durable PATH --examples DIR [--pg]
"""
import concurrent.futures
import os
import sqlite3
import subprocess

import server_util as su

QUICK = {
    "name": "quick",
    "steps": [{"id": "a", "type": "transform", "config": {"expression": "{x: 1}"}},
              {"id": "b", "type": "transform", "depends_on": ["a"],
               "config": {"expression": "{y: 2}"}}],
}
OTHER = {
    "name": "other",
    "steps": [{"id": "a", "type": "transform", "config": {"expression": "{z: 3}"}}],
}
WAITER = {
    "name": "waiter",
    "steps": [{"id": "w", "type": "wait_signal", "config": {"signal": "go"}}],
}


class RetentionTest(su.ServerTest):

    def finished_run(self, srv, wf="quick"):
        run = self.start_run(srv, wf)
        return self.wait_run(srv, run["id"])

    def cli(self, *args, env=None):
        e = dict(os.environ)
        e.pop("DURABLE_TOKEN", None)
        if env:
            e.update(env)
        return subprocess.run([su.DURABLE] + list(args), capture_output=True, text=True,
                              timeout=60 * su.slow_factor(), env=e)

    def url(self, srv):
        return "http://%s:%d" % (srv.host, srv.port)

    def run_ids(self, srv, query=""):
        r = srv.get("/runs?limit=500" + query)
        self.assertOk(r)
        return {x["id"] for x in r.json()}

    def test_delete_run(self):
        srv = self.start_server(token="t0k")
        self.register(srv, QUICK)
        self.register(srv, WAITER)
        done = self.finished_run(srv)
        keep = self.finished_run(srv)
        self.assertEqual(done["status"], "completed")
        r = srv.request("DELETE", "/runs/%s" % done["id"], auth=False)
        self.assertError(r, 401)
        r = srv.request("DELETE", "/runs/%s" % done["id"])
        self.assertStatus(r, 204)
        self.assertEqual(r.body, b"")
        self.assertError(srv.get("/runs/%s" % done["id"]), 404)
        self.assertError(srv.get("/runs/%s/events" % done["id"]), 404)
        ids = self.run_ids(srv)
        self.assertNotIn(done["id"], ids)
        self.assertIn(keep["id"], ids)
        self.assertEqual(self.run_json(srv, keep["id"])["status"], "completed")
        self.assertError(srv.request("DELETE", "/runs/%s" % done["id"]), 404)
        self.assertError(srv.request("DELETE", "/runs/run_nope"), 404)
        self.assertError(srv.request("DELETE", "/runs/bad%20id"), 404)
        waiting = self.start_run(srv, "waiter")
        self.wait_run(srv, waiting["id"], statuses=("waiting",))
        err = self.assertError(srv.request("DELETE", "/runs/%s" % waiting["id"]), 409)
        self.assertIn("only a finished run", err["message"])
        self.assertIn("waiting", err["message"])
        self.assertEqual(self.run_json(srv, waiting["id"])["status"], "waiting")
        paths = srv.get("/openapi.json").json()["paths"]
        for route in ("/runs", "/runs/{id}", "/workflows/{name}/versions/{version}"):
            self.assertIn("delete", paths[route], "openapi.json: DELETE %s" % route)
        # the CLI, through the server
        p = self.cli("delete", "--server", self.url(srv), "--token", "t0k", keep["id"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("deleted", p.stdout)
        self.assertError(srv.get("/runs/%s" % keep["id"]), 404)
        p = self.cli("delete", "--server", self.url(srv), "--token", "t0k", waiting["id"])
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("only a finished run", p.stderr)

    def test_purge(self):
        srv = self.start_server()
        self.register(srv, QUICK)
        self.register(srv, OTHER)
        self.register(srv, WAITER)
        quick = [self.finished_run(srv)["id"] for _ in range(4)]
        other = [self.finished_run(srv, "other")["id"] for _ in range(3)]
        waiting = self.start_run(srv, "waiter")["id"]
        self.wait_run(srv, waiting, statuses=("waiting",))
        # hostile and mistyped parameters
        for q, word in (("older=1d", "unknown parameter"), ("older_than=5x", "duration"),
                        ("older_than=", "duration"), ("older_than=-3d", "duration"),
                        ("older_than=99999999999d", "out of range"),
                        ("status=running", "completed, failed, cancelled"),
                        ("status=", "completed"), ("workflow=", "workflow"),
                        ("dry_run=yes", "dry_run"), ("", "all=true"), ("dry_run=true", "all=true"),
                        ("all=yes", "all: true or false")):
            err = self.assertError(srv.request("DELETE", "/runs?" + q), 400)
            self.assertIn(word, err["message"], q)
        # nothing is old enough
        r = srv.request("DELETE", "/runs?older_than=1h")
        self.assertOk(r)
        self.assertEqual(r.json(), {"deleted": 0, "dry_run": False})
        r = srv.request("DELETE", "/runs?workflow=other&dry_run=true")
        self.assertOk(r)
        self.assertEqual(r.json(), {"deleted": 3, "dry_run": True})
        self.assertTrue(set(other) <= self.run_ids(srv))
        r = srv.request("DELETE", "/runs?workflow=other&status=completed")
        self.assertOk(r)
        self.assertEqual(r.json()["deleted"], 3)
        ids = self.run_ids(srv)
        self.assertFalse(set(other) & ids)
        self.assertTrue(set(quick) <= ids)
        # the CLI through the server
        p = self.cli("purge", "--server", self.url(srv), "--workflow", "quick", "--dry-run")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("4 finished runs would be deleted", p.stdout)
        p = self.cli("purge", "--server", self.url(srv), "--older-than", "5x")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--older-than", p.stderr)
        p = self.cli("purge", "--server", self.url(srv), "--status", "waiting")
        self.assertEqual(p.returncode, 2)
        self.assertIn("completed, failed or cancelled", p.stderr)
        p = self.cli("purge", "--server", self.url(srv), "--olderthan", "1d")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown option", p.stderr)
        p = self.cli("purge", "--server", self.url(srv), "--workflow", "quick")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("deleted 4 finished runs", p.stdout)
        self.assertEqual(self.run_ids(srv), {waiting})
        if su.is_pg(srv.db):
            return
        # on the database file, once the server is stopped
        more = [self.finished_run(srv)["id"] for _ in range(2)]
        self.assertEqual(srv.stop(), 0)
        p = self.cli("purge", "--db", srv.db)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("deleted %d finished runs" % len(more), p.stdout)
        srv.start()
        self.assertEqual(self.run_ids(srv), {waiting})
        self.assertEqual(self.run_json(srv, waiting)["status"], "waiting")

    def test_workflow_version_delete(self):
        srv = self.start_server()
        v1 = self.register(srv, QUICK)
        changed = dict(QUICK, description="second version")
        v2 = self.register(srv, changed)
        self.assertEqual((v1["version"], v2["version"]), (1, 2))
        self.finished_run(srv)  # a run of version 2 (the latest)
        err = self.assertError(srv.request("DELETE", "/workflows/quick/versions/2"), 409)
        self.assertIn("has runs", err["message"])
        self.assertStatus(srv.request("DELETE", "/workflows/quick/versions/1"), 204)
        self.assertError(srv.get("/workflows/%s" % v1["id"]), 404)
        self.assertOk(srv.get("/workflows/%s" % v2["id"]))
        self.assertError(srv.request("DELETE", "/workflows/quick/versions/1"), 404)
        self.assertError(srv.request("DELETE", "/workflows/quick/versions/9"), 404)
        self.assertError(srv.request("DELETE", "/workflows/quick/versions/abc"), 404)
        self.assertError(srv.request("DELETE", "/workflows/nope/versions/1"), 404)
        # once its runs are gone, the version goes too
        self.assertOk(srv.request("DELETE", "/runs?workflow=quick"))
        self.assertStatus(srv.request("DELETE", "/workflows/quick/versions/2"), 204)
        self.assertError(srv.get("/workflows/quick"), 404)

    def test_bad_retention_option(self):
        for args, env in ((["--retain-finished", "5x"], None),
                          (["--retain-finished", "0d"], None),
                          ([], {"DURABLE_RETAIN_FINISHED": "thirty days"})):
            e = dict(os.environ)
            e.update(env or {})
            p = subprocess.run([su.DURABLE, "serve", "--listen", "127.0.0.1:0", "--db",
                                self.path("x.db")] + args, capture_output=True, text=True,
                               env=e, timeout=30 * su.slow_factor())
            self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
            self.assertIn("--retain-finished", p.stderr)

    def test_retention_pass(self):
        srv = self.start_server(args=["--retain-finished", "2s"])
        self.register(srv, QUICK)
        self.register(srv, WAITER)
        waiting = self.start_run(srv, "waiter")["id"]
        old = [self.finished_run(srv)["id"] for _ in range(3)]
        self.wait_for(lambda: not (set(old) & self.run_ids(srv)), 60,
                      "the finished runs to be deleted by retention", interval=0.2)
        for rid in old:
            self.assertError(srv.get("/runs/%s" % rid), 404)
        self.assertEqual(self.run_json(srv, waiting)["status"], "waiting")
        # a run finishing now is kept for the window at least
        fresh = self.finished_run(srv)["id"]
        self.assertIn(fresh, self.run_ids(srv))

    def test_workflow_windows(self):
        keeper = dict(QUICK, name="keeper", retain_finished="1h")
        brief = dict(QUICK, name="brief", retain_finished="1s")
        srv = self.start_server(args=["--retain-finished", "3s"])
        for wf in (QUICK, keeper, brief):
            self.register(srv, wf)
        err = self.assertError(srv.post("/workflows", dict(QUICK, retain_finished="30 days")), 422)
        self.assertIn("retain_finished", err["message"])
        kept = self.finished_run(srv, "keeper")["id"]
        gone = [self.finished_run(srv, wf)["id"] for wf in ("quick", "brief")]
        self.wait_for(lambda: not (set(gone) & self.run_ids(srv)), 60,
                      "the runs of quick and brief to be deleted", interval=0.2)
        self.assertIn(kept, self.run_ids(srv))  # its 1 hour, not the server's 3 s
        # a server without a window of its own still keeps each workflow's:
        # brief's run goes, after a SIGKILL, at the first pass of the restart
        srv.args = []
        srv.kill()
        srv.start()
        short = self.finished_run(srv, "brief")["id"]
        plain = self.finished_run(srv, "quick")["id"]
        srv.kill()
        srv.start()
        self.wait_for(lambda: short not in self.run_ids(srv), 60,
                      "brief's run to be deleted by its own window", interval=0.2)
        self.assertTrue({kept, plain} <= self.run_ids(srv))

    def start_many(self, srv, wf, n):
        def one(_):
            r = srv.request("POST", "/workflows/%s/runs" % wf, json_body={})
            self.assertStatus(r, 202)
            return r.json()["id"]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(n)))

    def test_sigkill_during_retention(self):
        srv = self.start_server()
        if su.is_pg(srv.db):
            self.skipTest("checks the SQLite file")
        self.register(srv, QUICK)
        self.register(srv, WAITER)
        waiting = self.start_run(srv, "waiter")["id"]
        self.wait_run(srv, waiting, statuses=("waiting",))
        n = 1500
        self.start_many(srv, "quick", n)

        def all_done():
            r = srv.get("/runs?status=completed&limit=1")
            return r.total() == n
        self.wait_for(all_done, 120, "%d runs to complete" % n, interval=0.3)
        self.assertEqual(srv.stop(), 0)
        db = sqlite3.connect(srv.db)
        gid_before = db.execute("SELECT max(gid) FROM events").fetchone()[0]
        db.close()
        # retention of 1 s: the first pass (1 s after the start) deletes all
        # of them in batches of 500; kill as soon as some are gone
        srv.args = ["--retain-finished", "1s"]
        srv.start()

        def some_gone():
            r = srv.get("/runs?status=completed&limit=1")
            return r.total() < n
        self.wait_for(some_gone, 60, "retention to begin", interval=0.01)
        srv.kill()
        db = sqlite3.connect(srv.db)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            left = db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0]
            su.log("killed with %d of %d finished runs left" % (left, n))
            for table in ("steps", "events", "signals"):
                orphans = db.execute("SELECT count(*) FROM %s WHERE run_id NOT IN"
                                     " (SELECT id FROM runs)" % table).fetchone()[0]
                self.assertEqual(orphans, 0, "rows of %s left of deleted runs" % table)
            # every run left has all its rows: 2 steps, and its whole history
            bad = db.execute(
                "SELECT r.id FROM runs r WHERE r.status = 'completed' AND ("
                " (SELECT count(*) FROM steps s WHERE s.run_id = r.id) != 2 OR"
                " (SELECT count(*) FROM events e WHERE e.run_id = r.id)"
                "   != (SELECT max(seq) FROM events e WHERE e.run_id = r.id) OR"
                " NOT EXISTS (SELECT 1 FROM events e WHERE e.run_id = r.id"
                "   AND e.type = 'run_completed'))").fetchall()
            self.assertEqual(bad, [], "runs with rows missing")
            w = db.execute("SELECT status FROM runs WHERE id = ?", (waiting,)).fetchone()
            self.assertEqual(w, ("waiting",))
        finally:
            db.close()
        # restarted without retention: the waiting run goes on, and new
        # events get ids above every id given out before
        srv.args = []
        srv.start()
        self.assertEqual(self.run_json(srv, waiting)["status"], "waiting")
        self.assertOk(srv.request("DELETE", "/runs?status=completed"), 200)
        self.assertEqual(self.run_ids(srv), {waiting})
        r = srv.request("POST", "/runs/%s/signals/go" % waiting, body=b"{}",
                        headers={"Content-Type": "application/json"})
        self.assertStatus(r, 202)
        self.wait_run(srv, waiting)
        self.assertEqual(srv.stop(), 0)
        db = sqlite3.connect(srv.db)
        try:
            low = db.execute("SELECT min(gid) FROM events WHERE run_id = ? AND seq > 3",
                             (waiting,)).fetchone()[0]
        finally:
            db.close()
        self.assertGreater(low, gid_before, "event ids given out again after a deletion")


if __name__ == "__main__":
    su.main()
