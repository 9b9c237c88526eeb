#!/usr/bin/env python3
"""Schedules over HTTP (issue 14 item 1): POST/GET/DELETE /schedules,
pause and resume, on the real server with `every: 1s`.

  - a schedule fires: its runs carry the key schedule:<id>:<tick>, and GET
    shows fired, last_tick and the next 5 fire times, 1 s apart;
  - overlap policies with runs longer than the interval: skip never has two
    runs unfinished and counts skipped ticks; queue_one never has two and
    skips none; cancel_previous cancels the run before; allow overlaps;
  - pause stops the ticks, resume starts them again;
  - SIGKILL at random moments while ticking: no tick started two runs, every
    run's tick is one the schedule recorded, and catch_up all leaves no
    tick of the downtime out, while catch_up none leaves the downtime's
    ticks out;
  - `schedules` in a workflow definition (JSON and YAML): created at
    registration, replaced (same id, last tick kept) by registering again,
    every member's error located (422);
  - the command line: `durable schedule add|list|pause|resume|rm` through
    --server and on --db (a schedule added on the file fires once a server
    opens it); its errors (a bad cron field, no --cron nor --every, --input
    not an object, an unknown schedule) exit 1 or 2 with the reason;
  - queue_one: a tick queued behind a running run fires when that run
    ends, not at the next tick;
  - on PostgreSQL (--pg), two nodes fire one `every: 1s` schedule: each
    tick started exactly one run (its key), and after a SIGKILL of one node
    the ticks go on from the survivor without a gap (catch_up all);
  - hostile input: located errors (422) for a bad cron field, a typo in a
    member's name, an unknown workflow, cron and every both, a bad time zone,
    an oversized interval; 400 for malformed JSON; blank optional members
    take their defaults; an unknown schedule is 404.

Usage: test_schedules.py --durable PATH --examples DIR [--pg]
"""
import datetime
import random
import subprocess
import time

import server_util as su


def iso_s(text):
    """Seconds since the epoch of an API time (\"2026-12-07T19:24:57.913Z\")."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def wf(name, seconds):
    return {"name": name, "steps": [su.task("t", seconds=seconds)]}


class ScheduleTest(su.ServerTest):

    def create(self, srv, body, expect=201):
        r = srv.post("/schedules", body)
        self.assertStatus(r, expect)
        return r.json()

    def sched(self, srv, sid):
        r = srv.get("/schedules/%s" % sid)
        self.assertStatus(r, 200)
        return r.json()

    def runs_of(self, srv, workflow, sid):
        r = srv.get("/runs?workflow=%s&limit=500" % workflow)
        self.assertStatus(r, 200)
        prefix = "schedule:%s:" % sid
        return [x for x in r.json() if (x.get("idempotency_key") or "").startswith(prefix)]

    def ticks_of(self, runs, sid):
        return [int(x["idempotency_key"].split(":")[2]) for x in runs]

    def test_fires_with_next_times(self):
        srv = self.start_server()
        self.register(srv, wf("sch-fast", 0.05))
        s = self.create(srv, {"id": "fast", "workflow": "sch-fast", "every": "1s",
                              "overlap": "allow", "input": {"n": 7}})
        self.assertEqual(s["every"], "1s")
        self.assertEqual(s["timezone"], "UTC")
        self.assertEqual(s["catch_up"], "last")
        self.assertEqual(len(s["next"]), 5)
        self.wait_for(lambda: len(self.runs_of(srv, "sch-fast", "fast")) >= 3, 30,
                      "three runs of the schedule")
        runs = self.runs_of(srv, "sch-fast", "fast")
        self.assertEqual(runs[0]["input"], {"n": 7})
        ticks = sorted(self.ticks_of(runs, "fast"))
        self.assertEqual(len(ticks), len(set(ticks)))
        for a, b in zip(ticks, ticks[1:]):
            self.assertEqual((b - a) % 1000, 0)
        s = self.sched(srv, "fast")
        self.assertGreaterEqual(s["fired"], 3)
        self.assertIsNotNone(s["last_tick"])
        self.assertEqual(len(s["next"]), 5)
        self.assertTrue(all(su.RFC3339_MS.match(t) for t in s["next"]))
        self.assertEqual(s["next"], sorted(s["next"]))
        self.assertGreater(s["next"][0], s["last_tick"])
        listed = srv.get("/schedules").json()
        self.assertEqual([x["id"] for x in listed], ["fast"])
        r = srv.request("DELETE", "/schedules/fast")
        self.assertStatus(r, 200)
        self.assertStatus(srv.get("/schedules/fast"), 404)

    def unfinished(self, srv, workflow, sid):
        return [x for x in self.runs_of(srv, workflow, sid)
                if x["status"] not in su.FINISHED]

    def test_overlap_skip_and_queue_one(self):
        srv = self.start_server()
        self.register(srv, wf("sch-slow", 2.5))
        self.create(srv, {"id": "skip", "workflow": "sch-slow", "every": "1s",
                          "overlap": "skip"})
        self.create(srv, {"id": "q1", "workflow": "sch-slow", "every": "1s",
                          "overlap": "queue_one"})
        seen = {"skip": 0, "q1": 0}

        def enough():
            for sid in ("skip", "q1"):
                n = len(self.unfinished(srv, "sch-slow", sid))
                self.assertLessEqual(n, 1, "%s: two runs of the schedule at once" % sid)
                seen[sid] = max(seen[sid], n)
            return self.sched(srv, "skip")["skipped"] >= 2 and \
                self.sched(srv, "q1")["fired"] >= 2
        self.wait_for(enough, 60, "skipped ticks and a queued run")
        self.assertEqual(self.sched(srv, "q1")["skipped"], 0)
        self.assertGreaterEqual(self.sched(srv, "skip")["fired"], 1)

    def test_queue_one_fires_when_the_run_ends(self):
        """A tick queued behind a running run fires when that run ends, not
        at the next tick: every 4 s, runs of 5 s, so the second tick waits
        for the first run, which ends about 3 s before the third tick."""
        srv = self.start_server()
        self.register(srv, wf("sch-long", 5))
        self.create(srv, {"id": "q", "workflow": "sch-long", "every": "4s",
                          "overlap": "queue_one"})

        def two_runs():
            runs = sorted(self.runs_of(srv, "sch-long", "q"), key=lambda x: x["created_at"])
            return runs if len(runs) >= 2 and runs[0].get("completed_at") else None
        first, second = self.wait_for(two_runs, 30, "the queued run")[:2]
        gap = iso_s(second["created_at"]) - iso_s(first["completed_at"])
        self.assertLess(gap, 1.5, "the queued run started %.2fs after the first ended" % gap)

    def test_overlap_cancel_previous_and_allow(self):
        srv = self.start_server()
        self.register(srv, wf("sch-long", 30))
        self.create(srv, {"id": "cp", "workflow": "sch-long", "every": "1s",
                          "overlap": "cancel_previous"})
        self.create(srv, {"id": "al", "workflow": "sch-long", "every": "1s",
                          "overlap": "allow"})

        def done():
            cancelled = [x for x in self.runs_of(srv, "sch-long", "cp")
                         if x["status"] == "cancelled"]
            return len(cancelled) >= 2 and len(self.unfinished(srv, "sch-long", "al")) >= 2
        self.wait_for(done, 60, "cancelled runs and overlapping ones")
        self.assertLessEqual(len(self.unfinished(srv, "sch-long", "cp")), 1)
        for sid in ("cp", "al"):
            srv.request("DELETE", "/schedules/%s" % sid)

    def test_pause_resume(self):
        srv = self.start_server()
        self.register(srv, wf("sch-p", 0.01))
        self.create(srv, {"id": "p", "workflow": "sch-p", "every": "1s", "overlap": "allow"})
        self.wait_for(lambda: self.sched(srv, "p")["fired"] >= 1, 30, "a first tick")
        r = srv.post("/schedules/p/pause")
        self.assertStatus(r, 200)
        self.assertTrue(r.json()["paused"])
        time.sleep(0.5)  # a tick being fired as the pause commits may still land
        fired = self.sched(srv, "p")["fired"]
        time.sleep(2.5)
        self.assertEqual(self.sched(srv, "p")["fired"], fired)
        r = srv.post("/schedules/p/resume")
        self.assertStatus(r, 200)
        self.assertFalse(r.json()["paused"])
        self.wait_for(lambda: self.sched(srv, "p")["fired"] > fired, 30, "ticks after resume")
        self.assertStatus(srv.post("/schedules/nosuch/pause"), 404)

    def test_sigkill_while_ticking(self):
        srv = self.start_server()
        self.register(srv, wf("sch-k", 0.01))
        all_ = self.create(srv, {"id": "kall", "workflow": "sch-k", "every": "1s",
                                 "overlap": "allow", "catch_up": "all"})
        self.create(srv, {"id": "knone", "workflow": "sch-k", "every": "1s",
                          "overlap": "allow", "catch_up": "none"})
        rng = random.Random()
        for _ in range(5):
            time.sleep(rng.uniform(0.2, 1.5))
            srv.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            srv.start()
        # a downtime of 3 s: catch_up none loses those ticks, all fires them
        self.wait_for(lambda: self.sched(srv, "knone")["fired"] >= 1, 30, "a tick")
        srv.kill()
        time.sleep(3.2)
        srv.start()
        self.wait_for(lambda: self.sched(srv, "kall")["fired"] >= 10, 60, "ten ticks")
        time.sleep(1.5)
        for sid in ("kall", "knone"):
            srv.post("/schedules/%s/pause" % sid)
        time.sleep(0.5)
        for sid in ("kall", "knone"):
            s = self.sched(srv, sid)
            runs = self.runs_of(srv, "sch-k", sid)
            ticks = sorted(self.ticks_of(runs, sid))
            self.assertEqual(len(ticks), len(set(ticks)), "%s: a tick started two runs" % sid)
            self.assertEqual(len(runs), s["fired"], sid)
        kall = sorted(self.ticks_of(self.runs_of(srv, "sch-k", "kall"), "kall"))
        # every tick from the first to the last fired once: none was lost
        self.assertEqual(kall, list(range(kall[0], kall[-1] + 1, 1000)))
        knone = sorted(self.ticks_of(self.runs_of(srv, "sch-k", "knone"), "knone"))
        gaps = [b - a for a, b in zip(knone, knone[1:])]
        self.assertGreaterEqual(max(gaps), 3000, "catch_up none fired the downtime's ticks")
        self.assertEqual(all_["catch_up"], "all")

    def test_in_definition(self):
        srv = self.start_server()
        d = wf("sch-def", 0.01)
        d["schedules"] = [{"id": "def-fast", "every": "1s", "overlap": "allow"},
                          {"id": "def-night", "cron": "30 2 * * *", "timezone": "Europe/Paris",
                           "input": {"n": 1}}]
        self.assertStatus(srv.post("/workflows", d), 201)
        night = self.sched(srv, "def-night")
        self.assertEqual((night["workflow"], night["timezone"], night["input"]),
                         ("sch-def", "Europe/Paris", {"n": 1}))
        self.assertTrue(all(t.endswith("T01:30:00.000Z") for t in night["next"]), night["next"])
        self.wait_for(lambda: self.sched(srv, "def-fast")["fired"] >= 1, 30, "a tick")
        # registered again (a new version): the same schedules, replaced
        d["schedules"][0]["every"] = "2s"
        d["description"] = "v2"
        self.assertStatus(srv.post("/workflows", d), 201)
        fast = self.sched(srv, "def-fast")
        self.assertEqual(fast["every"], "2s")
        self.assertGreaterEqual(fast["fired"], 1)
        self.assertEqual(len([s for s in srv.get("/schedules").json()
                              if s["workflow"] == "sch-def"]), 2)
        # YAML
        r = srv.request("POST", "/workflows", body=(
            "name: sch-yaml\nsteps:\n  - id: t\n    type: task\n"
            "schedules:\n  - id: yaml-hourly\n    cron: '@hourly'\n").encode(),
            headers={"Content-Type": "application/yaml"})
        self.assertStatus(r, 201)
        self.assertEqual(self.sched(srv, "yaml-hourly")["cron"], "@hourly")
        # located errors, nothing registered
        bad = wf("sch-bad", 0.01)
        bad["schedules"] = [{"cron": "0 24 * * *", "workflow": "x"},
                            {"id": "b", "every": "1x", "overlap": "skp"}]
        r = srv.post("/workflows", bad)
        self.assertStatus(r, 422)
        details = r.json()["error"]["details"]
        for want in ("schedules[0].cron: cron field 2 (hour), column 3: out of range 0-23",
                     "schedules[0].workflow: a definition's schedules start this workflow",
                     "schedules[0]: id is required",
                     'schedules[1].every: every: "1x", column 2: a unit is expected',
                     'schedules[1].overlap: "skp" is not one of skip'):
            self.assertTrue(any(x.startswith(want) for x in details), (want, details))
        self.assertStatus(srv.get("/workflows/sch-bad"), 404)
        for sid in ("def-fast", "def-night", "yaml-hourly"):
            srv.request("DELETE", "/schedules/%s" % sid)

    def cli(self, *args, expect=0):
        out = subprocess.run([su.DURABLE, "schedule"] + [str(a) for a in args],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, expect, "durable schedule %s: %s%s"
                         % (" ".join(map(str, args)), out.stdout, out.stderr))
        return out.stdout + out.stderr

    def test_cli(self):
        srv = self.start_server()
        self.register(srv, wf("sch-cli", 0.01))
        url = "http://%s:%d" % (srv.host, srv.port)
        out = self.cli("add", "--server", url, "sch-cli", "--every", "1s", "--id", "c1",
                       "--overlap", "allow", "--input", '{"n": 3}')
        self.assertIn("schedule c1 created", out)
        self.assertEqual(out.count("  next: "), 5, out)
        s = self.sched(srv, "c1")
        self.assertEqual((s["every"], s["overlap"], s["input"]), ("1s", "allow", {"n": 3}))
        out = self.cli("list", "--server", url)
        row = [line for line in out.splitlines() if line.startswith("c1 ")]
        self.assertEqual(len(row), 1, out)
        self.assertIn("sch-cli", row[0])
        self.assertIn("every 1s", row[0])
        self.assertIn("active", row[0])
        deadline = time.time() + 30 * su.slow_factor()
        while time.time() < deadline and self.sched(srv, "c1")["fired"] < 1:
            time.sleep(0.2)
        self.assertGreaterEqual(self.sched(srv, "c1")["fired"], 1)
        self.assertIn("schedule c1 paused", self.cli("pause", "--server", url, "c1"))
        self.assertTrue(self.sched(srv, "c1")["paused"])
        self.assertIn("paused", [l for l in self.cli("list", "--server", url).splitlines()
                                 if l.startswith("c1 ")][0])
        self.assertIn("schedule c1 resumed", self.cli("resume", "--server", url, "c1"))
        self.assertFalse(self.sched(srv, "c1")["paused"])
        self.assertIn("schedule c1 deleted", self.cli("rm", "--server", url, "c1"))
        self.assertStatus(srv.get("/schedules/c1"), 404)
        # errors: the server's reason (exit 1), usage errors (exit 2)
        out = self.cli("add", "--server", url, "sch-cli", "--cron", "0 24 * * *", expect=1)
        self.assertIn("cron field 2 (hour), column 3: out of range 0-23", out)
        out = self.cli("add", "--server", url, "nosuch", "--every", "1s", expect=1)
        self.assertIn('no workflow named "nosuch"', out)
        self.assertIn("--cron EXPR or --every INTERVAL is required",
                      self.cli("add", "--server", url, "sch-cli", expect=2))
        self.assertIn("--input is a JSON object",
                      self.cli("add", "--server", url, "sch-cli", "--every", "1s",
                               "--input", "[1]", expect=2))
        self.assertIn("--catch-up-max is a whole number",
                      self.cli("add", "--server", url, "sch-cli", "--every", "1s",
                               "--catch-up-max", "ten", expect=2))
        self.assertIn('unknown option "--evry"',
                      self.cli("add", "--server", url, "sch-cli", "--evry", "1s", expect=2))
        self.assertIn("the action is add, list", self.cli("ad", "--server", url, expect=2))
        self.assertIn("not found", self.cli("rm", "--server", url, "nosuch", expect=1))
        self.assertIn("ID is required", self.cli("pause", "--server", url, expect=2))
        if su.is_pg(srv.db):
            return  # --db on PostgreSQL joins the cluster: the file's lock is SQLite's
        # on the database file: added while no server runs, fired by the next
        srv.stop()
        out = self.cli("add", "--db", srv.db, "sch-cli", "--every", "1s", "--id", "f1",
                       "--catch-up", "", "--timezone", "")
        self.assertIn("schedule f1 created", out)
        out = self.cli("list", "--db", srv.db)
        self.assertIn("f1 ", out)
        self.assertIn("UTC", out)
        srv.start()
        deadline = time.time() + 30 * su.slow_factor()
        while time.time() < deadline and self.sched(srv, "f1")["fired"] < 1:
            time.sleep(0.2)
        self.assertGreaterEqual(self.sched(srv, "f1")["fired"], 1)
        # a file a server has open is refused: the server fires its schedules
        self.assertIn("use --server URL", self.cli("rm", "--db", srv.db, "f1", expect=1))

    def test_two_nodes_pg(self):
        db = su.default_db(self.tmp)
        if not su.is_pg(db):
            self.skipTest("PostgreSQL only (--pg)")
        nodes = [self.start_server(name=n, db=db, args=["--node", n, "--lease", "2s"])
                 for n in ("s1", "s2")]
        self.register(nodes[0], wf("sch-2n", 0.01))
        self.create(nodes[0], {"id": "two", "workflow": "sch-2n", "every": "1s",
                               "overlap": "allow", "catch_up": "all"})
        self.wait_for(lambda: self.sched(nodes[1], "two")["fired"] >= 4, 60, "ticks on two nodes")
        nodes[0].kill()
        before = self.sched(nodes[1], "two")["fired"]
        self.wait_for(lambda: self.sched(nodes[1], "two")["fired"] >= before + 4, 60,
                      "ticks on the survivor")
        nodes[1].post("/schedules/two/pause")
        time.sleep(0.5)
        s = self.sched(nodes[1], "two")
        runs = self.runs_of(nodes[1], "sch-2n", "two")
        ticks = sorted(self.ticks_of(runs, "two"))
        self.assertEqual(len(ticks), len(set(ticks)), "a tick started two runs")
        self.assertEqual(len(runs), s["fired"], "every fired tick has its run, no other")
        self.assertEqual(s["skipped"], 0)
        self.assertEqual(ticks, list(range(ticks[0], ticks[-1] + 1, 1000)),
                         "a tick was lost across the kill")
        key_rows = su.psql_rows(db, "SELECT idempotency_key, count(*) FROM runs"
                                    " WHERE idempotency_key LIKE 'schedule:two:%'"
                                    " GROUP BY 1 HAVING count(*) > 1")
        self.assertEqual(key_rows, [], "one run per key in the database")

    def test_hostile_input(self):
        srv = self.start_server()
        self.register(srv, wf("sch-h", 0.01))

        def bad(body, status, *fragments):
            r = srv.post("/schedules", body) if not isinstance(body, bytes) else \
                srv.request("POST", "/schedules", body=body,
                            headers={"Content-Type": "application/json"})
            self.assertStatus(r, status)
            msg = r.json()["error"]["message"] if "error" in r.json() else str(r.json())
            for f in fragments:
                self.assertIn(f, msg)
        bad({"workflow": "sch-h", "cron": "0 24 * * *"}, 422,
            "cron: cron field 2 (hour), column 3: out of range 0-23")
        bad({"workflow": "sch-h", "cron": "* * * *"}, 422, "needs 5")
        bad({"workflow": "sch-h", "every": "1s", "ovrlap": "skip"}, 422,
            'field: "ovrlap" is unknown (did you mean "overlap"?)')
        bad({"workflow": "sch-h", "every": "1s", "overlap": "skp"}, 422, "did you mean \"skip\"")
        bad({"workflow": "nosuch", "every": "1s"}, 422, 'workflow: no workflow named "nosuch"')
        bad({"workflow": "sch-h", "every": "1s", "cron": "* * * * *"}, 422, "not both")
        bad({"workflow": "sch-h"}, 422, "cron: required")
        bad({"workflow": "sch-h", "every": "1s", "timezone": "Mars/Base"}, 422,
            'timezone: time zone "Mars/Base" is unknown')
        bad({"workflow": "sch-h", "every": "9999d"}, 422, "between 1s and 366d")
        bad({"workflow": "sch-h", "every": "1s", "catch_up_max": 0}, 422, "catch_up_max")
        bad({"workflow": "sch-h", "every": "1s", "id": "a/b"}, 422, "id:")
        bad({"workflow": "sch-h", "every": "1s", "input": [1]}, 422, "input: must be a JSON object")
        bad(b'{"workflow": ', 400)
        # blank optional members take their defaults
        s = self.create(srv, {"workflow": "sch-h", "cron": "30 2 * * *", "timezone": "",
                              "overlap": "", "catch_up": "", "id": "", "paused": True})
        self.assertEqual((s["timezone"], s["overlap"], s["catch_up"], s["catch_up_max"]),
                         ("UTC", "skip", "last", 100))
        self.assertTrue(s["id"].startswith("sch_"))
        self.assertTrue(s["paused"])
        self.assertTrue(all(t.endswith("T02:30:00.000Z") for t in s["next"]), s["next"])
        s = self.create(srv, {"workflow": "sch-h", "cron": "30 2 * * *",
                              "timezone": "Europe/Paris"})
        self.assertEqual(len(s["next"]), 5)
        self.assertStatus(srv.get("/schedules/nosuch"), 404)
        self.assertStatus(srv.request("DELETE", "/schedules/nosuch"), 404)


if __name__ == "__main__":
    su.main()
