#!/usr/bin/env python3
"""bench/run.py - the driver of `make bench`.

Runs every workload of issue 6 on fresh temporary databases in a directory
under the bench build tree (the same disk as the repository, never tmpfs),
prints one table (workload, figure, value, unit, ratio to the baseline
measured in this same run, target, met?) and writes it as JSON.

The measuring is done by two C programs (bench_sqlite: the raw-SQLite and
disk baselines; bench_engine: the workloads through libdurable's public API,
one process each) and, for the HTTP workloads, by the real `durable serve`
driven with wrk (W6) or left alone (W7). Every step has a time limit; a step
that fails or runs out of time is reported as failed and the others go on.

Usage: bench/run.py [--build build-bench] [--json build/bench.json] [--quick] [--keep]
                    [--only sqlite|pg] [--steps KEY,...]
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import pg_server  # noqa: E402  (tests/pg_server.py: a temporary PostgreSQL, fsync on)


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---- running the measuring programs ------------------------------------

def run_prog(args, timeout):
    """Runs a bench program; returns the JSON object of its last stdout line."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout} s: {' '.join(args[:2])}")
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-3:]
        raise BenchError(f"{os.path.basename(args[0])} {args[1]} exited {p.returncode}: "
                         + " / ".join(tail))
    lines = [l for l in p.stdout.strip().splitlines() if l.startswith("{")]
    if not lines:
        raise BenchError(f"{os.path.basename(args[0])} {args[1]} printed no result")
    out = json.loads(lines[-1])
    out["_wall_s"] = round(time.monotonic() - t0, 3)
    return out


# ---- the server (W6, W7) -------------------------------------------------

class Server:
    """`durable serve` on 127.0.0.1 and a free port, stopped by SIGTERM."""

    def __init__(self, exe, db, workflows, log_path, timeout=30, extra=()):
        self.log = open(log_path, "w")
        self.p = subprocess.Popen([exe, "serve", "--listen", "127.0.0.1:0", "--db", db,
                                   "--workflows", workflows] + list(extra),
                                  stdout=subprocess.PIPE, stderr=self.log, text=True)
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        line = ""
        if sel.select(timeout):
            line = self.p.stdout.readline()
        sel.close()
        m = re.search(r"http://([0-9.]+):(\d+)", line)
        if not m:
            self.stop()
            raise BenchError(f"the server did not start (first line {line!r}, see {log_path})")
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError("the server never answered /health")
            time.sleep(0.05)

    def request(self, method, path, body=None, conn=None):
        own = conn is None
        c = conn or http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            if own:
                c.close()

    def metric(self, name, labels=""):
        status, text = self.request("GET", "/metrics")
        if status != 200:
            raise BenchError(f"/metrics answered {status}")
        m = re.search(r"^" + re.escape(name + labels) + r" ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def stop(self, timeout=60):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def proc_io(pid):
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return out


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.1)


def write_workflow(directory, name, duration_s, n_steps=1):
    """A chain of n_steps tasks of duration_s each."""
    os.makedirs(directory, exist_ok=True)
    steps = [{"id": f"s{i}", "type": "task", "config": {"duration_seconds": duration_s},
              "depends_on": [f"s{i - 1}"] if i else []} for i in range(n_steps)]
    with open(os.path.join(directory, name + ".json"), "w") as f:
        json.dump({"name": name, "steps": steps}, f)


def parse_wrk(text):
    def ms(v, unit):
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s|m)\s*$", text, re.M)
    p50 = re.search(r"^\s+50%\s+([0-9.]+)(us|ms|s|m)\s*$", text, re.M)
    total = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    if not rps or not p99:
        raise BenchError("could not read wrk's output: " + text.strip()[-200:])
    return {"requests_per_s": float(rps.group(1)), "p99_ms": ms(*p99.groups()),
            "p50_ms": ms(*p50.groups()) if p50 else None,
            "requests": int(total.group(1)) if total else None,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sock.group(1).strip() if sock else ""}


def run_wrk(args, timeout):
    try:
        p = subprocess.run(["wrk"] + args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("wrk timed out")
    except FileNotFoundError:
        raise BenchError("wrk is not installed (scripts/install-deps.sh wrk)")
    if p.returncode != 0:
        raise BenchError("wrk failed: " + (p.stderr or p.stdout).strip()[-200:])
    return parse_wrk(p.stdout)


# ---- the workloads -----------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.build = args.build
        self.bin = os.path.join(args.build, "bench")
        self.durable = os.path.join(args.build, "durable")
        self.quick = args.quick
        self.raw = {}
        self.errors = {}
        self.pg_skipped = None
        self.seen = set()  # every step key met, run or not (--steps)
        os.makedirs(args.build, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="bench-tmp-", dir=args.build)

    def db(self, name):
        return os.path.join(self.tmp, name + ".db")

    def step(self, key, fn):
        self.seen.add(key)
        if self.args.steps and key not in self.args.steps:
            return
        log(f"{key} ...")
        t0 = time.monotonic()
        try:
            self.raw[key] = fn()
            log(f"{key}: {json.dumps(self.raw[key])} ({time.monotonic() - t0:.1f} s)")
        except (BenchError, OSError, ValueError) as e:
            self.errors[key] = str(e)
            log(f"{key} FAILED: {e}")

    def engine(self, mode, db, timeout, *extra):
        return run_prog([os.path.join(self.bin, "bench_engine"), mode, "--db", self.db(db)]
                        + [str(x) for x in extra], timeout)

    def sqlite(self, mode, timeout, *extra):
        return run_prog([os.path.join(self.bin, "bench_sqlite"), mode]
                        + [str(x) for x in extra], timeout)

    def run_all(self):
        q = self.quick
        if self.args.only == "pg":
            self.pg_all()
            return
        self.step("fsync", lambda: self.sqlite("fsync", 30, "--dir", self.tmp, "--seconds", 2))
        self.step("commit_latency", lambda: self.sqlite("commit", 30, "--db", self.db("commit"),
                                                        "--seconds", 3))
        # The latency workloads are compared with a commit latency measured
        # just before each, so that a machine whose load changes between
        # steps still gives a fair ratio.
        self.step("commit_w1", lambda: self.sqlite("commit", 30, "--db", self.db("commit_w1"),
                                                   "--seconds", 1))
        self.step("w1", lambda: self.engine("w1", "w1", 120))
        self.step("commit_w1code", lambda: self.sqlite("commit", 30, "--db",
                                                       self.db("commit_w1code"), "--seconds", 1))
        self.step("w1code", lambda: self.engine("w1code", "w1code", 120))
        self.step("w1once", lambda: self.engine("w1once", "w1once", 120))
        self.step("w2", lambda: self.engine("w2", "w2", 240))
        if "w2" in self.raw:
            self.step("batch_rows", lambda: self.sqlite(
                "batch", 120, "--db", self.db("batch"), "--like", self.db("w2"),
                "--commits", int(self.raw["w2"]["commits"])))
        else:
            self.errors["batch_rows"] = "needs W2's database"
        self.step("commit_w3", lambda: self.sqlite("commit", 30, "--db", self.db("commit_w3"),
                                                   "--seconds", 1))
        self.step("w3", lambda: self.engine("w3", "w3", 60))
        self.step("w4", lambda: self.engine("w4", "w4", 240, "--runs", 1000 if q else 10000))
        n5 = 5000 if q else 100000
        self.step("w5create", lambda: self.engine("w5create", "w5", 300, "--runs", n5))
        if "w5create" in self.raw:
            self.step("w5scan", lambda: self.sqlite("scan", 60, "--db", self.db("w5")))
            self.step("w5", lambda: self.engine("w5recover", "w5", 300, "--runs", n5))
        self.step("lib", lambda: self.engine("lib", "lib", 60, "--inflight", 32,
                                             "--seconds", 1 if q else 3))
        self.step("sched", lambda: self.engine("sched", "sched", 240, "--runs",
                                               100 if q else 1000, "--seconds", 2 if q else 5))
        self.step("w8map", lambda: self.engine("w8map", "w8map", 240,
                                               "--steps", 1000 if q else 10000))
        self.step("w6", self.w6)
        self.step("w7", self.w7)
        if self.args.only != "sqlite":
            self.pg_all()

    # ---- PostgreSQL -------------------------------------------------------

    def pg_all(self):
        """W1, W2, W3 on a temporary PostgreSQL (tests/pg_server.py: fsync
        and synchronous_commit on) with its single-row commit measured just
        before each latency workload, then W2's shape over HTTP on 1, 2 and
        3 `durable serve` nodes sharing one database."""
        bindir = pg_server.bindir()
        if not os.path.exists(os.path.join(bindir, "initdb")):
            self.pg_skipped = (f"PostgreSQL is not installed (no initdb in {bindir}): "
                               "the PostgreSQL workloads were skipped")
            log(self.pg_skipped)
            return
        log("pg: starting a temporary PostgreSQL ...")
        try:
            srv = pg_server.PgServer().start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            self.errors["pg"] = f"could not start PostgreSQL: {e}"
            log(self.errors["pg"])
            return
        try:
            def pg_commit(seconds):
                return run_prog([os.path.join(self.bin, "bench_pg"), "commit", "--db",
                                 srv.create_database(f"commit{len(self.raw)}"), "--seconds",
                                 str(seconds)], 60)

            def engine(mode, timeout):
                return run_prog([os.path.join(self.bin, "bench_engine"), mode, "--db",
                                 srv.create_database(mode)], timeout)
            self.step("pg_commit", lambda: pg_commit(3))
            self.step("pg_commit_w1", lambda: pg_commit(1))
            self.step("pg_w1", lambda: engine("w1", 240))
            self.step("pg_w2", lambda: engine("w2", 600))
            self.step("pg_commit_w3", lambda: pg_commit(1))
            self.step("pg_w3", lambda: engine("w3", 120))
            for n in (1, 2, 3):
                self.step(f"pg_nodes{n}", lambda n=n: self.pg_nodes(srv, n))
        finally:
            srv.stop()

    def pg_nodes(self, pg, n_nodes):
        """1,000 runs of a 10-step chain started over HTTP, round robin over
        n_nodes nodes on one database, from 8 client threads as fast as
        they go; steps/s = 10,000 / (first start -> the last run
        completed, as /metrics counts them in the database)."""
        runs = 100 if self.quick else 1000
        wf = os.path.join(self.tmp, "wfpg")
        write_workflow(wf, "bench-chain10", 0, 10)
        url = pg.create_database(f"nodes{n_nodes}")
        nodes = []
        try:
            for i in range(n_nodes):
                nodes.append(Server(self.durable, url, wf,
                                    os.path.join(self.tmp, f"nodes{n_nodes}-{i}.log"),
                                    extra=["--node", f"bench{i}"]))
            failures = []
            next_run = iter(range(runs))
            lock = threading.Lock()

            def starter():
                conns = {}
                while True:
                    with lock:
                        i = next(next_run, None)
                    if i is None:
                        break
                    srv = nodes[i % n_nodes]
                    conn = conns.setdefault(i % n_nodes, http.client.HTTPConnection(
                        srv.host, srv.port, timeout=60))
                    status, body = srv.request("POST", "/workflows/bench-chain10/runs",
                                               '{"input": {}}', conn=conn)
                    if status not in (200, 201, 202):
                        failures.append(f"{status}: {body[:200]}")
                for c in conns.values():
                    c.close()
            t0 = time.monotonic()
            threads = [threading.Thread(target=starter) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            started_s = time.monotonic() - t0
            if failures:
                raise BenchError(f"{len(failures)} starts failed: {failures[0]}")
            deadline = time.monotonic() + 600
            while nodes[0].metric("durable_runs", '{status="completed"}') < runs:
                if time.monotonic() > deadline:
                    raise BenchError("the runs did not complete in 600 s")
                time.sleep(0.05)
            seconds = time.monotonic() - t0
            failed = nodes[0].metric("durable_runs", '{status="failed"}')
        finally:
            for srv in nodes:
                srv.stop()
        return {"nodes": n_nodes, "runs": runs, "steps": runs * 10, "seconds": seconds,
                "start_seconds": started_s, "failed_runs": failed,
                "steps_per_s": runs * 10 / seconds}

    def w6(self):
        secs = 2 if self.quick else 10
        wf = os.path.join(self.tmp, "wf6")
        write_workflow(wf, "bench-http", 0)
        srv = Server(self.durable, self.db("w6"), wf, os.path.join(self.tmp, "w6.log"))
        try:
            starts = run_wrk(["-t2", "-c32", f"-d{secs}s", "--latency",
                              "-s", os.path.join(ROOT, "bench", "wrk_start.lua"),
                              srv.url + "/workflows/bench-http/runs"], secs + 60)
            # Let the started runs finish before reading, so that the reads
            # do not share the CPU with them (bounded).
            def settled():
                return (srv.metric("durable_runs", '{status="running"}') +
                        srv.metric("durable_runs", '{status="pending"}')) == 0
            wait_until(settled, 120, "the started runs to finish")
            status, body = srv.request("POST", "/workflows/bench-http/runs", '{"input": {}}')
            if status not in (200, 201, 202):
                raise BenchError(f"POST /workflows/bench-http/runs answered {status}: {body}")
            run_id = json.loads(body)["id"]
            wait_until(lambda: json.loads(srv.request("GET", "/runs/" + run_id)[1])["status"]
                       == "completed", 30, "the run to complete")
            reads = run_wrk(["-t2", "-c32", f"-d{secs}s", "--latency",
                             srv.url + "/runs/" + run_id], secs + 60)
            rss = proc_status(srv.p.pid, "VmHWM")
        finally:
            srv.stop()
        return {"starts": starts, "reads": reads, "server_peak_rss_mib": rss / 1024.0,
                "seconds": secs}

    def w7(self):
        n_runs = 100 if self.quick else 1000
        window = 5 if self.quick else 30
        wf = os.path.join(self.tmp, "wf7")
        write_workflow(wf, "bench-idle", 600)
        db = self.db("w7")
        srv = Server(self.durable, db, wf, os.path.join(self.tmp, "w7.log"))
        try:
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
            for _ in range(n_runs):
                status, body = srv.request("POST", "/workflows/bench-idle/runs", '{"input": {}}',
                                           conn=conn)
                if status not in (200, 201, 202):
                    raise BenchError(f"POST answered {status}: {body}")
            conn.close()
            wait_until(lambda: srv.metric("durable_steps", '{status="running"}') >= n_runs,
                       120, f"{n_runs} steps to be running")
            time.sleep(2)  # let the last commits and any checkpoint settle
            pid = srv.p.pid

            def files():
                out = {}
                for suffix in ("", "-wal", "-shm"):
                    try:
                        st = os.stat(db + suffix)
                        out[suffix or "db"] = (st.st_size, st.st_mtime_ns)
                    except FileNotFoundError:
                        out[suffix or "db"] = None
                return out
            cpu0, io0, f0 = proc_cpu_s(pid), proc_io(pid), files()
            time.sleep(window)
            cpu1, io1, f1 = proc_cpu_s(pid), proc_io(pid), files()
            rss = proc_status(pid, "VmRSS")
            threads = proc_status(pid, "Threads")
        finally:
            srv.stop()
        return {"runs": n_runs, "window_s": window, "cpu_s": cpu1 - cpu0,
                "write_bytes": io1["write_bytes"] - io0["write_bytes"],
                "write_syscalls": io1["syscw"] - io0["syscw"],
                "files_changed": sorted(k for k in f0 if f0[k] != f1[k]),
                "server_rss_mib": rss / 1024.0, "server_threads": threads}

    def cleanup(self):
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- the table ---------------------------------------------------------

def rows_of(raw, errors):
    """One row per figure: (workload, figure, value, unit, baseline, ratio,
    target text, met). Values are None when the workload failed."""
    rows = []

    def get(key, *path):
        v = raw.get(key)
        for p in path:
            if v is None:
                return None
            v = v.get(p)
        return v

    def add(workload, figure, value, unit, baseline=None, base_value=None, target="",
            met=None, key=None):
        ratio = value / base_value if value is not None and base_value else None
        rows.append({"workload": workload, "figure": figure, "value": value, "unit": unit,
                     "baseline": baseline, "baseline_value": base_value, "ratio": ratio,
                     "target": target, "met": met,
                     "error": errors.get(key) if value is None and key else None,
                     "key": key})

    cl = get("commit_latency", "median_ms")
    br = get("batch_rows", "steps_per_s")
    add("commit_latency", "median commit (raw SQLite)", cl, "ms", None, None, "baseline",
        key="commit_latency")
    add("batch_rows", "W2's rows, raw SQLite", br, "steps/s", None, None, "baseline",
        key="batch_rows")

    cl1 = get("commit_w1", "median_ms") or cl
    v = get("w1", "median_ms")
    add("W1 sequential", "median per step", v, "ms", "commit_latency", cl1,
        "<= 1.5 x commit_latency", v is not None and cl1 is not None and v <= 1.5 * cl1, "w1")
    add("W1 sequential", "p99 per step", get("w1", "p99_ms"), "ms", "commit_latency", cl1,
        "", None, "w1")
    clc = get("commit_w1code", "median_ms") or cl
    for key, name in (("w1code", "W1 code-first"), ("w1once", "W1 code-first, at once")):
        v = get(key, "median_ms")
        add(name, "median per step", v, "ms", "commit_latency", clc,
            "<= 1.5 x commit_latency", v is not None and clc is not None and v <= 1.5 * clc, key)
        add(name, "commits per step", get(key, "commits_per_step"), "", None, None, "", None,
            key)

    v = get("w2", "steps_per_s")
    add("W2 throughput", "1,000 runs x 10 steps", v, "steps/s", "batch_rows", br,
        ">= 50,000 and >= 0.5 x batch_rows",
        v is not None and br is not None and v >= 50000 and v >= 0.5 * br, "w2")
    v = get("w2", "cpu_ms_per_run")
    add("W2 throughput", "CPU time per run", v, "ms", "batch_rows",
        get("batch_rows", "cpu_ms_per_run"), "<= 0.4 ms", v is not None and v <= 0.4, "w2")
    v = get("w2", "peak_rss_mib")
    add("W2 throughput", "peak RSS", v, "MiB", None, None, "<= 30 MiB",
        v is not None and v <= 30, "w2")

    cl3 = get("commit_w3", "median_ms") or cl
    v = get("w3", "median_ms")
    lim = 5 * cl3 + 1 if cl3 is not None else None
    add("W3 fan-out", "1 -> 100 -> 1 wall time", v, "ms", "commit_latency", cl3,
        f"<= 5 x commit_latency + 1 ms" + (f" = {lim:.2f} ms" if lim else ""),
        v is not None and lim is not None and v <= lim, "w3")

    n8 = f"{int(get('w8map', 'items') or 10000):,}"
    v = get("w8map", "map_ms")
    add("W8 map", f"map over {n8} items (task 0 s, 8 in flight)", v, "ms",
        f"{n8} plain steps", get("w8map", "plain_ms"), "", None, "w8map")
    add("W8 map", "  commits of the map run", get("w8map", "map_commits"), "", None, None, "",
        None, "w8map")

    n4 = f"{int(get('w4', 'runs') or 10000):,}"
    n5 = f"{int(get('w5', 'runs') or get('w5create', 'runs') or 100000):,}"
    n7 = f"{int(get('w7', 'runs') or 1000):,}"
    s7 = f"{int(get('w7', 'window_s') or 30)} s"
    early = get("w4", "completed_before_measure")
    if early:  # the start took longer than the tasks: fewer were in flight
        n4 += f" ({int(early):,} finished early)"
    v = get("w4", "rss_mib")
    add("W4 many waiting", f"RSS, {n4} runs in flight", v, "MiB", "RSS idle",
        get("w4", "rss_idle_mib"), "<= 150 MB (143 MiB)",
        v is not None and v * 1048576 <= 150e6 and not early, "w4")
    v = get("w4", "threads")
    t0 = get("w4", "threads_idle")
    add("W4 many waiting", f"threads, {n4} runs in flight", v, "threads", "threads idle", t0,
        "= threads idle", v is not None and t0 is not None and v == t0, "w4")

    scan = get("w5scan", "seconds")
    v = get("w5", "resumed_seconds")
    add("W5 recovery", f"{n5} runs: open to all resumed", v, "s", "raw SQLite scan", scan,
        "<= 2 s", v is not None and v <= 2, "w5")
    add("W5 recovery", f"{n5} runs: durable_open returns", get("w5", "open_seconds"), "s",
        "raw SQLite scan", scan, "", None, "w5")

    v = get("w6", "starts", "requests_per_s")
    add("W6 HTTP", "POST /workflows/{id}/runs", v, "req/s", "library starts",
        get("lib", "starts_per_s"), ">= 20,000", v is not None and v >= 20000, "w6")
    add("W6 HTTP", "  start p99", get("w6", "starts", "p99_ms"), "ms", None, None, "", None,
        "w6")
    v = get("w6", "reads", "requests_per_s")
    add("W6 HTTP", "GET /runs/{id}", v, "req/s", "library reads", get("lib", "reads_per_s"),
        ">= 50,000", v is not None and v >= 50000, "w6")
    add("W6 HTTP", "  read p99", get("w6", "reads", "p99_ms"), "ms", None, None, "", None,
        "w6")

    ns = get("sched", "schedules")
    ns = int(ns) if ns else 1000
    for overlap, what in (("allow", "tick starting a run"), ("skip", "tick skipped")):
        add("Schedules", f"{ns} every 1 s: CPU per {what}",
            get("sched", f"{overlap}_cpu_ms_per_tick"), "ms", None, None, "", None, "sched")
        add("Schedules", "  of which the writer", get("sched", f"{overlap}_writer_ms_per_tick"),
            "ms", None, None, "", None, "sched")
        add("Schedules", "  ticks fired", get("sched", f"{overlap}_ticks_per_s"), "ticks/s",
            None, None, "", None, "sched")

    # PostgreSQL's rows, unless that part was skipped (not installed).
    if any(k.startswith("pg") for k in list(raw) + list(errors)):
        pgc = get("pg_commit", "median_ms")
        add("pg_commit", "median commit (PostgreSQL, one row)", pgc, "ms", None, None, "baseline",
            key="pg_commit")
        pgc1 = get("pg_commit_w1", "median_ms") or pgc
        v = get("pg_w1", "median_ms")
        add("PG W1 sequential", "median per step", v, "ms", "pg_commit", pgc1,
            "<= 2 x pg_commit", v is not None and pgc1 is not None and v <= 2 * pgc1, "pg_w1")
        add("PG W1 sequential", "p99 per step", get("pg_w1", "p99_ms"), "ms", "pg_commit", pgc1,
            "", None, "pg_w1")
        v = get("pg_w2", "steps_per_s")
        add("PG W2 throughput", "1,000 runs x 10 steps", v, "steps/s", "W2 on SQLite",
            get("w2", "steps_per_s"), ">= 10,000", v is not None and v >= 10000, "pg_w2")
        add("PG W2 throughput", "commits", get("pg_w2", "commits"), "commits", None, None, "",
            None, "pg_w2")
        add("PG W2 throughput", "CPU time per run", get("pg_w2", "cpu_ms_per_run"), "ms",
            "W2 on SQLite", get("w2", "cpu_ms_per_run"), "", None, "pg_w2")
        pgc3 = get("pg_commit_w3", "median_ms") or pgc
        add("PG W3 fan-out", "1 -> 100 -> 1 wall time", get("pg_w3", "median_ms"), "ms",
            "pg_commit", pgc3, "", None, "pg_w3")
        one = get("pg_nodes1", "steps_per_s")
        for n in (1, 2, 3):
            add("PG W2 on nodes", f"{n} node{'s' if n > 1 else ''}, over HTTP",
                get(f"pg_nodes{n}", "steps_per_s"), "steps/s", "1 node" if n > 1 else None,
                one if n > 1 else None, "", None, f"pg_nodes{n}")

    v = get("w7", "cpu_s")
    add("W7 idle", f"server CPU in {s7}, {n7} timers", v, "s", None, None, "< 0.1 s",
        v is not None and v < 0.1, "w7")
    v = get("w7", "write_bytes")
    add("W7 idle", f"bytes written in {s7}", v, "bytes", None, None, "0",
        v is not None and v == 0 and not get("w7", "files_changed"), "w7")
    add("W7 idle", f"server RSS, {n7} runs waiting", get("w7", "server_rss_mib"), "MiB",
        None, None, "", None, "w7")
    return rows


def fmt_num(v):
    if v is None:
        return "-"
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 100:
        return f"{int(v):,}"
    av = abs(v)
    if av >= 1000:
        return f"{v:,.0f}"
    if av >= 100:
        return f"{v:.1f}"
    if av >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def table_text(rows):
    head = ("workload", "figure", "value", "unit", "ratio to baseline", "target", "met")
    lines = []
    for r in rows:
        ratio = "-"
        if r["ratio"] is not None:
            ratio = f"{r['ratio']:.2f} x {r['baseline']}"
        if r["value"] is None:
            met = "FAILED"
        elif r["met"] is None:
            met = ""
        else:
            met = "yes" if r["met"] else "NO"
        lines.append((r["workload"], r["figure"], fmt_num(r["value"]), r["unit"], ratio,
                      r["target"], met))
    widths = [max([len(head[i])] + [len(l[i]) for l in lines]) for i in range(len(head))]

    def fmt(cells):
        return "| " + " | ".join(c.rjust(w) if i == 2 else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(l) for l in lines]
    return "\n".join(out)


# ---- the machine ---------------------------------------------------------

def machine_info(tmp):
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            info["cpu"] = m.group(1) if m else "?"
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
            info["memory_gib"] = round(int(m.group(1)) / 1048576, 1)
    except OSError:
        pass
    try:
        df = subprocess.run(["df", "-PT", tmp], capture_output=True, text=True).stdout
        dev, fstype = df.splitlines()[1].split()[:2]
        info["disk"] = {"device": dev, "fstype": fstype}
        name = os.path.basename(dev)
        rot = f"/sys/block/{name}/queue/rotational"
        if os.path.exists(rot):
            info["disk"]["rotational"] = open(rot).read().strip() == "1"
    except (OSError, IndexError, ValueError):
        pass
    try:
        info["git"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()
        info["git_dirty"] = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                                 "--untracked-files=no"],
                                                capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench.json"))
    ap.add_argument("--quick", action="store_true", help="small sizes, to try the harness")
    ap.add_argument("--keep", action="store_true", help="keep the temporary databases")
    ap.add_argument("--only", choices=("sqlite", "pg"),
                    help="only the SQLite workloads, or only the PostgreSQL ones")
    ap.add_argument("--steps", type=lambda v: set(x.strip() for x in v.split(",") if x.strip()),
                    help="only these steps (keys as in the JSON, comma-separated), e.g. "
                         "--only pg --steps pg_commit_w1,pg_w1,pg_w2")
    args = ap.parse_args()

    t0 = time.monotonic()
    b = Bench(args)
    info = machine_info(b.tmp)
    if info.get("disk", {}).get("fstype") == "tmpfs":
        log("warning: the temporary directory is on tmpfs: fsync costs nothing there")
    info["loadavg_start"] = os.getloadavg()
    try:
        b.run_all()
    finally:
        b.cleanup()
    unknown = sorted((args.steps or set()) - b.seen)
    if unknown:
        log(f"unknown step(s) for --steps: {', '.join(unknown)} (known: {', '.join(sorted(b.seen))})")
        return 2
    info["loadavg_end"] = os.getloadavg()
    if "fsync" in b.raw:
        info["fsync_median_ms"] = b.raw["fsync"]["median_ms"]
        info["fsync_p99_ms"] = b.raw["fsync"]["p99_ms"]
    if "commit_latency" in b.raw:
        info["sqlite"] = b.raw["commit_latency"].get("sqlite_version")
    rows = rows_of(b.raw, b.errors)
    if args.only == "pg":
        rows = [r for r in rows if r["workload"].lower().startswith("pg")]
    if args.steps:  # the rows of the steps that ran
        rows = [r for r in rows if r["key"] in args.steps]
    elapsed = time.monotonic() - t0

    print()
    print(table_text(rows))
    print()
    print(f"machine: {info.get('nproc')} CPUs ({info.get('cpu', '?')}), "
          f"{info.get('memory_gib', '?')} GiB, disk {info.get('disk', {}).get('device', '?')} "
          f"({info.get('disk', {}).get('fstype', '?')}), 4 KiB fdatasync median "
          f"{fmt_num(info.get('fsync_median_ms'))} ms, load average "
          f"{info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}")
    if "pg_commit" in b.raw:
        print(f"PostgreSQL {int(b.raw['pg_commit']['server_version'])}, synchronous_commit "
              f"{b.raw['pg_commit']['synchronous_commit']}, fsync on, 127.0.0.1")
    if b.pg_skipped:
        print(b.pg_skipped)
    for k, e in b.errors.items():
        print(f"failed: {k}: {e}")
    unmet = [f"{r['workload']}: {r['figure']}" for r in rows if r["met"] is False]
    print(f"{len(unmet)} target(s) not met; {len(b.errors)} step(s) failed; "
          f"{elapsed:.0f} s in all; JSON in {args.json}")

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    doc = {"schema": 1,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "quick": args.quick, "seconds": round(elapsed, 1), "machine": info,
           "results": rows, "raw": b.raw, "errors": b.errors}
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
