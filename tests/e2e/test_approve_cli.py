#!/usr/bin/env python3
"""`durable approve|reject` against a stand-in server on loopback.

The real route (POST /runs/{id}/steps/{step}/approve|reject) belongs to the
HTTP layer; this checks what the command sends and how it reports answers:
method, path (escaped ids), JSON body with by/comment, bearer token, exit
codes 0/1/2, the server's error message on a refusal, an unreachable server.
"""
import argparse
import http.server
import json
import subprocess
import sys
import threading

seen = []


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode()
        seen.append({"path": self.path, "body": json.loads(body),
                     "auth": self.headers.get("Authorization"),
                     "type": self.headers.get("Content-Type")})
        if "/steps/decided/" in self.path:
            out = json.dumps({"error": {"code": "conflict",
                                        "message": "step decided is not waiting for approval"}})
            self.send_response(409)
        else:
            out = json.dumps({"ok": True})
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())


def run(durable, *args, env=None):
    return subprocess.run([durable, *args], capture_output=True, text=True, timeout=30, env=env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--durable", required=True)
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/" % srv.server_address[1]
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    r = run(a.durable, "approve", "--server", url, "run_1", "ask", "--by", "alice",
            "--comment", "ok to ship", "--token", "sekrit")
    check(r.returncode == 0, "approve exit %d: %s" % (r.returncode, r.stderr))
    check(r.stdout.strip() == "run_1 ask: approved", "approve stdout %r" % r.stdout)
    check(seen and seen[-1]["path"] == "/runs/run_1/steps/ask/approve", "path %r" % seen)
    check(seen and seen[-1]["body"] == {"by": "alice", "comment": "ok to ship"}, "body %r" % seen)
    check(seen and seen[-1]["auth"] == "Bearer sekrit", "auth %r" % seen)
    check(seen and seen[-1]["type"] == "application/json", "type %r" % seen)

    r = run(a.durable, "reject", "--server", url.rstrip("/"), "run 2", "a/b", "--by", "bob")
    check(r.returncode == 0, "reject exit %d: %s" % (r.returncode, r.stderr))
    check(seen[-1]["path"] == "/runs/run%202/steps/a%2Fb/reject", "escaped path %r" % seen[-1])
    check(seen[-1]["body"] == {"by": "bob"}, "reject body %r" % seen[-1])

    r = run(a.durable, "approve", "--server", url, "run_1", "decided", "--by", "x")
    check(r.returncode == 1, "refusal exit %d" % r.returncode)
    check("409" in r.stderr and "not waiting for approval" in r.stderr, "refusal %r" % r.stderr)

    r = run(a.durable, "approve", "run_1", "ask")
    check(r.returncode == 2 and "--server" in r.stderr, "no server: %d %r" % (r.returncode, r.stderr))
    r = run(a.durable, "approve", "--server", url, "run_1")
    check(r.returncode == 2, "missing step: %d" % r.returncode)
    r = run(a.durable, "reject", "--help")
    check(r.returncode == 0 and "usage: durable approve|reject" in r.stdout, "help")

    srv.shutdown()
    srv.server_close()
    r = run(a.durable, "approve", "--server", url, "run_1", "ask")
    check(r.returncode == 1 and "could not reach" in r.stderr, "unreachable: %r" % r.stderr)

    for f in failures:
        print("FAIL:", f)
    print("ok" if not failures else "%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
