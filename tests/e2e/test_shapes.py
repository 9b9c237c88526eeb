#!/usr/bin/env python3
"""End-to-end tests of issue 13's user-facing shapes, with the real binary:

- warnings reach the user: POST /workflows answers 201/200 with `warnings`
  (located strings, an empty array when there is nothing to say),
  `durable serve --workflows` prints each file's warnings at start-up and
  `durable run` prints them on stderr ("FILE: warning: WHERE: MESSAGE"),
  including a `workflow` step's child that neither the database nor the
  --workflows directory has (a child later in name order is no warning);
- the older orchestrator's handler shapes run as written: data_transform
  (rename, set, delete, copy on the run's input), conditional (every
  operator, branching later steps with `if`), log with single-brace
  placeholders and a level (kept in the output and the step_completed
  event), delay {"seconds"}, and step-level max_retries and timeout_seconds;
- a config template that renders null fails the run, saying so;
- /openapi.json's definition schema documents each step type of the
  README's table with the same config fields, required ones and defaults.

Uses the helpers of tests/e2e/server (server_util.py).
Usage: test_shapes.py --durable PATH/durable --examples DIR [unittest args]
"""
import json
import os
import re
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


def readme_step_types():
    """The README's table of step types: {type: {field: text in brackets or None}}."""
    with open(os.path.join(su.EXAMPLES, os.pardir, "README.md")) as f:
        text = f.read()
    head = text.index("| type | config | output |")
    rows = text[head:].split("\n\n", 1)[0].splitlines()[2:]
    types = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        fields = config_fields(cells[1])
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            types[name] = fields
    return types


def config_fields(cell):
    """`a` (note), `b`, ...; the rest: a top-level ";" ends the list."""
    fields, last, depth, start = {}, None, 0, 0
    for m in re.finditer(r"`([^`]*)`|\(|\)|;", cell):
        tok = m.group(0)
        if tok == "(":
            depth += 1
            start = m.end() if depth == 1 else start
        elif tok == ")":
            depth -= 1
            if depth == 0 and last:
                fields[last] = cell[start:m.start()]
        elif tok == ";" and depth == 0:
            break
        elif tok not in "();" and depth == 0:
            last = m.group(1)
            fields[last] = None
    return fields


def readme_default(note):
    """The default a README note gives: (1.0), (30), (GET), (`info`; ...)."""
    first = re.split(r"[;,]", note or "")[0].strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", first):
        return float(first) if "." in first else int(first)
    m = re.fullmatch(r"`([a-z_]+)`|([A-Z]+)", first)
    return (m.group(1) or m.group(2)) if m else None


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
        said = [ln for ln in err.splitlines()
                if ln.startswith("durable serve: ") and ": warning: " in ln]
        self.assertEqual(len(said), len(WARNED_LINES), err)  # none for clean.json

    def test_run_prints_warnings(self):
        r = self.cli("run", self.write("warned.json", WARNED), "--db", self.path("r.db"))
        self.assertEqual(r.returncode, 0, r.stderr)
        for line in WARNED_LINES:
            self.assertIn("warned.json: warning: %s\n" % line, r.stderr)
        r = self.cli("run", self.write("clean.json", CLEAN), "--db", self.path("r.db"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("clean.json: warning", r.stderr)

    def parent(self, name, child):
        return {"name": name, "steps": [
            {"id": "a", "config": {"duration_seconds": 0}},
            {"id": "kid", "type": "workflow", "depends_on": ["a"], "config": {"workflow": child}}]}

    def test_register_warns_of_an_unknown_child_workflow(self):
        srv = self.start_server()
        r = srv.post("/workflows", json_body=self.parent("e2e-parent", "e2e-child"))
        self.assertOk(r, 201)
        self.assertEqual(r.json()["warnings"],
                         ['steps[1].config.workflow: no workflow "e2e-child" is registered yet'])
        self.assertOk(srv.post("/workflows", json_body=dict(CLEAN, name="e2e-child")), 201)
        r = srv.post("/workflows", json_body=self.parent("e2e-parent", "e2e-child"))
        self.assertOk(r, 200)
        self.assertEqual(r.json()["warnings"], [], "the child is registered now")
        for child in ("e2e-self", "{{ input.child }}"):  # itself, or a template: not checked
            r = srv.post("/workflows", json_body=self.parent("e2e-self", child))
            self.assertOk(r, 201)
            self.assertEqual(r.json()["warnings"], [], child)

    def test_run_prints_an_unknown_child_workflow(self):
        f = self.write("parent.json", self.parent("e2e-parent", "e2e-nope"))
        r = self.cli("run", f, "--db", self.path("r.db"))
        self.assertIn('parent.json: warning: steps[1].config.workflow: no workflow "e2e-nope" '
                      'is registered yet\n', r.stderr)

    def test_serve_warns_of_a_child_workflow_nobody_has(self):
        # e2e-known is in the database already; e2e-later is in the directory
        # after its parent in name order; e2e-nowhere is in neither.
        first = self.start_server()
        self.assertOk(first.post("/workflows", json_body=dict(CLEAN, name="e2e-known")), 201)
        first.stop()
        wf_dir = self.path("wf")
        os.makedirs(wf_dir)
        self.write("wf/a-known.json", self.parent("e2e-a", "e2e-known"))
        self.write("wf/b-later.json", self.parent("e2e-b", "e2e-later"))
        self.write("wf/c-nowhere.yaml", "name: e2e-c\nsteps:\n  - id: a\n"
                   "  - id: kid\n    type: workflow\n    depends_on: [a]\n"
                   "    config: {workflow: e2e-nowhere}\n")
        self.write("wf/z-later.json", dict(CLEAN, name="e2e-later"))
        srv = self.start_server(workflows=wf_dir)
        err = su.read_text(srv.err_path)
        said = [ln for ln in err.splitlines() if ": warning: " in ln]
        self.assertEqual(len(said), 1, err)
        self.assertRegex(said[0], r'^durable serve: %s: warning: steps\[1\]\.config\.workflow'
                         r'( \(line 7, column \d+\))?: no workflow "e2e-nowhere" is registered '
                         r'yet$' % re.escape(os.path.join(wf_dir, "c-nowhere.yaml")))

    def test_run_says_a_template_rendered_null(self):
        f = self.write("typo.json", {"name": "e2e-typo", "input": {"url": "http://127.0.0.1:9/"},
                                     "steps": [{"id": "fetch", "type": "http_request",
                                                "config": {"url": "{{ .input.ulr }}"}}]})
        r = self.cli("run", f, "--db", self.path("r.db"))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('failed in ', r.stdout + r.stderr)
        self.assertIn('step "fetch" failed: config.url: template "{{ .input.ulr }}" rendered '
                      'null', r.stdout + r.stderr)

    # -- the definition schema in openapi.json --

    def test_openapi_documents_every_step_types_config(self):
        srv = self.start_server()
        api = srv.get("/openapi.json").json()
        schemas = api["components"]["schemas"]
        step = schemas["Definition"]["properties"]["steps"]["items"]
        by_type = step["properties"]["config"]["x-config-by-type"]
        table = readme_step_types()
        self.assertEqual(sorted(by_type), sorted(table), "openapi.json and the README's types")
        for name, fields in table.items():
            with self.subTest(type=name):
                # the server knows the type: a probe is never "unknown step type"
                r = srv.post("/workflows", json_body={"name": "e2e-probe-" + name, "steps": [
                    {"id": "a", "type": name, "config": {}}]})
                self.assertNotIn("unknown step type", r.text, r)
                schema = schemas[by_type[name]["$ref"].rsplit("/", 1)[1]]
                props = schema["properties"]
                # `action` is any type's (the README says so below its table)
                self.assertEqual(sorted(props), sorted(set(fields) | {"action"}), schema)
                required = sorted(k for k, note in fields.items()
                                  if note and note.startswith("required"))
                self.assertEqual(sorted(schema.get("required", [])), required, schema)
                for k, note in fields.items():
                    self.assertEqual(props[k].get("default"), readme_default(note),
                                     "%s.%s: README says (%s)" % (name, k, note))

    # -- the older orchestrator's shapes --

    def run_def(self, srv, doc, body=None):
        wf = self.register(srv, doc)["id"]
        return self.wait_run(srv, self.start_run(srv, wf, body)["id"])

    def test_data_transform_on_the_input(self):
        srv = self.start_server()
        run = self.run_def(srv, {"name": "e2e-dt", "steps": [
            {"id": "t", "type": "data_transform", "config": {"transforms": [
                {"type": "rename", "from": "a", "to": "b"},
                {"type": "rename", "from": "absent", "to": "z"},
                {"type": "set", "field": "s", "value": {"k": [1, 2]}},
                {"type": "set", "field": "deep.n", "value": -1.5},
                {"type": "delete", "field": "gone"},
                {"type": "copy", "from": "id", "to": "ref.id"},
                {"type": "copy", "from": "nope", "to": "never"}]}}]},
            {"input": {"a": 1, "gone": True, "id": "x\"y", "keep": None}})
        self.assertEqual(run["status"], "completed", run)
        self.assertEqual(step(run, "t")["output"],
                         {"b": 1, "s": {"k": [1, 2]}, "deep": {"n": -1.5}, "id": "x\"y",
                          "ref": {"id": "x\"y"}, "keep": None})
        r = srv.post("/workflows", json_body={"name": "e2e-dt-bad", "steps": [
            {"id": "t", "type": "data_transform", "config": {"transforms": [
                {"type": "uppercase", "field": "a"}]}}]})
        err = self.assertError(r, 422)
        self.assertEqual(err["details"], [
            'steps[0].config.transforms[0].type: expected one of rename, copy, set, delete, '
            'got "uppercase"'])

    def test_conditional_operators_branch(self):
        srv = self.start_server()
        inp = {"n": 5, "s": "apple pie", "tags": ["a", "vip"], "o": {"k": 1}, "z": None}
        cases = [("n", "eq", 5, True), ("n", "ne", 5, False), ("n", "gt", 4, True),
                 ("n", "gt", 5, False), ("n", "gte", 5, True), ("n", "lt", 5, False),
                 ("n", "lte", 5, True), ("s", "gt", "apple", True), ("s", "gt", 1, False),
                 ("n", "in", [1, 5], True), ("n", "in", [], False),
                 ("s", "contains", "pie", True), ("tags", "contains", "vip", True),
                 ("o", "contains", "k", True), ("n", "contains", 5, False),
                 ("n", "exists", None, True), ("z", "exists", None, False),
                 ("missing.deep", "exists", None, False), ("o.k", "exists", False, False),
                 ("s.x", "eq", None, True)]
        steps = []
        for i, (field, op, value, _) in enumerate(cases):
            cond = {"field": field, "operator": op}
            if value is not None or op not in ("exists", "eq"):
                cond["value"] = value
            if op == "eq" and value is None:
                cond["value"] = None
            steps.append({"id": "c%d" % i, "type": "conditional", "config": {"condition": cond}})
        steps += [{"id": "yes", "type": "log", "depends_on": ["c0"], "if": ".steps.c0.output",
                   "config": {"message": "big"}},
                  {"id": "no", "type": "log", "depends_on": ["c1"], "if": ".steps.c1.output",
                   "config": {"message": "small"}}]
        run = self.run_def(srv, {"name": "e2e-cond", "steps": steps}, {"input": inp})
        self.assertEqual(run["status"], "completed", run)
        got = [step(run, "c%d" % i)["output"] for i in range(len(cases))]
        self.assertEqual(got, [c[3] for c in cases], list(zip(cases, got)))
        self.assertEqual((step(run, "yes")["status"], step(run, "no")["status"]),
                         ("completed", "skipped"))

    def test_log_placeholders_and_level(self):
        srv = self.start_server()
        run = self.run_def(srv, {"name": "e2e-log", "steps": [
            {"id": "l", "type": "log", "config": {
                "message": "Processing {order_id} for {c.name}, n={n}, {missing} {{ .input.n }}",
                "level": "warning"}},
            {"id": "d", "type": "log", "config": {"message": "plain"}}]},
            {"input": {"order_id": "A-7", "c": {"name": "Ada"}, "n": [1]}})
        self.assertEqual(run["status"], "completed", run)
        self.assertEqual(step(run, "l")["output"],
                         {"message": "Processing A-7 for Ada, n=[1], {missing} [1]",
                          "level": "warning"})
        self.assertEqual(step(run, "d")["output"], {"message": "plain", "level": "info"})
        ev = next(e for e in self.events(srv, run["id"])
                  if e["type"] == "step_completed" and e["step_id"] == "l")
        self.assertEqual(ev["data"]["output"]["level"], "warning", ev)

    def test_delay_seconds_and_step_retries(self):
        srv = self.start_server()
        run = self.run_def(srv, {"name": "e2e-delay", "steps": [
            {"id": "w", "type": "delay", "config": {"seconds": 0.3}},
            {"id": "f", "type": "task", "depends_on": ["w"], "max_retries": 2,
             "timeout_seconds": 0.2, "retry": {"initial_interval_seconds": 0.05},
             "config": {"duration_seconds": 5}}]})
        self.assertEqual(run["status"], "failed", run)
        self.assertIn("woke_at", step(run, "w")["output"])
        f = step(run, "f")
        self.assertEqual((f["attempt"], f["max_attempts"]), (3, 3), f)
        self.assertIn("timed out after 0.2s", f["error_message"] or "", f)

    def test_every_older_example_runs(self):
        srv = self.start_server(workflows=su.EXAMPLES)
        for name in ("older-data-transform", "older-conditional", "older-log",
                     "older-delay-retries"):
            run = self.wait_run(srv, self.start_run(srv, name)["id"], timeout=60)
            self.assertEqual(run["status"], "completed", run)
            if name == "older-data-transform":
                self.assertEqual(step(run, "normalise")["output"],
                                 {"order_id": "A-1001", "amount": 12.5, "status": "received",
                                  "meta": {"reference": "A-1001"}})
            if name == "older-log":
                self.assertEqual(step(run, "start")["output"],
                                 {"message": "Processing A-1003 for Ada", "level": "info"})


if __name__ == "__main__":
    su.main()
