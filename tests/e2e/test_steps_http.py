#!/usr/bin/env python3
"""End-to-end tests of the `http_request` step (and the data steps around it)
with `durable run`, against a server that this test runs on loopback.

The server counts every request with its method, path, body and the
`Idempotency-Key` it carried. Checked: every config field (method, url with a
template, headers, JSON and string bodies, expect_status as an int and a
list, timeout_seconds), the output {status, headers, body} with JSON bodies
parsed, retryable failures (http_status, http_error for a refused
connection, the 1 MiB body cap), and SIGKILL of `durable run` while a
request is in flight: run again with the same --id, the request is made
again with the same Idempotency-Key and the run completes.

Usage: test_steps_http.py --durable PATH/durable [unittest args]
"""
import argparse
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

DURABLE = None
TIMEOUT = 60


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []

    def add(self, r):
        with self.lock:
            self.requests.append(r)

    def on(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"].split("?")[0] == path]


REC = Recorder()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", "test")
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout, or killed on purpose)

    def handle_any(self):
        n = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(n).decode() if n else ""
        path = self.path.split("?")[0]
        REC.add({"method": self.command, "path": path, "body": body,
                 "key": self.headers.get("Idempotency-Key"),
                 "ctype": self.headers.get("Content-Type"),
                 "x": self.headers.get("X-Test")})
        if path == "/orders/42":
            self.reply(200, json.dumps({"id": 42, "status": "paid", "amount": 1500}))
        elif path == "/echo":
            self.reply(201, json.dumps({"got": body, "ctype": self.headers.get("Content-Type")}))
        elif path == "/text":
            self.reply(200, "plain words", "text/plain")
        elif path == "/missing":
            self.reply(404, json.dumps({"error": "no such thing"}))
        elif path == "/fail":
            self.reply(500, "boom", "text/plain")
        elif path == "/big":
            self.reply(200, b"x" * (1024 * 1024 + 10), "application/octet-stream")
        elif path.startswith("/slow"):
            time.sleep(float(self.path.split("s=")[1]) if "s=" in self.path else 3)
            self.reply(200, json.dumps({"slow": True}))
        else:
            self.reply(404, "{}")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HttpStepTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        cls.srv.daemon_threads = True
        threading.Thread(target=cls.srv.serve_forever, daemon=True).start()
        cls.base = "http://127.0.0.1:%d" % cls.srv.server_address[1]
        cls.tmp = tempfile.mkdtemp(prefix="durable-e2e-http-")

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write(self, name, doc):
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def run_durable(self, *args, timeout=TIMEOUT):
        p = subprocess.run([DURABLE, *args], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return p

    def steps(self, db):
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        rows = {r["step_id"]: dict(r) for r in con.execute("SELECT * FROM steps")}
        con.close()
        return rows

    def test_pipeline_every_field(self):
        wf = {"name": "http-fields", "steps": [
            {"id": "fetch", "type": "http_request",
             "config": {"url": "{{ .input.base }}/orders/{{ .input.order }}",
                        "headers": {"X-Test": "t-{{ .input.order }}"}, "timeout_seconds": 5}},
            {"id": "total", "type": "transform", "depends_on": ["fetch"],
             "config": {"expression": ".steps.fetch.output.body.amount * 2"}},
            {"id": "post", "type": "http_request", "depends_on": ["total"],
             "config": {"url": "{{ .input.base }}/echo", "method": "post",
                        "body": {"total": "{{ .steps.total.output }}", "tag": "x"},
                        "expect_status": 201}},
            {"id": "put_text", "type": "http_request", "depends_on": ["total"],
             "config": {"url": "{{ .input.base }}/echo", "method": "PUT", "body": "raw text",
                        "headers": {"Content-Type": "text/plain"}, "expect_status": [200, 201]}},
            {"id": "text", "type": "http_request", "depends_on": ["total"],
             "config": {"url": "{{ .input.base }}/text"}},
            {"id": "missing_ok", "type": "http_request", "depends_on": ["total"],
             "config": {"url": "{{ .input.base }}/missing", "expect_status": [404]}},
            {"id": "paid", "type": "condition", "depends_on": ["fetch"],
             "config": {"expression": ".steps.fetch.output.body.status == \"paid\""}},
            {"id": "say", "type": "log", "depends_on": ["paid", "post"], "if": ".steps.paid.output",
             "config": {"message": "order {{ .input.order }} total {{ .steps.total.output }}"}},
        ]}
        f = self.write("fields", wf)
        db = os.path.join(self.tmp, "fields.db")
        p = self.run_durable("run", f, "--db", db, "--input",
                             json.dumps({"base": self.base, "order": 42}))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        st = self.steps(db)
        out = json.loads(st["fetch"]["output"])
        self.assertEqual(out["status"], 200)
        self.assertEqual(out["body"], {"id": 42, "status": "paid", "amount": 1500})
        self.assertEqual(out["headers"]["x-served-by"], "test")
        self.assertEqual(json.loads(st["total"]["output"]), 3000)
        post = json.loads(st["post"]["output"])
        self.assertEqual(post["status"], 201)
        self.assertEqual(json.loads(post["body"]["got"]), {"total": 3000, "tag": "x"})
        self.assertEqual(post["body"]["ctype"], "application/json")
        put = json.loads(st["put_text"]["output"])
        self.assertEqual(put["body"], {"got": "raw text", "ctype": "text/plain"})
        self.assertEqual(json.loads(st["text"]["output"])["body"], "plain words")
        self.assertEqual(json.loads(st["missing_ok"]["output"])["status"], 404)
        self.assertEqual(json.loads(st["say"]["output"]), {"message": "order 42 total 3000", "level": "info"})
        seen = REC.on("/orders/42")
        self.assertEqual(seen[-1]["x"], "t-42")
        run_id = st["fetch"]["run_id"]
        self.assertEqual(seen[-1]["key"], run_id + "/fetch")
        self.assertEqual(seen[-1]["method"], "GET")

    def test_failures_are_retryable_and_clear(self):
        dead = free_port()
        cases = [
            ("status", {"url": self.base + "/fail"}, "http_status", "answered 500"),
            ("refused", {"url": "http://127.0.0.1:%d/x" % dead}, "http_error", "could not GET"),
            ("big", {"url": self.base + "/big"}, "http_error",
             "response body larger than 1048576 bytes"),
            ("slow", {"url": self.base + "/slow?s=3", "timeout_seconds": 0.3}, "http_error",
             "could not GET"),
            ("expect", {"url": self.base + "/text", "expect_status": 204}, "http_status",
             "answered 200"),
        ]
        for name, cfg, code, text in cases:
            with self.subTest(case=name):
                wf = {"name": "http-" + name, "steps": [
                    {"id": "call", "type": "http_request", "config": cfg,
                     "retry": {"max_attempts": 2, "initial_interval_seconds": 0.05}}]}
                db = os.path.join(self.tmp, name + ".db")
                before = len(REC.on(cfg["url"].replace(self.base, "").split("?")[0]))
                p = self.run_durable("run", self.write(name, wf), "--db", db)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                st = self.steps(db)["call"]
                self.assertEqual(st["status"], "failed")
                self.assertEqual(st["attempt"], 2)
                self.assertEqual(st["error_code"], code)
                self.assertIn(text, st["error_message"])
                if name != "refused":
                    path = cfg["url"].replace(self.base, "").split("?")[0]
                    calls = REC.on(path)[before:]
                    self.assertEqual(len(calls), 2, calls)
                    self.assertEqual({c["key"] for c in calls}, {st["run_id"] + "/call"})

    def test_sigkill_while_in_flight_resends_same_key(self):
        wf = {"name": "http-crash", "steps": [
            {"id": "slow", "type": "http_request",
             "config": {"url": self.base + "/slow-crash?s=2", "timeout_seconds": 20}},
            {"id": "after", "type": "log", "depends_on": ["slow"],
             "config": {"message": "got {{ .steps.slow.output.body.slow }}"}}]}
        f = self.write("crash", wf)
        db = os.path.join(self.tmp, "crash.db")
        proc = subprocess.Popen([DURABLE, "run", f, "--db", db, "--id", "K"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not REC.on("/slow-crash") and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(REC.on("/slow-crash"), "the request was never made")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        p = self.run_durable("run", f, "--db", db, "--id", "K")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        calls = REC.on("/slow-crash")
        self.assertEqual(len(calls), 2, calls)
        st = self.steps(db)
        self.assertEqual(calls[0]["key"], calls[1]["key"])
        self.assertEqual(calls[0]["key"], st["slow"]["run_id"] + "/slow")
        self.assertEqual(json.loads(st["after"]["output"]), {"message": "got true", "level": "info"})

    def test_http_pipeline_example(self):
        ex = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                          "http-pipeline.json")
        db = os.path.join(self.tmp, "example.db")
        p = self.run_durable("run", ex, "--db", db, "--input",
                             json.dumps({"url": self.base + "/orders/42"}))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        st = self.steps(db)
        self.assertEqual(json.loads(st["summary"]["output"]), {"id": 42, "status": "paid",
                                                               "total": 0})
        self.assertEqual(st["report_paid"]["status"], "completed")
        self.assertEqual(st["chase_payment"]["status"], "skipped")
        self.assertEqual(st["report_unpaid"]["status"], "skipped")

    def test_registration_error_names_the_step(self):
        wf = {"name": "http-bad", "steps": [
            {"id": "a", "type": "http_request", "config": {"url": "ftp://x", "method": "FETCH",
                                                          "expect_status": [99]}},
            {"id": "b", "type": "log", "if": ".input | ]", "config": {"message": "m"}}]}
        p = self.run_durable("validate", self.write("bad", wf))
        self.assertEqual(p.returncode, 1)
        self.assertIn("steps[0].config.url: expected an http:// or https:// URL", p.stdout)
        self.assertIn("steps[0].config.method: expected one of GET", p.stdout)
        self.assertIn("steps[0].config.expect_status[0]: must be", p.stdout)
        self.assertIn("steps[1].if: jq: syntax error", p.stdout)


def main():
    global DURABLE
    ap = argparse.ArgumentParser()
    ap.add_argument("--durable", required=True)
    a, rest = ap.parse_known_args()
    DURABLE = os.path.abspath(a.durable)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
