#!/usr/bin/env python3
"""List filters and bulk operations over HTTP (issue 14 item 5).

  - GET /runs?created_after=&created_before= (RFC 3339, after inclusive,
    before exclusive) and ?input.FIELD=VALUE (VALUE read as JSON when it is a
    JSON scalar, else as a string; numbers by value); blank ones are no
    filter; a bad time, a bad field name, two input filters: 400;
  - POST /runs/bulk: a dry run counts and changes nothing; a bulk cancel of
    200 waiting runs reports matched 200, touched 200 and leaves the other
    workflow's runs alone; again: matched 200, touched 0; a bulk retry of
    failed runs; an empty filter is refused unless "all": true; hostile
    bodies (typos of action, field or status, bad times, an object as input
    value) get 400 naming the fault;
  - SIGKILL inside the bulk cancel's transaction (failpoint
    writer.bulk_item, after 100 of its 300 runs were applied): after a
    restart none of them is cancelled; SIGKILL right after the answer: all
    300 stay cancelled.

With --pg the server runs on the PostgreSQL database of DURABLE_TEST_PG.

Usage: test_bulk.py --durable PATH --examples DIR [--pg]
"""
import http.client
import json
import subprocess
import urllib.parse

import server_util as su

WAITER = {"name": "bulk-waiter",
          "steps": [{"id": "nap", "type": "delay", "config": {"seconds": 600}}]}
OTHER = {"name": "bulk-other",
         "steps": [{"id": "nap", "type": "delay", "config": {"seconds": 600}}]}
FAILER = {"name": "bulk-failer",
          "steps": [su.task("boom", seconds=0.01, fail_probability=1.0)]}


class BulkTest(su.ServerTest):

    def start(self, srv, wf, inputs):
        return [self.start_run(srv, wf, {"input": i})["id"] for i in inputs]

    def ids(self, srv, query):
        r = srv.get("/runs?limit=500&" + query)
        self.assertOk(r)
        return sorted(x["id"] for x in r.json()), r.total()

    def bulk(self, srv, body, expect=200):
        r = srv.post("/runs/bulk", body)
        if expect == 200:
            self.assertOk(r)
            return r.json()
        return self.assertError(r, expect)

    def count(self, srv, wf, status):
        r = srv.get("/runs?limit=1&workflow_id=%s&status=%s" % (wf, status))
        self.assertOk(r)
        return r.total()

    def test_list_filters(self):
        srv = self.start_server()
        self.register(srv, WAITER)
        a, b, c = self.start(srv, "bulk-waiter", [{"customer_id": 7, "name": "alice"},
                                                  {"customer_id": "7", "name": "bob"},
                                                  {"customer_id": 7.0, "nested": {"x": True}}])
        self.wait_for(lambda: self.count(srv, "bulk-waiter", "waiting") == 3, 60,
                      "3 waiting runs")
        q = urllib.parse.quote
        self.assertEqual(self.ids(srv, "input.customer_id=7"), (sorted([a, c]), 2))
        self.assertEqual(self.ids(srv, "input.customer_id=" + q('"7"')), ([b], 1))
        self.assertEqual(self.ids(srv, "input.name=alice"), ([a], 1))
        self.assertEqual(self.ids(srv, "input.name=" + q('"bob"')), ([b], 1))
        self.assertEqual(self.ids(srv, "input.nested.x=true"), ([c], 1))
        self.assertEqual(self.ids(srv, "input.name=carol"), ([], 0))
        # blank optional fields are no filter
        self.assertEqual(self.ids(srv, "input.name=&created_after=&finished_before=")[1], 3)
        runs = {x["id"]: x for x in srv.get("/runs?limit=10").json()}
        t_b = runs[b]["created_at"]
        after = self.ids(srv, "created_after=" + q(t_b))[0]
        self.assertIn(b, after)
        before = self.ids(srv, "created_before=" + q(t_b))[0]
        self.assertNotIn(b, before)
        self.assertEqual(sorted(after + before), sorted([a, b, c]))
        self.assertEqual(self.ids(srv, "created_after=2000-01-01T00:00:00Z&"
                                       "created_before=2000-01-02T00:00:00%2B02:00")[1], 0)
        self.assertEqual(self.ids(srv, "finished_after=2000-01-01T00:00:00Z")[1], 0)
        self.assertEqual(self.ids(srv, "input.customer_id=7&status=waiting&workflow_id="
                                       "bulk-waiter")[1], 2)
        for bad, word in (("created_after=yesterday", "created_after"),
                          ("created_before=2026-13-01T00:00:00Z", "created_before"),
                          ("finished_after=2026-01-01", "finished_after"),
                          ("input.a..b=1", "empty name"),
                          ("input.a%20b=1", "[A-Za-z0-9_-]"),
                          ("input.a=1&input.b=2", "one input filter"),
                          ("input.a=" + q('{"x":1}'), "string, number"),
                          ("input." + "x" * 700 + "=1", "too long")):
            err = self.assertError(srv.get("/runs?" + bad), 400)
            self.assertIn(word, err["message"], bad)

    def test_bulk_cancel_counts(self):
        srv = self.start_server()
        self.register(srv, WAITER)
        self.register(srv, OTHER)
        ids = self.start(srv, "bulk-waiter", [{"i": i} for i in range(200)])
        others = self.start(srv, "bulk-other", [{"i": i} for i in range(5)])
        self.wait_for(lambda: self.count(srv, "bulk-waiter", "waiting") == 200, 60,
                      "200 waiting runs")
        flt = {"workflow": "bulk-waiter", "status": "", "created_after": None}
        out = self.bulk(srv, {"action": "cancel", "filter": flt, "dry_run": True})
        self.assertEqual(out, {"action": "cancel", "matched": 200, "touched": 200,
                               "dry_run": True})
        self.assertEqual(self.count(srv, "bulk-waiter", "cancelled"), 0)
        out = self.bulk(srv, {"action": "cancel", "filter": flt})
        self.assertEqual(out, {"action": "cancel", "matched": 200, "touched": 200,
                               "dry_run": False})
        self.assertEqual(self.count(srv, "bulk-waiter", "cancelled"), 200)
        self.assertEqual(self.count(srv, "bulk-other", "waiting"), 5)
        run = self.run_json(srv, ids[17])
        self.assertEqual(run["status"], "cancelled")
        self.assertEqual(run["steps"][0]["status"], "cancelled")
        out = self.bulk(srv, {"action": "cancel", "filter": flt})
        self.assertEqual((out["matched"], out["touched"]), (200, 0))
        # an input filter picks one
        out = self.bulk(srv, {"action": "cancel",
                              "filter": {"workflow": "bulk-other", "input": {"i": 3}}})
        self.assertEqual((out["matched"], out["touched"]), (1, 1))
        self.assertEqual(self.run_json(srv, others[3])["status"], "cancelled")
        self.assertEqual(self.count(srv, "bulk-other", "waiting"), 4)
        # "all": every run, here only the 4 left unfinished change
        out = self.bulk(srv, {"action": "cancel", "all": True})
        self.assertEqual((out["matched"], out["touched"]), (205, 4))

    def test_bulk_retry(self):
        srv = self.start_server()
        self.register(srv, FAILER)
        ids = self.start(srv, "bulk-failer", [{"n": i} for i in range(6)])
        self.wait_for(lambda: self.count(srv, "bulk-failer", "failed") == 6, 60, "6 failed runs")
        out = self.bulk(srv, {"action": "retry", "filter": {"status": "failed",
                                                            "workflow": "bulk-failer"}})
        self.assertEqual((out["matched"], out["touched"]), (6, 6))
        for rid in ids:
            self.wait_for(lambda: sum(e["type"] == "run_retried" for e in self.events(srv, rid))
                          == 1, 30, "run %s retried" % rid)
            self.wait_run(srv, rid, statuses=("failed",))
        # a run that is not failed is matched, not retried
        self.register(srv, WAITER)
        self.start(srv, "bulk-waiter", [{}])
        out = self.bulk(srv, {"action": "retry", "filter": {"workflow": "bulk-waiter"}})
        self.assertEqual((out["matched"], out["touched"]), (1, 0))

    def test_bulk_pause_resume(self):
        srv = self.start_server()
        self.register(srv, WAITER)
        ids = self.start(srv, "bulk-waiter", [{"who": "ann" if i < 2 else "bob"} for i in range(4)])
        self.wait_for(lambda: self.count(srv, "bulk-waiter", "waiting") == 4, 60,
                      "4 waiting runs")
        ann = {"action": "pause", "filter": {"input": {"who": "ann"}}}
        out = self.bulk(srv, dict(ann, dry_run=True))
        self.assertEqual((out["matched"], out["touched"]), (2, 2))
        self.assertEqual(self.count(srv, "bulk-waiter", "paused"), 0)
        out = self.bulk(srv, ann)
        self.assertEqual((out["matched"], out["touched"]), (2, 2))
        self.assertEqual(sorted(self.ids(srv, "status=paused")[0]), sorted(ids[:2]))
        self.assertEqual(self.count(srv, "bulk-waiter", "waiting"), 2)
        # paused runs are matched again, not paused twice
        out = self.bulk(srv, ann)
        self.assertEqual((out["matched"], out["touched"]), (2, 0))
        # resume touches only the paused ones among those matched
        out = self.bulk(srv, {"action": "resume", "filter": {"workflow": "bulk-waiter"}})
        self.assertEqual((out["matched"], out["touched"]), (4, 2))
        self.wait_for(lambda: self.count(srv, "bulk-waiter", "waiting") == 4, 60,
                      "4 waiting runs again")
        for rid in ids[:2]:
            types = [e["type"] for e in self.events(srv, rid)]
            self.assertEqual((types.count("run_paused"), types.count("run_resumed")), (1, 1),
                             types)

    def test_refusals(self):
        srv = self.start_server()
        self.register(srv, WAITER)
        self.start(srv, "bulk-waiter", [{}])
        self.wait_for(lambda: self.count(srv, "bulk-waiter", "waiting") == 1, 60, "a waiting run")
        for body, word in (({"action": "cancel"}, "empty filter"),
                           ({"action": "cancel", "filter": {}}, "empty filter"),
                           ({"action": "cancel", "filter": {"status": "", "input": None}},
                            "empty filter"),
                           ({"action": "cancle", "filter": {"status": "waiting"}}, "cancle"),
                           ({"action": "pasue", "filter": {"status": "waiting"}}, "pause"),
                           ({"filter": {"status": "waiting"}}, "action"),
                           ({"action": "cancel", "filter": {"stauts": "waiting"}}, "stauts"),
                           ({"action": "cancel", "filter": {"status": "runing"}}, "runing"),
                           ({"action": "cancel", "filtr": {"status": "waiting"}}, "filtr"),
                           ({"action": "cancel", "filter": ["waiting"]}, "filter"),
                           ({"action": "cancel", "filter": {"created_after": "now"}},
                            "created_after"),
                           ({"action": "cancel", "filter": {"created_after": 5}},
                            "created_after"),
                           ({"action": "cancel", "filter": {"input": {"a": {"b": 1}}}},
                            "string, number"),
                           ({"action": "cancel", "filter": {"input": {"a": 1, "b": 2}}},
                            "one input field"),
                           ({"action": "cancel", "filter": {"input": {"a b": 1}}},
                            "[A-Za-z0-9_-]"),
                           ({"action": "cancel", "filter": {"workflow": "x/y"}}, "workflow"),
                           ({"action": "cancel", "all": "yes"}, "all"),
                           ({"action": "cancel", "all": True, "dry_run": 1}, "dry_run")):
            err = self.bulk(srv, body, expect=400)
            self.assertIn(word, err["message"], json.dumps(body))
        self.assertError(srv.request("POST", "/runs/bulk", body="{nope",
                                     headers={"Content-Type": "application/json"}), 400)
        self.assertEqual(self.count(srv, "bulk-waiter", "waiting"), 1)

    def cli(self, *args):
        p = subprocess.run([su.DURABLE] + list(args), capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout + p.stderr

    def test_cli(self):
        srv = self.start_server()
        url = "http://%s:%d" % (srv.host, srv.port)
        self.register(srv, WAITER)
        ids = self.start(srv, "bulk-waiter", [{"i": i, "who": "ann" if i < 2 else "bob"}
                                              for i in range(5)])
        self.wait_for(lambda: self.count(srv, "bulk-waiter", "waiting") == 5, 60,
                      "5 waiting runs")
        rc, out = self.cli("runs", "--server", url, "--input", "who=ann",
                           "--created-after", "2000-01-01T00:00:00Z")
        self.assertEqual(rc, 0, out)
        self.assertEqual(sorted(x for x in ids if x in out), sorted(ids[:2]), out)
        rc, out = self.cli("bulk", "--server", url, "cancel", "--workflow", "bulk-waiter",
                           "--input", "i=4", "--dry-run")
        self.assertEqual((rc, out.strip()), (0, "cancel: 1 runs matched, 1 would change "
                                                "(dry run: nothing changed)"))
        rc, out = self.cli("bulk", "--server", url, "cancel", "--input", "who=ann")
        self.assertEqual((rc, out.strip()), (0, "cancel: 2 runs matched, 2 changed"))
        self.assertEqual(self.count(srv, "bulk-waiter", "cancelled"), 2)
        rc, out = self.cli("bulk", "--server", url, "cancel")
        self.assertEqual(rc, 1, out)
        self.assertIn("empty filter", out)
        rc, out = self.cli("bulk", "--server", url, "cancel", "--created-before", "today")
        self.assertEqual(rc, 2, out)
        rc, out = self.cli("bulk", "--server", url, "cancle", "--status", "waiting")
        self.assertEqual(rc, 1, out)
        self.assertIn("cancle", out)
        self.assertEqual(self.count(srv, "bulk-waiter", "waiting"), 3)
        if su.is_pg(srv.db):
            return
        srv.stop()
        rc, out = self.cli("runs", "--db", srv.db, "--input", "who=ann", "--status", "cancelled")
        self.assertEqual(rc, 0, out)
        self.assertEqual(sorted(x for x in ids if x in out), sorted(ids[:2]), out)

    def kill_test(self, env, expect_cancelled):
        srv = self.start_server(env=env)
        self.register(srv, WAITER)
        self.start(srv, "bulk-waiter", [{"i": i} for i in range(300)])
        self.wait_for(lambda: self.count(srv, "bulk-waiter", "waiting") == 300, 60,
                      "300 waiting runs")
        try:
            r = srv.post("/runs/bulk", {"action": "cancel", "filter": {"workflow": "bulk-waiter"}},
                         timeout=60)
        except (OSError, http.client.HTTPException):
            r = None
        if expect_cancelled == 0:
            self.wait_for(lambda: not srv.running(), 30, "the failpoint's SIGKILL")
        else:
            self.assertOk(r)
            self.assertEqual(r.json()["touched"], 300)
            srv.kill()
        srv.env = {}
        srv.start()
        self.assertEqual(self.count(srv, "bulk-waiter", "cancelled"), expect_cancelled)
        self.assertEqual(self.count(srv, "bulk-waiter", "waiting"), 300 - expect_cancelled)

    def test_sigkill_inside_bulk_cancel(self):
        self.kill_test({"DURABLE_FAILPOINT": "writer.bulk_item:100"}, 0)

    def test_sigkill_after_bulk_cancel(self):
        self.kill_test(None, 300)


if __name__ == "__main__":
    su.main()
