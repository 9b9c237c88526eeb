#!/usr/bin/env python3
"""End-to-end tests of issue 15's security review, on the real server.

  - the bearer token: any wrong token (differing at its first or last byte,
    a prefix, a longer one, empty) is 401, the right one 200. The
    comparison's time does not depend on where they differ (auth.c,
    secret_equal: no early exit), which a test over a socket cannot
    measure; this one checks it stays a correct comparison;
  - no route reveals a file outside the embedded UI: traversals, encoded
    and doubled slashes, NUL bytes, backslashes, absolute paths, and a file
    that exists in the source tree beside web/ are all 404, and never
    carry a byte of the file;
  - the UI's headers: each page has a Content-Security-Policy whose scripts
    are our own files only (no 'unsafe-inline' for scripts), frame denial
    (frame-ancestors 'none' and X-Frame-Options: DENY); every response says
    X-Content-Type-Options: nosniff; web/ has no inline script or handler;
  - http_request refuses schemes other than http and https, in the
    definition and once a template has rendered the URL;
  - `durable serve --http-allow HOSTS`: a request to a host not listed fails
    the step with http_forbidden and never reaches the host (a counting
    server on loopback sees nothing), credentials and fragments in the URL
    do not change its host, and a listed host is reached.

Usage: test_security.py --durable PATH/durable --examples PATH/examples [unittest args]
"""
import http.server
import os
import re
import threading

import server_util as su

TOKEN = "tok-0123456789abcdef"


class Counter(http.server.BaseHTTPRequestHandler):
    """Counts the requests it is sent; answers {"ok": true}."""
    hits = []
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):
        with Counter.lock:
            Counter.hits.append(self.path)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def http_step(url):
    return {"id": "call", "type": "http_request", "retry": {"max_attempts": 1},
            "config": {"url": url, "timeout_seconds": 5}}


class SecurityTest(su.ServerTest):

    @classmethod
    def setUpClass(cls):
        cls.target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counter)
        cls.target_port = cls.target.server_address[1]
        threading.Thread(target=cls.target.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.target.shutdown()
        cls.target.server_close()

    def run_http(self, srv, name, url, input_=None):
        """Registers a one-step http_request workflow, runs it to its end."""
        steps = [http_step(url)]
        self.register(srv, {"name": name, "steps": steps})
        run = self.start_run(srv, name, {"input": input_ or {}})
        return self.wait_run(srv, run["id"])

    def test_token_wrong_anywhere_is_401(self):
        srv = self.start_server(token=TOKEN)
        wrong = ["x" + TOKEN[1:], TOKEN[:-1] + "x", TOKEN[:-1], TOKEN + "0", "",
                 TOKEN.upper(), TOKEN + " ", "\t" + TOKEN]
        for t in wrong:
            r = srv.get("/runs", auth=False, headers={"Authorization": "Bearer " + t})
            self.assertStatus(r, 401)
            r = srv.post("/signin", {"token": t}, auth=False)
            self.assertStatus(r, 401)
        self.assertOk(srv.get("/runs"))

    def test_no_file_outside_the_ui(self):
        srv = self.start_server()
        secret = b"root:"
        paths = [
            "/ui/../../../../etc/passwd", "/ui/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/ui/..%2f..%2f..%2fetc%2fpasswd", "/ui//etc/passwd", "/ui/./index.html",
            "/ui/.", "/ui/..", "/ui/%00", "/ui/index.html%00.js", "/ui/..\\..\\etc\\passwd",
            "/etc/passwd", "/../../etc/passwd", "/ui/%252e%252e/etc/passwd",
            "/ui/CMakeLists.txt", "/ui/../CMakeLists.txt", "/ui/../README.md",
            "/ui/%2fetc%2fpasswd", "/ui/ui/index.html", "/ui/index.html/", "/ui/.hidden",
            "/openapi.json/../../etc/passwd", "/favicon.svg/..",
        ]
        for p in paths:
            status, data, _ = srv.raw(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                       % p).encode())
            self.assertIn(status, (400, 404), "%s answered %s: %r" % (p, status, data[:200]))
            self.assertNotIn(secret, data, p)
            self.assertNotIn(b"cmake_minimum_required", data, p)
        # What is embedded is served: the UI works.
        self.assertStatus(srv.get("/ui/index.html"), 200)

    def test_ui_security_headers(self):
        srv = self.start_server()
        for page in ["/", "/ui/index.html", "/ui/run.html", "/ui/db.html", "/ui/signin.html"]:
            r = srv.get(page)
            self.assertStatus(r, 200)
            csp = r.header("Content-Security-Policy") or ""
            directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";"))
            script = directives.get("script-src", directives.get("default-src", ""))
            self.assertIn("'self'", script, r)
            self.assertNotIn("unsafe-inline", script, r)
            self.assertNotIn("unsafe-eval", script, r)
            self.assertEqual(directives.get("frame-ancestors"), "'none'", r)
            self.assertEqual(directives.get("object-src"), "'none'", r)
            self.assertEqual(r.header("X-Frame-Options"), "DENY", r)
            self.assertEqual(r.header("X-Content-Type-Options"), "nosniff", r)
        for path in ["/ui/api.js", "/health", "/runs", "/nothing", "/openapi.json"]:
            r = srv.get(path)
            self.assertEqual(r.header("X-Content-Type-Options"), "nosniff", r)

    def test_web_has_no_inline_script(self):
        web = os.path.join(os.path.dirname(os.path.abspath(su.EXAMPLES)), "web")
        pages = [f for f in os.listdir(web) if f.endswith(".html")]
        self.assertTrue(pages, web)
        for name in pages:
            with open(os.path.join(web, name), encoding="utf-8") as f:
                html = f.read()
            for tag in re.findall(r"<script\b[^>]*>", html, re.I):
                self.assertRegex(tag, r"\bsrc=", "%s: inline script %s" % (name, tag))
            self.assertEqual(re.findall(r"<script\b[^>]*>\s*[^<\s]", html, re.I), [], name)
            self.assertEqual(re.findall(r"\son[a-z]+\s*=", html, re.I), [], name)
            self.assertNotIn("javascript:", html.lower(), name)

    def test_http_request_schemes(self):
        srv = self.start_server()
        for url in ["file:///etc/passwd", "gopher://127.0.0.1/", "ftp://127.0.0.1/x",
                    "dict://127.0.0.1:11211/stat", "ldap://127.0.0.1/", "127.0.0.1/x"]:
            r = srv.post("/workflows", {"name": "bad", "steps": [http_step(url)]})
            self.assertError(r, 422)
        # A template renders to another scheme: the step fails, nothing read.
        run = self.run_http(srv, "tmpl", "{{ .input.url }}", {"url": "file:///etc/passwd"})
        self.assertEqual(run["status"], "failed", run)
        self.assertIn("expected an http:// or https:// URL", run["steps"][0]["error_message"])
        run = self.run_http(srv, "tmpl2", "{{ .input.url }}",
                            {"url": "FILE:///etc/passwd"})
        self.assertIn("expected an http:// or https:// URL", run["steps"][0]["error_message"])

    def test_http_allow_list(self):
        target = "127.0.0.1:%d" % self.target_port
        srv = self.start_server(args=["--http-allow", "api.example.invalid, [::1]"])
        Counter.hits.clear()
        urls = ["http://%s/a" % target,
                "http://localhost:%d/b" % self.target_port,
                "http://api.example.invalid@%s/c" % target,
                "http://%s#@api.example.invalid/d" % target]
        for i, url in enumerate(urls):
            run = self.run_http(srv, "deny%d" % i, url)
            self.assertEqual(run["status"], "failed", run)
            self.assertIn("is not in the server's allow-list", run["steps"][0]["error_message"],
                          url)
        # A URL parsers disagree on: libcurl reads its host as the listed
        # api.example.invalid, and connects there (which does not resolve),
        # never to 127.0.0.1: the check reads the URL the transfer uses.
        run = self.run_http(srv, "deny_backslash", "http://%s\\@api.example.invalid/e" % target)
        self.assertIn("api.example.invalid", run["steps"][0]["error_message"], run)
        self.assertEqual(Counter.hits, [])
        srv.stop()
        srv = self.start_server(args=["--http-allow", "LocalHost,127.0.0.1"])
        for i, url in enumerate(["http://%s/ok" % target,
                                 "http://localhost:%d/ok2" % self.target_port]):
            run = self.run_http(srv, "allow%d" % i, url)
            self.assertEqual(run["status"], "completed", run)
        self.assertEqual(sorted(Counter.hits), ["/ok", "/ok2"])


if __name__ == "__main__":
    su.main()
