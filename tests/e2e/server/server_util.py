"""Shared helpers of the `durable serve` end-to-end tests (SPEC §6, §9).

Server starts the real binary on 127.0.0.1:0 (a free port) with a database in
a temporary directory, waits for its first stdout line `durable listening on
http://HOST:PORT` and for GET /health to answer 200, and talks to it over real
HTTP (http.client, one connection per request). ServerTest is the base
TestCase: every server it starts is stopped when the test ends (SIGTERM, and
the exit status must be 0: a clean stop, and under ASan no leak report), and
its log is printed to stderr when the test failed. SSE reads Server-Sent
Events; raw_exchange speaks raw bytes for requests http.client refuses to
send.

Python 3 standard library only. Every wait is bounded; timeouts grow under
sanitizer builds (sanitizer() looks at the binary), never assertions.
"""
import argparse
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

DURABLE = None
EXAMPLES = None
ARGS = None

LISTENING = re.compile(r"^durable listening on http://(\[[^\]]+\]|[^\s:/]+):(\d+)/?\s*$")
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FINISHED = ("completed", "failed", "cancelled")
RUN_KEYS = ("id", "workflow_id", "workflow_name", "workflow_version", "status", "input",
            "output", "order_id", "idempotency_key", "error_message", "created_at",
            "started_at", "completed_at", "steps")
STEP_KEYS = ("step_id", "type", "status", "attempt", "max_attempts", "depends_on",
             "started_at", "completed_at", "wake_at", "error_message", "output")
EVENT_KEYS = ("seq", "type", "step_id", "at", "data")
LOG_TAIL_LINES = 300


def log(msg=""):
    print(msg, file=sys.stderr, flush=True)


def parse_args(extra=None):
    """Parses --durable, --examples and the caller's own flags (extra: a
    function adding arguments to the parser); returns the leftover argv for
    unittest."""
    global DURABLE, EXAMPLES, ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--durable", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--pg", action="store_true",
                    help="servers use the PostgreSQL database DURABLE_TEST_PG names"
                    " (tests/pg_server.py sets it) instead of a file")
    if extra:
        extra(ap)
    args, rest = ap.parse_known_args()
    DURABLE = os.path.abspath(args.durable)
    EXAMPLES = os.path.abspath(args.examples)
    ARGS = args
    return rest


def main(extra=None):
    rest = parse_args(extra)
    log("durable: %s (sanitizer: %s)" % (DURABLE, sanitizer() or "none"))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


_SANITIZER = []


def sanitizer():
    """'asan', 'tsan' or None: which runtime the durable binary was built with."""
    if not _SANITIZER:
        found = None
        try:
            with open(DURABLE, "rb") as f:
                blob = f.read()
            if b"__tsan_init" in blob:
                found = "tsan"
            elif b"__asan_init" in blob:
                found = "asan"
        except OSError:
            pass
        _SANITIZER.append(found)
    return _SANITIZER[0]


def slow_factor():
    """How much longer waits may take under a sanitizer (never used to relax
    a correctness assertion, only timeouts)."""
    return {"asan": 2.0, "tsan": 4.0}.get(sanitizer(), 1.0)


def task(step_id, seconds=0.1, deps=(), **config):
    """A `task` step of `seconds`, depending on deps, with extra config."""
    config["duration_seconds"] = seconds
    return {"id": step_id, "type": "task", "config": config, "depends_on": list(deps)}


def load_example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return json.load(f)


def text_of(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def tail(text, lines=LOG_TAIL_LINES):
    parts = text.splitlines()
    if len(parts) <= lines:
        return text
    return "[... %d lines cut ...]\n" % (len(parts) - lines) + "\n".join(parts[-lines:])


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------- HTTP

class Response:
    """One HTTP exchange: what was sent and what came back."""

    def __init__(self, method, path, status, reason, headers, body, sent=None):
        self.method, self.path = method, path
        self.status, self.reason = status, reason
        self.headers = headers      # http.client.HTTPMessage (case-insensitive get)
        self.body = body            # bytes
        self.sent = sent            # the request body, for messages
        self._json = None

    def json(self):
        if self._json is None:
            try:
                self._json = json.loads(self.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise AssertionError("response body is not JSON (%s)%s" % (e, self))
        return self._json

    def is_json(self):
        try:
            json.loads(self.body.decode("utf-8"))
            return True
        except (UnicodeDecodeError, ValueError):
            return False

    @property
    def text(self):
        return text_of(self.body)

    def header(self, name, default=None):
        return self.headers.get(name, default) if self.headers is not None else default

    def total(self):
        """X-Total-Count as an int (AssertionError when absent or not a number)."""
        v = self.header("X-Total-Count")
        if v is None or not v.strip().isdigit():
            raise AssertionError("X-Total-Count missing or not a number: %r%s" % (v, self))
        return int(v)

    def __str__(self):
        sent = ""
        if self.sent is not None:
            s = self.sent if isinstance(self.sent, bytes) else str(self.sent).encode()
            sent = "\n--- request body (%d bytes): %r" % (len(s), s[:300])
        hdrs = "".join("\n    %s: %s" % kv for kv in (self.headers.items() if self.headers else []))
        body = self.body[:3000]
        return ("\n--- %s %s -> %s %s%s\n--- response headers:%s\n--- response body (%d bytes):\n%s"
                % (self.method, self.path[:300], self.status, self.reason, sent, hdrs,
                   len(self.body), text_of(body)))


def http_request(host, port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection. Raises OSError/HTTPException when the
    connection fails; returns a Response otherwise."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(method, path, r.status, r.reason, r.headers, data, sent=body)
    finally:
        conn.close()


def raw_exchange(host, port, chunks, timeout=10.0, pause=0.0, half_close=False):
    """Sends raw byte chunks (a list, or bytes) on one connection, reading
    whatever the server answers meanwhile (it may answer and close before the
    request is complete), then reads until a complete response (with
    Content-Length), EOF or timeout. half_close: shut down the sending side
    after the last chunk (a client that gives up mid-request). Returns
    (status or None, bytes received, note): note says how it ended."""
    if isinstance(chunks, (bytes, bytearray)):
        chunks = [bytes(chunks)]
    got = bytearray()
    note = "eof"
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        def drain(wait):
            r, _, _ = select.select([s], [], [], wait)
            if not r:
                return True
            d = s.recv(65536)
            if not d:
                return False
            got.extend(d)
            return True

        open_ = True
        for c in chunks:
            try:
                s.sendall(c)
            except OSError as e:        # closed by the server: it may have answered
                note = "send failed: %s" % e
                break
            try:
                open_ = drain(pause)
            except OSError as e:
                note = "recv failed: %s" % e
                open_ = False
            if not open_:
                break
        if open_ and half_close:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if open_:
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    if not drain(min(0.5, max(0.0, deadline - time.monotonic()))):
                        break
                    # A complete response with Content-Length: stop there.
                    if response_complete(bytes(got)):
                        break
                else:
                    note = "timeout"
            except OSError as e:
                note = "recv failed: %s" % e
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", bytes(got))
    return (int(m.group(1)) if m else None), bytes(got), note


def response_complete(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return bool(m) and len(body) >= int(m.group(1))


# ---------------------------------------------------------------- the server

def psql_rows(url, sql):
    """The rows of sql on the PostgreSQL database url, as lists of text."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    import pg_server
    r = subprocess.run([os.path.join(pg_server.bindir(), "psql"), "-X", "-q", "-A", "-t",
                        "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise AssertionError("psql: %s" % r.stderr)
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def pg_url_with_db(url, name):
    """url (postgres://USER@HOST:PORT/DB) naming database name instead."""
    return url.split("?", 1)[0].rsplit("/", 1)[0] + "/" + name


_PG_DBS = {}


def pg_test_db(tmp):
    """A fresh PostgreSQL database for the test of tmp (its directory's
    name), on the server of DURABLE_TEST_PG: each test starts empty, as on
    SQLite, and every server of one test shares it."""
    if tmp not in _PG_DBS:
        url = os.environ.get("DURABLE_TEST_PG")
        if not url:
            raise ServerError("--pg needs DURABLE_TEST_PG (run under tests/pg_server.py)")
        name = os.path.basename(tmp)
        psql_rows(url, 'CREATE DATABASE "%s"' % name)
        _PG_DBS[tmp] = pg_url_with_db(url, name)
    return _PG_DBS[tmp]


def pg_drop_test_db(tmp):
    """Drops the database pg_test_db made for tmp, if any."""
    url = _PG_DBS.pop(tmp, None)
    if url:
        psql_rows(os.environ["DURABLE_TEST_PG"],
                  'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % os.path.basename(tmp))


def default_db(tmp):
    """A server's database: with --pg a PostgreSQL database of its own for
    the test (pg_test_db), else a file in tmp."""
    if ARGS is not None and ARGS.pg:
        return pg_test_db(tmp)
    return os.path.join(tmp, "durable.db")


def is_pg(db):
    return db.startswith("postgres://") or db.startswith("postgresql:")


class ServerError(Exception):
    pass


class Server:
    """One `durable serve` process on a temporary database.

    tmp: the directory for the database, the logs and the process's cwd.
    workflows: the --workflows directory (default: an empty one, so that the
    test controls what is registered). token: --token, sent on every request
    unless auth=False. env: extra environment variables."""

    def __init__(self, tmp, db=None, workflows=None, token=None, listen="127.0.0.1:0",
                 args=(), env=None, name="server"):
        self.tmp = tmp
        self.name = name
        self.db = db or default_db(tmp)
        if workflows is None:
            workflows = os.path.join(tmp, "no-workflows")
            os.makedirs(workflows, exist_ok=True)
        self.workflows = workflows
        self.token = token
        self.listen = listen
        self.args = [str(a) for a in args]
        self.env = env
        self.proc = None
        self.host = self.port = None
        self.rc = None
        self.starts = 0
        self.out_path = os.path.join(tmp, "%s.stdout" % name)
        self.err_path = os.path.join(tmp, "%s.stderr" % name)

    # -- process --

    def command(self):
        cmd = [DURABLE, "serve", "--listen", self.listen, "--db", self.db,
               "--workflows", self.workflows]
        if self.token is not None:
            cmd += ["--token", self.token]
        return cmd + self.args

    def start(self, timeout=None):
        """Starts the process (again, after stop or kill: same database) and
        waits until it listens and /health answers 200."""
        timeout = timeout or 30.0 * slow_factor()
        env = dict(os.environ)
        env.pop("DURABLE_FAILPOINT", None)
        env.pop("DURABLE_FAILPOINT_COMMIT", None)
        env.pop("DURABLE_TOKEN", None)
        if self.env:
            env.update(self.env)
        self.starts += 1
        cmd = self.command()
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            banner = ("\n=== start %d: %s\n" % (self.starts, " ".join(cmd))).encode()
            err.write(banner)
            err.flush()
            self._out_offset = out.tell()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=self.tmp, env=env)
        self.rc = None
        deadline = time.monotonic() + timeout
        line = self._first_line(deadline)
        m = LISTENING.match(line)
        if not m:
            self.kill()
            raise ServerError("first stdout line is not `durable listening on http://HOST:PORT`:"
                              " %r%s" % (line, self.describe()))
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))
        if self.host in ("0.0.0.0", "::"):
            self.host = "127.0.0.1"
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("server exited with %s after listening%s"
                                  % (self.proc.returncode, self.describe()))
            try:
                r = self.request("GET", "/health", timeout=5, auth=False)
                if r.status == 200:
                    return self
                last = r
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.05)
        self.kill()
        raise ServerError("/health never answered 200 (last: %s)%s" % (last, self.describe()))

    def _first_line(self, deadline):
        while time.monotonic() < deadline:
            with open(self.out_path, "rb") as f:
                f.seek(self._out_offset)
                data = f.read()
            if b"\n" in data:
                return data.split(b"\n", 1)[0].decode("utf-8", "replace")
            if self.proc.poll() is not None:
                raise ServerError("server exited with %s before listening%s"
                                  % (self.proc.returncode, self.describe()))
            time.sleep(0.02)
        self.kill()
        raise ServerError("no `durable listening on` line within the timeout%s" % self.describe())

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM and wait; returns the exit status (negative: a signal;
        'timeout' when it had to be killed)."""
        if self.proc is None:
            return self.rc
        timeout = timeout or 20.0 * slow_factor()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.rc = "timeout"
                self.proc = None
                return self.rc
        self.rc = self.proc.returncode
        self.proc = None
        return self.rc

    def kill(self):
        """SIGKILL, at once."""
        if self.proc is None:
            return self.rc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.rc = self.proc.returncode
        self.proc = None
        return self.rc

    def log_text(self):
        return ("--- stdout:\n%s\n--- stderr:\n%s"
                % (tail(read_text(self.out_path), 50), tail(read_text(self.err_path))))

    def describe(self):
        return ("\n--- %s (pid %s, exit %s): %s\n%s\n---"
                % (self.name, self.pid, self.rc, " ".join(self.command()), self.log_text()))

    # -- HTTP --

    def headers(self, headers=None, auth=True):
        h = {}
        if auth and self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        if headers:
            h.update(headers)
        return h

    def request(self, method, path, body=None, headers=None, json_body=None, timeout=None,
                auth=True):
        """One request on a fresh connection. json_body (any JSON value) is
        encoded and sent as application/json."""
        h = self.headers(headers, auth)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        return http_request(self.host, self.port, method, path, body, h,
                            timeout or 15.0 * slow_factor())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json_body=None, **kw):
        return self.request("POST", path, json_body=json_body, **kw)

    def raw(self, chunks, timeout=10.0, pause=0.0, half_close=False):
        return raw_exchange(self.host, self.port, chunks, timeout, pause, half_close)

    def status_file(self):
        """/proc/PID/status as a dict of name -> text."""
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
        return out

    def rss_kib(self, field="VmRSS"):
        v = self.status_file().get(field)
        return int(v.split()[0]) if v else None


# ---------------------------------------------------------------- SSE

class SSE:
    """A Server-Sent Events subscription: GET path with optional
    Last-Event-ID. next() returns {"id", "event", "data" (parsed JSON when it
    parses, else text), "raw"} or None at the end of the stream; comment lines
    (keep-alives) are skipped."""

    def __init__(self, server, path, last_event_id=None, headers=None, timeout=None, auth=True):
        self.path = path
        self.conn = http.client.HTTPConnection(server.host, server.port,
                                               timeout=timeout or 10.0 * slow_factor())
        h = server.headers({"Accept": "text/event-stream"}, auth)
        if last_event_id is not None:
            h["Last-Event-ID"] = str(last_event_id)
        if headers:
            h.update(headers)
        self.conn.request("GET", path, headers=h)
        # Kept: getresponse() drops conn.sock when the stream is close-delimited.
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers
        self.closed = False
        self.lines = []   # every line read, for messages

    def read_body(self):
        return self.resp.read()

    def next(self, timeout):
        """The next event within timeout seconds; raises socket.timeout
        (TimeoutError) if none came; None when the server ended the stream."""
        deadline = time.monotonic() + timeout
        ev = {"id": None, "event": None, "data": [], "raw": []}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no event within %.1fs" % timeout)
            self.sock.settimeout(left)
            line = self.resp.readline()
            if not line:
                self.closed = True
                return None
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(text)
            if text == "":
                if ev["data"] or ev["event"] or ev["id"] is not None:
                    data = "\n".join(ev["data"])
                    try:
                        ev["data"] = json.loads(data)
                    except ValueError:
                        ev["data"] = data
                    return ev
                continue
            ev["raw"].append(text)
            if text.startswith(":"):
                continue
            field, _, value = text.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "id":
                ev["id"] = value
            elif field == "event":
                ev["event"] = value
            elif field == "data":
                ev["data"].append(value)

    def close(self):
        """Drops the connection at once, as a client that goes away."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.resp.close()
        self.conn.close()
        self.sock.close()

    def transcript(self, n=80):
        return "\n".join(self.lines[-n:])


# ---------------------------------------------------------------- TestCase

class ServerTest(unittest.TestCase):
    """Starts servers on demand (start_server), each stopped with SIGTERM at
    the end of the test; a stop that does not exit 0 fails the test. The log
    of every server is printed when the test failed."""
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="durable-srv-")
        self.servers = []
        self.addCleanup(self._cleanup)

    def _failed(self):
        """Whether this test has failed so far (cleanups run inside their own
        executor, where _outcome.success is reset, so look at the result)."""
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return True
        result = getattr(outcome, "result", None)
        if result is not None:
            for t, _ in list(result.failures) + list(result.errors):
                if t is self or getattr(t, "test_case", None) is self:
                    return True
        return any(exc for _, exc in getattr(outcome, "errors", []))

    def _cleanup(self):
        problems = []
        for s in self.servers:
            if s.running():
                rc = s.stop()
                if rc != 0:
                    problems.append("%s: SIGTERM ended it with exit status %s, not 0%s"
                                    % (s.name, rc, s.describe()))
        if self._failed() or problems or os.environ.get("DURABLE_E2E_VERBOSE"):
            for s in self.servers:
                log(s.describe())
        keep = os.environ.get("DURABLE_KEEP_TMP") and (self._failed() or problems)
        if keep:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            pg_drop_test_db(self.tmp)
        if problems:
            raise AssertionError("\n".join(problems))

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start_server(self, **kw):
        kw.setdefault("name", "server%d" % (len(self.servers) + 1))
        s = Server(self.tmp, **kw)
        self.servers.append(s)
        try:
            return s.start()
        except ServerError as e:
            self.fail(str(e))

    # -- assertions --

    def assertStatus(self, r, *codes):
        self.assertIn(r.status, codes, "expected status %s%s"
                      % (" or ".join(map(str, codes)), r))
        return r

    def assertOk(self, r, code=200):
        self.assertStatus(r, code)
        ctype = r.header("Content-Type", "")
        self.assertIn("application/json", ctype, "Content-Type of a JSON answer" + str(r))
        r.json()
        return r

    def assertError(self, r, *codes):
        """An error answer: one of codes, JSON {"error": {"code", "message"}}."""
        self.assertStatus(r, *codes)
        doc = r.json()
        self.assertIsInstance(doc, dict, r)
        err = doc.get("error")
        self.assertIsInstance(err, dict, "error body is {\"error\": {...}}" + str(r))
        self.assertIsInstance(err.get("code"), str, "error.code is a string" + str(r))
        self.assertTrue(err["code"], r)
        self.assertIsInstance(err.get("message"), str, "error.message is a string" + str(r))
        self.assertTrue(err["message"], r)
        return err

    def assertTime(self, value, what, nullable=False):
        if nullable and value is None:
            return
        self.assertIsInstance(value, str, "%s: %r" % (what, value))
        self.assertRegex(value, RFC3339_MS, "%s is RFC 3339 UTC with milliseconds" % what)

    def assertRunShape(self, run, context=""):
        for k in RUN_KEYS:
            self.assertIn(k, run, "run has %r%s" % (k, context))
        self.assertIsInstance(run["steps"], list, context)
        for s in run["steps"]:
            for k in STEP_KEYS:
                self.assertIn(k, s, "step has %r%s" % (k, context))
        self.assertTime(run["created_at"], "run created_at")

    def wait_for(self, fn, timeout, what, interval=0.05):
        """Polls fn() until it returns a true value (returned); fails after
        timeout seconds (scaled under sanitizers)."""
        deadline = time.monotonic() + timeout * slow_factor()
        last = None
        while True:
            last = fn()
            if last:
                return last
            if time.monotonic() > deadline:
                self.fail("timed out after %.1fs waiting for %s" % (timeout * slow_factor(), what))
            time.sleep(interval)

    def run_json(self, server, run_id):
        r = server.get("/runs/%s" % run_id)
        self.assertOk(r)
        return r.json()

    def wait_run(self, server, run_id, timeout=30, statuses=FINISHED):
        """Polls GET /runs/{id} until its status is in statuses; returns it."""
        last = {}

        def done():
            last["run"] = self.run_json(server, run_id)
            return last["run"] if last["run"]["status"] in statuses else None
        try:
            return self.wait_for(done, timeout, "run %s to be %s" % (run_id, "/".join(statuses)),
                                 interval=0.1)
        except AssertionError as e:
            raise AssertionError("%s; last seen:\n%s" % (e, json.dumps(last.get("run"), indent=1)))

    def events(self, server, run_id, after=None):
        path = "/runs/%s/events" % run_id + ("?after=%d" % after if after is not None else "")
        r = server.get(path)
        self.assertOk(r)
        evs = r.json()
        self.assertIsInstance(evs, list, r)
        return evs

    def register(self, server, definition, expect=(201, 200)):
        r = server.post("/workflows", definition)
        self.assertStatus(r, *expect)
        return r.json()

    def start_run(self, server, workflow, body=None, expect=(202,), headers=None):
        r = server.request("POST", "/workflows/%s/runs" % workflow,
                           json_body=body if body is not None else {}, headers=headers)
        self.assertStatus(r, *expect)
        return r.json()

    def create_order(self, server, amount=12.5):
        r = server.post("/orders", {"amount": amount})
        self.assertStatus(r, 201)
        return r.json()


def format_events(events):
    return "\n".join("    %3s %-16s %-14s %s" % (e.get("seq"), e.get("type"), e.get("step_id") or "",
                                                json.dumps(e.get("data"))) for e in events)
