#!/usr/bin/env python3
"""Hostile clients against a real `durable serve` (loopback only).

One server, attacked in turn by:
  sse       N clients on GET /events/stream (short 200, --full 1,000)
  idle      N keep-alive connections that send one GET /health and then
            stay idle (short 1,000, --full 10,000)
  slowloris every GET and POST route of /openapi.json, K connections each:
            the headers a byte at a time, and (POST) the headers at once and
            the body a byte at a time (short K=1, --full K=10)
  oversize  a single 100 KiB header, 1,000 headers, a 64 KiB URL, sent over
            and over by 8 connections at a time
While each attack runs, a normal client measures GET /health, GET /runs/{id}
and POST /workflows/quick/runs (a run start) in turn; the same is measured
with no attack first (the baseline).

Asserted: every normal request is answered correctly (status and JSON)
within a generous timeout (no speed threshold: latencies are printed);
every SSE client is still connected at the end and received every event of
the runs started during the attack (a sample of clients is checked event by
event, in order, against GET /runs/{id}/events; every client's count of
run_completed frames must match); oversized requests get 400/413/414/431
or are closed, never a 5xx; the server's RSS (from /proc) stays under
baseline + connections x 36 KiB (the per-connection memory limit) + 64 MiB;
its open descriptors return to the baseline once the clients leave, and its
RSS to within 64 MiB of where it started; SIGTERM ends it with status 0.
A second test gives a server 300 file descriptors and checks the cap on
event streams (half the connections): the next stream is answered 503.

The soft RLIMIT_NOFILE is raised to the hard limit (the server inherits
it); when the hard limit cannot hold the idle connections, their number is
scaled down and the test says so.

Usage: test_clients.py --durable PATH --examples DIR [--full] [--attack S]
"""
import asyncio
import itertools
import json
import os
import re
import resource
import sys
import threading
import time

import server_util as su
from server_util import task

CONNECTION_MEMORY_KIB = 36      # src/http/server.c
RSS_SLACK_KIB = 64 * 1024
FD_SLACK = 8                    # descriptors the server opens lazily (database readers)
QUICK = {"name": "quick", "description": "two steps of no duration",
         "steps": [task("a", 0), task("b", 0, ["a"])]}
KEYS = itertools.count()
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def scale():
    full = su.ARGS.full
    return {
        "sse": 1000 if full else 200,
        "sse_sample": 20 if full else 10,
        "idle": 10000 if full else 1000,
        "slow_per_route": 10 if full else 1,
        "attack_s": su.ARGS.attack or (15.0 if full else 4.0),
    }


def raise_nofile():
    """Soft RLIMIT_NOFILE to the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def proc_stats(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def fd_kinds(pid):
    kinds = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            k = os.readlink("/proc/%d/fd/%s" % (pid, fd)).split(":")[0]
        except OSError:
            continue
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]


class Sampler(threading.Thread):
    """The server's RSS and fd count every 0.2 s; keeps the peaks."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = self.peak_fds = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                rss, fds = proc_stats(self.pid)
            except (OSError, StopIteration):
                return
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_fds = max(self.peak_fds, fds)
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join()


class Normal(threading.Thread):
    """The normal client: /health, /runs/{id}, a run start, in turn, each
    on a fresh connection, one round every 0.25 s."""

    def __init__(self, srv, run_id):
        super().__init__(daemon=True)
        self.srv = srv
        self.run_id = run_id
        self.lat = {"health": [], "get_run": [], "start": []}
        self.errors = []
        self.started = []
        self.halt = threading.Event()

    def one(self, kind, method, path, body, want):
        t0 = time.monotonic()
        try:
            r = self.srv.request(method, path, json_body=body, timeout=60 * su.slow_factor())
            doc = r.json() if r.is_json() else None
        except Exception as e:  # noqa: BLE001 - every failure is reported
            self.errors.append("%s %s: %r" % (method, path, e))
            return None
        self.lat[kind].append(time.monotonic() - t0)
        if r.status != want or not isinstance(doc, dict):
            self.errors.append("%s %s: %s %r" % (method, path, r.status, r.body[:200]))
            return None
        return doc

    def run(self):
        while not self.halt.is_set():
            t0 = time.monotonic()
            self.one("health", "GET", "/health", None, 200)
            doc = self.one("get_run", "GET", "/runs/%s" % self.run_id, None, 200)
            if doc is not None and doc.get("id") != self.run_id:
                self.errors.append("GET /runs/%s answered run %r" % (self.run_id, doc.get("id")))
            doc = self.one("start", "POST", "/workflows/quick/runs",
                           {"idempotency_key": "normal-%d" % next(KEYS)}, 202)
            if doc is not None:
                self.started.append(doc["id"])
            self.halt.wait(max(0.0, 0.25 - (time.monotonic() - t0)))

    def stop(self):
        self.halt.set()
        self.join(timeout=300)


class Dechunk:
    """Incremental decoder of a chunked body."""

    def __init__(self):
        self.buf = b""
        self.left = 0       # data bytes left in the current chunk
        self.crlf = False   # the CRLF after a chunk's data is next

    def feed(self, data):
        self.buf += data
        out = bytearray()
        while True:
            if self.left:
                take = self.buf[:self.left]
                out += take
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                if self.left:
                    break
                self.crlf = True
            if self.crlf:
                if len(self.buf) < 2:
                    break
                self.buf = self.buf[2:]
                self.crlf = False
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            self.left = int(self.buf[:i].split(b";")[0], 16)
            self.buf = self.buf[i + 2:]
            if not self.left:
                break
        return bytes(out)


class SSEClient:
    """One GET /events/stream connection on the event loop."""

    def __init__(self, keep):
        self.keep = keep          # keep every frame (a sampled client)
        self.status = None
        self.frames = []          # (id, type, data) of a sampled client
        self.completed = 0        # run_completed frames
        self.pings = 0            # ": ping" comments
        self.last_data = None     # time.monotonic() of the last bytes read
        self.closed = False
        self.error = None
        self.text = b""
        self.reader = self.writer = None

    async def open(self, host, port, headers):
        try:
            self.reader, self.writer = await asyncio.open_connection(host, port)
            req = "GET /events/stream HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n" % host
            req += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
            self.writer.write(req.encode())
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError) as e:
            self.error = "connect: %r" % e
            return
        m = STATUS.match(head)
        self.status = int(m.group(1)) if m else None
        self.chunked = b"chunked" in head.lower()

    async def read(self):
        dec = Dechunk() if self.chunked else None
        while True:
            try:
                data = await self.reader.read(65536)
            except OSError as e:
                self.error = "read: %r" % e
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.last_data = time.monotonic()
            if dec:
                data = dec.feed(data)
            self.text += data
            while b"\n\n" in self.text:
                frame, self.text = self.text.split(b"\n\n", 1)
                self.on_frame(frame)

    def on_frame(self, frame):
        fields = {}
        for line in frame.split(b"\n"):
            k, _, v = line.partition(b": ")
            fields[k] = v
        if fields.get(b"event") == b"run_completed":
            self.completed += 1
        if frame.startswith(b":"):
            self.pings += 1
        if self.keep and b"data" in fields:
            self.frames.append((int(fields[b"id"]), fields[b"event"].decode(),
                                json.loads(fields[b"data"])))

    def close(self):
        if self.writer:
            self.writer.close()


class ClientsTest(su.ServerTest):

    def setUp(self):
        super().setUp()
        self.sc = scale()
        self.nofile = raise_nofile()
        self.srv = self.start_server()
        self.register(self.srv, QUICK, expect=(201,))
        self.run_id = self.start_run(self.srv, "quick")["id"]
        self.wait_run(self.srv, self.run_id)
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.figures = []

    # ------------------------------------------------------------ harness

    def attack(self, name, n_conns, start, hold, finish=None):
        """Runs start() (a coroutine that opens the attack and returns its
        state), measures the normal client for the attack time while hold()
        keeps it up, then finish(state) and closes. Returns (normal, state)."""
        base_rss, base_fds = proc_stats(self.srv.pid)
        sampler = Sampler(self.srv.pid)
        sampler.start()
        t0 = time.monotonic()
        state = self.loop.run_until_complete(start())
        opened_s = time.monotonic() - t0
        normal = Normal(self.srv, self.run_id)
        normal.start()
        self.loop.run_until_complete(hold(state, self.sc["attack_s"]))
        normal.stop()
        during_rss, during_fds = proc_stats(self.srv.pid)
        if finish:
            self.loop.run_until_complete(finish(state, normal))
        sampler.stop()
        self.assertTrue(self.srv.running(), "the server died under %s%s"
                        % (name, self.srv.describe()))
        self.assertFalse(normal.errors, "normal requests failed during %s: %s"
                         % (name, normal.errors[:10]))
        for k, v in normal.lat.items():
            self.assertTrue(v, "no %s request was answered during %s" % (k, name))
        bound = base_rss + n_conns * CONNECTION_MEMORY_KIB + RSS_SLACK_KIB
        if su.sanitizer():
            bound *= 3
        self.assertLess(sampler.peak_rss, bound,
                        "RSS under %s: %d KiB at its peak, over the bound %d KiB (baseline %d KiB"
                        " + %d connections x %d KiB + %d KiB)"
                        % (name, sampler.peak_rss, bound, base_rss, n_conns,
                           CONNECTION_MEMORY_KIB, RSS_SLACK_KIB))
        try:
            self.wait_for(lambda: proc_stats(self.srv.pid)[1] <= base_fds + FD_SLACK, 60,
                          "the server's open descriptors to return to %d after %s"
                          % (base_fds, name), interval=0.2)
        except AssertionError as e:
            raise AssertionError("%s; open now: %s" % (e, fd_kinds(self.srv.pid)))
        after_rss, after_fds = proc_stats(self.srv.pid)
        self.figures.append((name, n_conns, normal, base_rss, sampler.peak_rss, after_rss,
                             base_fds, sampler.peak_fds, after_fds, opened_s))
        su.log("  %-9s %5d conns (opened in %.1fs): RSS %d -> peak %d -> %d KiB, fds %d -> "
               "peak %d -> %d, during %d KiB / %d fds"
               % (name, n_conns, opened_s, base_rss, sampler.peak_rss, after_rss, base_fds,
                  sampler.peak_fds, after_fds, during_rss, during_fds))
        self.report_latency(name, normal)
        return normal, state

    def report_latency(self, name, normal):
        su.log("  %-9s normal client: %s" % (name, ", ".join(
            "%s n=%d p50 %.1f ms p99 %.1f ms max %.1f ms"
            % (k, len(v), 1000 * pct(v, 0.5), 1000 * pct(v, 0.99), 1000 * max(v))
            for k, v in normal.lat.items())))

    async def gather_limited(self, coros, limit=200):
        sem = asyncio.Semaphore(limit)

        async def one(c):
            async with sem:
                return await c
        return await asyncio.gather(*(one(c) for c in coros))

    # ------------------------------------------------------------ phases

    def phase_baseline(self):
        async def start():
            return None

        async def hold(state, s):
            await asyncio.sleep(s)
        self.attack("baseline", 0, start, hold)

    def phase_sse(self):
        n, sample = self.sc["sse"], self.sc["sse_sample"]
        clients = [SSEClient(keep=i < sample) for i in range(n)]
        headers = self.srv.headers()

        async def start():
            await self.gather_limited([c.open(self.srv.host, self.srv.port, headers)
                                       for c in clients])
            tasks = [asyncio.ensure_future(c.read()) for c in clients if c.status == 200]
            bad = [(c.status, c.error) for c in clients if c.status != 200]
            self.assertFalse(bad, "%d of %d SSE clients were not answered 200: %s"
                             % (len(bad), n, bad[:10]))
            return tasks

        async def hold(tasks, s):
            await asyncio.sleep(s)

        async def finish(tasks, normal):
            runs = list(normal.started)
            self.assertTrue(runs, "no run was started during the SSE attack")
            deadline = time.monotonic() + 120 * su.slow_factor()
            # Every run ends; every client gets the run_completed of each.
            for r in runs:
                self.wait_run(self.srv, r, timeout=120)
            want = clients[0].completed
            while time.monotonic() < deadline:
                want = max(c.completed for c in clients)
                if all(c.completed == want for c in clients) and \
                        all(any(f[2]["run_id"] == runs[-1] and f[1] == "run_completed"
                                for f in c.frames) for c in clients[:sample]):
                    break
                await asyncio.sleep(0.2)
            closed = [i for i, c in enumerate(clients) if c.closed]
            self.assertFalse(closed, "%d SSE clients were disconnected during the attack: %s"
                             % (len(closed), [clients[i].error for i in closed[:5]]))
            behind = [(i, c.completed) for i, c in enumerate(clients) if c.completed != want]
            now = time.monotonic()
            self.assertFalse(behind, "SSE clients missing run_completed frames (want %d, %d runs):"
                             " %s; the first (client, run_completed, pings, seconds since its"
                             " last bytes): %s"
                             % (want, len(runs), behind[:10],
                                [(i, n, clients[i].pings, round(now - clients[i].last_data, 1)
                                  if clients[i].last_data else None) for i, n in behind[:5]]))
            history = {r: [(e["seq"], e["type"]) for e in self.events(self.srv, r)] for r in runs}
            for i, c in enumerate(clients[:sample]):
                ids = [f[0] for f in c.frames]
                self.assertEqual(ids, sorted(set(ids)), "client %d: ids not increasing" % i)
                for r in runs:
                    got = [(f[2]["seq"], f[1]) for f in c.frames if f[2]["run_id"] == r]
                    self.assertEqual(got, history[r], "client %d, events of run %s" % (i, r))
            su.log("  sse: %d clients, %d runs started during the attack, each client got %d "
                   "run_completed; %d sampled clients checked event by event"
                   % (n, len(runs), want, sample))
            for c in clients:
                c.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(c.writer.wait_closed() for c in clients if c.writer),
                                 return_exceptions=True)

        self.attack("sse", n, start, hold, finish)

    def phase_idle(self):
        n = self.sc["idle"]
        room = self.nofile - 512
        if room < n:
            su.log("  idle: RLIMIT_NOFILE hard limit %d holds only %d connections: scaled down"
                   " from %d" % (self.nofile, max(room, 0), n))
            n = max(room, 10)
        req = b"GET /health HTTP/1.1\r\nHost: %s\r\n\r\n" % self.srv.host.encode()
        conns, failures = [], []

        async def open_one():
            try:
                r, w = await asyncio.open_connection(self.srv.host, self.srv.port)
                w.write(req)
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
                m = re.search(rb"(?i)content-length: *(\d+)", head)
                await r.readexactly(int(m.group(1)) if m else 0)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures.append(head[:100])
                conns.append((r, w))
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                failures.append(repr(e))

        async def start():
            await self.gather_limited([open_one() for _ in range(n)])
            self.assertFalse(failures, "%d of %d idle connections failed: %s"
                             % (len(failures), n, failures[:5]))

        async def hold(state, s):
            await asyncio.sleep(s)

        async def finish(state, normal):
            still = sum(1 for r, _ in conns if not r.at_eof())
            su.log("  idle: %d connections opened, %d still open at the end" % (len(conns), still))
            for _, w in conns:
                w.close()
            await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)

        self.attack("idle", n, start, hold, finish)

    def routes(self):
        doc = self.srv.get("/openapi.json").json()
        out = []
        for path, ops in sorted(doc["paths"].items()):
            p = path.replace("{id}", self.run_id)
            p = re.sub(r"\{[^}]+\}", "a", p)
            for m in ("get", "post"):
                if m in ops:
                    out.append((m.upper(), p))
        self.assertGreater(len(out), 10, "routes in /openapi.json")
        return out

    def phase_slowloris(self):
        routes = self.routes()
        k = self.sc["slow_per_route"]
        host = self.srv.host.encode()
        plans = []
        for method, path in routes:
            head = (b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), path.encode(), host))
            for h in self.srv.headers().items():
                head += ("%s: %s\r\n" % h).encode()
            for _ in range(k):
                plans.append(head + b"X-Slow: " + b"z" * 4000 + b"\r\n\r\n")  # a byte at a time
                if method == "POST":
                    plans.append((head + b"Content-Type: application/json\r\n"
                                  b"Content-Length: 4000\r\n\r\n", b" " * 4000))
        closed, answers = [], []

        async def slow(plan, stop):
            try:
                r, w = await asyncio.open_connection(self.srv.host, self.srv.port)
            except OSError as e:
                closed.append("connect: %r" % e)
                return
            if isinstance(plan, tuple):
                w.write(plan[0])
                plan = plan[1]
            try:
                for i in range(len(plan)):
                    if time.monotonic() >= stop:
                        break
                    w.write(plan[i:i + 1])
                    await w.drain()
                    await asyncio.sleep(0.5)
                    if r.at_eof() or len(r._buffer):  # noqa: SLF001 - answered early
                        answers.append(bytes(r._buffer[:100]))
                        break
            except OSError:
                closed.append("closed")
            w.close()
            try:
                await w.wait_closed()
            except OSError:
                pass

        async def start():
            stop = time.monotonic() + self.sc["attack_s"] + 2.0
            return [asyncio.ensure_future(slow(p, stop)) for p in plans]

        async def hold(tasks, s):
            await asyncio.sleep(s)

        async def finish(tasks, normal):
            await asyncio.gather(*tasks)
            bad = [a for a in answers if STATUS.match(a) and int(STATUS.match(a).group(1)) >= 500]
            self.assertFalse(bad, "slow clients answered 5xx: %s" % bad[:5])
            su.log("  slowloris: %d routes x %d, %d connections; %d answered early, %d closed by "
                   "the server" % (len(routes), k, len(plans), len(answers), len(closed)))

        self.attack("slowloris", len(plans), start, hold, finish)

    def phase_oversize(self):
        host = self.srv.host.encode()
        auth = b"".join(("%s: %s\r\n" % h).encode() for h in self.srv.headers().items())
        cases = {
            "100 KiB header": (b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\n" + auth
                               + b"X-Big: " + b"a" * 102400 + b"\r\n\r\n"),
            "1,000 headers": (b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\n" + auth
                              + b"".join(b"X-H%d: v\r\n" % i for i in range(1000)) + b"\r\n"),
            "64 KiB URL": (b"GET /runs/" + b"a" * 65536 + b" HTTP/1.1\r\nHost: " + host
                           + b"\r\n" + auth + b"\r\n"),
        }
        seen = {k: {} for k in cases}
        halt = []

        async def sender(name, data):
            while not halt:
                status = None
                try:
                    r, w = await asyncio.open_connection(self.srv.host, self.srv.port)
                    w.write(data)
                    try:
                        await w.drain()
                    except OSError:
                        pass
                    head = await asyncio.wait_for(r.read(4096), 30)
                    m = STATUS.match(head)
                    status = int(m.group(1)) if m else None
                    w.close()
                    await w.wait_closed()
                except (OSError, asyncio.TimeoutError) as e:
                    status = "closed" if not isinstance(e, asyncio.TimeoutError) else "timeout"
                seen[name][status] = seen[name].get(status, 0) + 1

        async def start():
            return [asyncio.ensure_future(sender(name, data))
                    for name, data in cases.items() for _ in range(8 // len(cases) + 1)]

        async def hold(tasks, s):
            await asyncio.sleep(s)

        async def finish(tasks, normal):
            halt.append(True)
            await asyncio.gather(*tasks)
            for name, got in seen.items():
                bad = {k: v for k, v in got.items() if k not in (None, "closed", 400, 413, 414, 431)}
                self.assertFalse(bad, "%s: answered %s (want 400/413/414/431 or closed)"
                                 % (name, got))
                su.log("  oversize: %s: %s" % (name, ", ".join(
                    "%s x%d" % (k if k else "closed", v) for k, v in sorted(
                        got.items(), key=lambda kv: str(kv[0])))))

        self.attack("oversize", 9, start, hold, finish)

    # ------------------------------------------------------------ the test

    def test_hostile_clients(self):
        su.log("  %s mode: RLIMIT_NOFILE %d, %s" % ("full" if su.ARGS.full else "short",
                                                    self.nofile, self.sc))
        self.phase_baseline()
        self.phase_sse()
        self.phase_idle()
        self.phase_slowloris()
        self.phase_oversize()
        self.assertEqual(self.srv.get("/health").status, 200)
        first_rss, last_rss = self.figures[0][3], self.figures[-1][5]
        if not su.sanitizer():  # ASan's quarantine keeps freed memory on purpose
            self.assertLess(last_rss, first_rss + RSS_SLACK_KIB,
                            "RSS once every client left: %d KiB, from %d KiB before the attacks"
                            % (last_rss, first_rss))
        su.log("\n  figures (normal client latency p50/p99 in ms; RSS KiB; fds):")
        su.log("  %-9s %6s | %-13s | %-13s | %-13s | %-22s | %s"
               % ("attack", "conns", "GET /health", "GET /runs/id", "POST start",
                  "RSS base/peak/after", "fds base/peak/after"))
        for name, n, normal, b_rss, p_rss, a_rss, b_fds, p_fds, a_fds, _ in self.figures:
            cells = ["%5.1f / %5.1f" % (1000 * pct(normal.lat[k], 0.5),
                                        1000 * pct(normal.lat[k], 0.99))
                     for k in ("health", "get_run", "start")]
            su.log("  %-9s %6d | %s | %-22s | %d/%d/%d"
                   % (name, n, " | ".join(cells), "%d/%d/%d" % (b_rss, p_rss, a_rss),
                      b_fds, p_fds, a_fds))


class LimitedServer(su.Server):
    """A server whose RLIMIT_NOFILE (soft and hard) is `nofile`: set by a
    Python shim that then execs durable, so the pid is the server's."""

    def __init__(self, tmp, nofile, **kw):
        super().__init__(tmp, **kw)
        self.nofile = nofile

    def command(self):
        shim = ("import os, resource, sys; n = int(sys.argv[1]); "
                "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
                "os.execv(sys.argv[2], sys.argv[2:])")
        return [sys.executable, "-c", shim, str(self.nofile)] + super().command()


class StreamCapTest(su.ServerTest):
    """Event streams are capped at half the connections: with 300 file
    descriptors the server takes 300 - 64 = 236 connections and 118
    streams; the next stream is answered 503 with Retry-After, the rest of
    the API still answers, and a stream that leaves frees its place."""

    def test_stream_cap_503(self):
        srv = LimitedServer(self.tmp, 300, name="capped")
        self.servers.append(srv)
        srv.start()
        cap = (300 - 64) // 2
        streams, refused = [], []
        for i in range(cap + 5):
            s = su.SSE(srv, "/events/stream")
            if s.status == 200:
                streams.append(s)
            else:
                refused.append((s.status, s.headers.get("Retry-After"), s.read_body()))
                s.close()
        self.assertEqual(len(streams), cap, "streams accepted")
        self.assertEqual(len(refused), 5, "streams refused")
        for status, retry, body in refused:
            self.assertEqual(status, 503, body)
            self.assertEqual(retry, "5")
            err = json.loads(body)["error"]
            self.assertEqual(err["code"], "unavailable", body)
            self.assertIn("too many event streams open (at most %d)" % cap, err["message"])
        r = srv.get("/health")
        self.assertEqual(r.status, 200, r)
        run = self.start_run_on(srv)
        streams.pop().close()

        def reopened():
            s = su.SSE(srv, "/events/stream")
            if s.status == 200:
                streams.append(s)
                return True
            s.close()
            return False
        self.wait_for(reopened, 30, "a stream to be accepted once one left", interval=0.2)
        for s in streams:
            s.close()
        self.assertTrue(run)

    def start_run_on(self, srv):
        self.register(srv, QUICK, expect=(201,))
        return self.start_run(srv, "quick")["id"]


def extra(ap):
    ap.add_argument("--full", action="store_true",
                    help="1,000 SSE clients, 10,000 idle connections, 10 slow clients per route")
    ap.add_argument("--attack", type=float, default=0.0, help="seconds each attack lasts")


if __name__ == "__main__":
    su.main(extra)
