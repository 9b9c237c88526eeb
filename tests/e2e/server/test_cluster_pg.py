#!/usr/bin/env python3
"""Many `durable serve` nodes on one PostgreSQL database (issue 11).

test_sigkill_one_of_three: three nodes (lease 2 s) share the database of
DURABLE_TEST_PG (tests/pg_server.py starts one). 200 runs of an order flow
with the four actions, each with its own order, are started through the
first two nodes in turn; mid-way the first node is SIGKILLed, and later
the second is SIGSTOPped past its lease and continued. Then, read over HTTP
from the survivor:
  - every run completed and its order is shipped;
  - each run's events have seq 1..n without a gap, each action applied
    exactly once, each step completed exactly once;
  - the runs the killed node owned were taken over: the takeover time
    (the kill to the last of their `recovered` events, measured on the
    database's clock) is printed, and is under 2 x lease.

test_paused_node_is_fenced: two nodes; runs started on the first, whose
steps are in flight when it is SIGSTOPped past its lease. The second takes
the runs over and finishes them; when the first is continued, its late
completions are refused by the fence (its log says so) and nothing it
would have written is in the history: every action once, no step twice.

test_callers_through_another_node: runs executed by one node are approved,
cancelled and retried through the other, which reaches the owner by
LISTEN/NOTIFY: the approved run completes, the cancelled one stops, the
retried one runs again on its owner until it completes.

test_same_key_through_two_nodes: the same idempotency keys started through
two nodes at the same moment, each node naming another version of the
workflow: one run per key (the runs_key constraint), one node answers 202
with it, the other 200 with the same run.

test_sse_on_any_node: the global event stream of a node shows the events
of runs another node executes, in global id order without a gap, and a
stream resumed on the other node with Last-Event-ID loses nothing.

test_sse_while_both_nodes_run: runs executed by both nodes at once, with
steps that take no time, on the stream of one of them: every event once,
in global id order without a gap (the node hands its own commits' events
over itself and reads the other's, and neither path repeats or skips one).

test_partition_is_fenced: x1 reaches PostgreSQL through a TCP proxy of the
test, x2 directly. With steps in flight on x1 the proxy is cut (every
connection dropped, new ones refused): x1 answers 503 saying why, x2 takes
the runs over within 2 x lease (printed) and finishes them; restored, x1
joins again under a new epoch, nothing it wrote late is in a history, and
it takes new runs. test_silent_partition_is_fenced: the same with the
proxy holding every byte (connections open): x1 cannot fence itself, so
its completions reach PostgreSQL after the takeover and the fence refuses
them (its log says so); x2 is not held up by x1's open transactions.

test_kill_cycles: three nodes, each SIGKILLed (and restarted under its
name) and SIGSTOPped past its lease (and continued), while 300 runs are
started through the nodes up; a start a kill cut short is sent again with
its key: every run completes, each action once, no gap.

test_commits_refused: the server refuses some of a node's commits (a test
hook) while runs whose steps take no time go at once, so that refusals
undo batches begun behind them: every run completes, each step and
action once, the node's stream without a gap.

test_pg_restart_under_a_node: PostgreSQL (a server of the test's own)
stopped and started again on the same data and port under a node with
runs in flight, for less than the lease and for more: meanwhile the node
answers 503 with the reason (/health too) and does not flood its log;
then it reconnects by itself and every run completes, each action once.

Usage: test_cluster_pg.py --durable PATH --examples DIR --pg [-k NAME...]
"""
import collections
import http.client
import http.server
import os
import signal
import socket
import sys
import threading
import time
import unittest

import server_util as su
from server_util import task

LEASE_S = 2.0
N_RUNS = 200
N_CYCLE_RUNS = 300
ACTIONS = ["validate_order", "charge_payment", "ship_order", "send_notification"]
FLOW = {
    "name": "cluster-order",
    "description": "the order flow in about 2 s, on a cluster of nodes",
    "steps": [
        task("validate", 0.3, action="validate_order"),
        task("reserve", 0.5, ["validate"]),
        task("charge", 0.6, ["validate"], action="charge_payment"),
        task("ship", 0.4, ["charge", "reserve"], action="ship_order"),
        task("notify", 0.2, ["ship"], action="send_notification"),
    ],
}
# Long steps, so that they are in flight while their node is paused.
SLOW_FLOW = {
    "name": "cluster-slow-order",
    "description": "steps long enough to be in flight across a pause",
    "steps": [
        task("validate", 2.5, action="validate_order"),
        task("charge", 0.2, ["validate"], action="charge_payment"),
        task("ship", 0.2, ["charge"], action="ship_order"),
        task("notify", 0.2, ["ship"], action="send_notification"),
    ],
}


APPROVAL_FLOW = {
    "name": "cluster-approval",
    "steps": [
        task("before", 0.1),
        {"id": "ok", "type": "approval", "depends_on": ["before"], "config": {}},
        task("after", 0.1, ["ok"]),
    ],
}
LONG_FLOW = {"name": "cluster-long", "steps": [task("long", 30.0)]}


def flaky_flow(url):
    """One http_request to url, no retry: the run fails when it fails."""
    return {"name": "cluster-flaky",
            "steps": [{"id": "call", "type": "http_request", "config": {"url": url},
                       "retry": {"max_attempts": 1}}]}


class FailOnce(http.server.BaseHTTPRequestHandler):
    """500 to the first request, 200 to the others."""
    calls = 0

    def do_GET(self):
        FailOnce.calls += 1
        self.send_response(500 if FailOnce.calls == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


psql_rows = su.psql_rows


def db_now_ms(url):
    return int(psql_rows(url, "SELECT durable_now_ms()")[0][0])


def settled_keepalive_timers(pid, pg_port):
    """keepalive_timers, read again (20 times at most, 50 ms apart) while a
    connection shows none: one with a statement in flight at that instant
    (a heartbeat, every third of the lease) shows its retransmit timer
    instead. A connection without keepalives shows none every time."""
    timers = keepalive_timers(pid, pg_port)
    for _ in range(20):
        if timers and None not in timers:
            break
        time.sleep(0.05)
        timers = keepalive_timers(pid, pg_port)
    return timers


def keepalive_timers(pid, pg_port):
    """The seconds left on the keepalive timer of each of process pid's TCP
    connections to pg_port (None for one without a keepalive timer), from
    /proc/net/tcp: timer 2 is keepalive, tm->when is in USER_HZ ticks."""
    hz = os.sysconf("SC_CLK_TCK")
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    timers = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[9] not in inodes or int(cols[2].rsplit(":", 1)[1], 16) != pg_port:
                continue
            if cols[3] != "01":  # ESTABLISHED
                continue
            timer, when = cols[5].split(":")
            timers.append(int(when, 16) / hz if int(timer, 16) == 2 else None)
    return timers


class TcpProxy:
    """A TCP proxy on loopback to target_port that the test can cut: cut()
    drops every connection through it and refuses new ones (the port is
    closed), restore() accepts again on the same port. hold() is a silent
    partition: connections stay open but no byte goes through (each
    direction keeps what it read) until flow()."""

    def __init__(self, target_port):
        self.target = target_port
        self.flowing = threading.Event()
        self.flowing.set()
        self.lock = threading.Lock()
        self.socks = []      # every socket opened, closed by close()
        self.live = []       # the connections to drop at the next cut
        self.lsock = None
        self.port = 0
        self.restore()

    def restore(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.port = ls.getsockname()[1]
        with self.lock:
            self.lsock = ls
            self.socks.append(ls)
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return  # cut
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
                if self.lsock is not ls:  # cut meanwhile
                    for x in (c, u):
                        x.shutdown(socket.SHUT_RDWR)
                    return
                self.live += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                self.flowing.wait()
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            ls, self.lsock = self.lsock, None
            live, self.live = self.live, []
        for x in [ls] + live:
            try:
                x.shutdown(socket.SHUT_RDWR)  # wakes accept() and both pipes
            except OSError:
                pass
        ls.close()

    def hold(self):
        self.flowing.clear()

    def flow(self):
        self.flowing.set()

    def close(self):
        self.flow()
        if self.lsock:
            self.cut()
        with self.lock:
            for x in self.socks:
                x.close()
            self.socks = []


class ClusterTest(su.ServerTest):

    def node(self, name, db=None, lease=LEASE_S):
        return self.start_server(name=name, db=db,
                                 args=["--node", name, "--lease", "%gs" % lease])

    def wait_all_finished(self, srv, runs, what):
        deadline = time.monotonic() + 60 * su.slow_factor()
        pending = set(runs)
        while pending and time.monotonic() < deadline:
            lst = srv.get("/runs?status=completed&limit=500")
            self.assertOk(lst)
            pending -= {r["id"] for r in lst.json()}
            time.sleep(0.2)
        self.assertFalse(pending, "%s: %d runs unfinished after 60 s: %s"
                         % (what, len(pending), sorted(pending)[:5]))

    def check_runs(self, srv, runs, flow):
        problems = []
        for run_id, order_id in sorted(runs.items()):
            p = self.check_run(srv, run_id, order_id, flow)
            if p:
                problems.append("run %s:\n  %s" % (run_id, "\n  ".join(p)))
        self.assertFalse(problems, "%d of %d runs broke the contract:\n%s"
                         % (len(problems), len(runs), "\n\n".join(problems[:10])))

    def check_run(self, srv, run_id, order_id, flow):
        problems = []
        bad = problems.append
        run = self.run_json(srv, run_id)
        if run["status"] != "completed":
            bad("status %r (error %s)" % (run["status"], run["error_message"]))
        o = srv.get("/orders/%s" % order_id)
        if o.status != 200 or o.json().get("status") != "shipped":
            bad("order %s: %s %s" % (order_id, o.status, o.text[:200]))
        events = self.events(srv, run_id)
        seqs = [e["seq"] for e in events]
        if seqs != list(range(1, len(events) + 1)):
            bad("seq not 1..n without gaps: %s" % seqs)
        applied = collections.Counter(e["data"].get("action") for e in events
                                      if e["type"] == "action_applied")
        for a in ACTIONS:
            if applied[a] != 1:
                bad("action %s applied %d times" % (a, applied[a]))
        completed = collections.Counter(e["step_id"] for e in events
                                        if e["type"] == "step_completed")
        for s in flow["steps"]:
            if completed[s["id"]] != 1:
                bad("step %s completed %d times" % (s["id"], completed[s["id"]]))
        if problems:
            problems.append("events:\n" + su.format_events(events))
        return problems

    def start_runs(self, nodes, workflow, n, tag):
        runs = {}
        for i in range(n):
            srv = nodes[i % len(nodes)]
            order = self.create_order(srv, 10 + i)
            run = self.start_run(srv, workflow, {"order_id": order["id"],
                                                 "idempotency_key": "%s-%d" % (tag, i)})
            runs[run["id"]] = order["id"]
        return runs

    def test_sigkill_one_of_three(self):
        a, b, c = self.node("n1"), self.node("n2"), self.node("n3")
        url = a.db
        self.register(a, FLOW, expect=(201,))
        t0 = time.monotonic()
        runs = self.start_runs([a, b], "cluster-order", N_RUNS, "cl")
        su.log("started %d runs through n1 and n2 in %.2fs" % (N_RUNS, time.monotonic() - t0))

        killed_at = db_now_ms(url)
        self.assertEqual(a.kill(), -9, "n1 was not running" + a.describe())
        # Read at once: the runs stay n1's until its lease runs out.
        owned = {r for r, in psql_rows(
            url, "SELECT id FROM runs WHERE owner_node = 'n1' AND status IN"
            " ('pending', 'running', 'waiting')")}
        su.log("killed n1 with %d unfinished runs it owned" % len(owned))
        self.assertTrue(owned, "n1 owned no unfinished run when killed")

        # A start through a survivor while n1 is dead.
        more = self.start_runs([c], "cluster-order", 5, "late")
        runs.update(more)
        time.sleep(0.5)
        b.proc.send_signal(signal.SIGSTOP)
        time.sleep(LEASE_S * 1.5)
        b.proc.send_signal(signal.SIGCONT)
        su.log("paused n2 for %.1fs" % (LEASE_S * 1.5))

        self.wait_all_finished(c, runs, "after the kill")
        rows = psql_rows(url, "SELECT run_id, max(at) FROM events WHERE type = 'recovered'"
                         " AND at > %d GROUP BY run_id" % killed_at)
        recovered = {r: int(at) for r, at in rows}
        missing = owned - set(recovered)
        self.assertFalse(missing, "runs of n1 finished without a takeover: %s"
                         % sorted(missing)[:5])
        takeover = (max(recovered[r] for r in owned) - killed_at) / 1000.0
        first = (min(recovered[r] for r in owned) - killed_at) / 1000.0
        su.log("takeover of n1's %d runs: first after %.2fs, all after %.2fs (lease %gs)"
               % (len(owned), first, takeover, LEASE_S))
        self.assertLess(takeover, 2 * LEASE_S * su.slow_factor() + 1.0,
                        "the takeover took over 2 x lease")
        self.check_runs(c, runs, FLOW)
        # Any node answers for any run.
        some = sorted(runs)[0]
        self.assertEqual(self.run_json(b, some)["status"], "completed")
        su.log("ok: %d runs on 3 nodes, each action applied once" % len(runs))

    def test_paused_node_is_fenced(self):
        a, b = self.node("p1"), self.node("p2")
        url = a.db
        self.register(a, SLOW_FLOW, expect=(201,))
        runs = self.start_runs([a], "cluster-slow-order", 20, "fence")
        time.sleep(0.5)  # the first steps are in flight on p1
        a.proc.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        self.wait_all_finished(b, runs, "p1 paused")
        su.log("p2 finished p1's runs %.2fs after the pause" % (time.monotonic() - paused_at))
        owners = psql_rows(url, "SELECT DISTINCT owner_node FROM runs WHERE id IN (%s)"
                           % ",".join("'%s'" % r for r in runs))
        self.assertEqual(owners, [["p2"]])
        a.proc.send_signal(signal.SIGCONT)
        # p1's timers are long due: its late completions meet the fence.
        self.wait_for(lambda: "taken over by another node" in su.read_text(a.err_path)
                      or "fences itself" in su.read_text(a.err_path),
                      10 * su.slow_factor(), "p1 noticing it lost its runs")
        time.sleep(1.0)
        refused = su.read_text(a.err_path).count("taken over by another node")
        su.log("p1 continued: %d late transitions refused by the fence" % refused)
        self.check_runs(b, runs, SLOW_FLOW)
        self.assertEqual(a.get("/health").status, 200)

    def test_partition_is_fenced(self):
        self.partition(silent=False)

    def test_silent_partition_is_fenced(self):
        self.partition(silent=True)

    def partition(self, silent):
        """x1 reaches PostgreSQL through a proxy, x2 directly. With steps
        in flight on x1, the proxy is cut (silent: holds every byte, the
        connections open) until x2 has taken x1's runs over and finished
        them. Cut, x1 answers 503 and says why; held, x1's threads wait on
        the database and cannot fence themselves, so its completions reach
        PostgreSQL late, when the proxy lets them through, and meet the
        fence. Either way x1 joins again under a new epoch, nothing it
        wrote late is in a history, and it takes new runs."""
        url = su.pg_test_db(self.tmp)
        pg_port = int(url.rsplit(":", 1)[1].split("/")[0])
        proxy = TcpProxy(pg_port)
        self.addCleanup(proxy.close)
        a = self.node("x1", db=url.replace(":%d/" % pg_port, ":%d/" % proxy.port))
        b = self.node("x2", db=url)
        self.register(a, SLOW_FLOW, expect=(201,))
        runs = self.start_runs([a], "cluster-slow-order", 20, "cut")
        time.sleep(0.5)  # the first steps (2.5 s) are in flight on x1
        some = sorted(runs)[0]
        self.assertEqual(self.run_json(a, some)["steps"][0]["status"], "running")
        cut_at = db_now_ms(url)
        if silent:
            proxy.hold()
        else:
            proxy.cut()
            # x1 cannot reach its database: it answers, with 503, and says why.
            err = self.assertError(a.get("/health"), 503)
            self.assertIn("database", err["message"])
            err = self.assertError(a.get("/runs/%s" % some), 503)
            self.assertIn("database", err["message"])
        self.wait_all_finished(b, runs, "x1 cut off")
        rows = psql_rows(url, "SELECT run_id, max(at) FROM events WHERE type = 'recovered'"
                         " AND at > %d GROUP BY run_id" % cut_at)
        recovered = {r: int(at) for r, at in rows}
        self.assertEqual(set(recovered), set(runs), "runs x2 finished without a takeover")
        takeover = (max(recovered.values()) - cut_at) / 1000.0
        su.log("%s partition: x2 took x1's %d runs over %.2fs after the cut (lease %gs)"
               % ("silent" if silent else "a", len(runs), takeover, LEASE_S))
        self.assertLess(takeover, 2 * LEASE_S * su.slow_factor() + 1.0,
                        "the takeover took over 2 x lease")
        if silent:
            proxy.flow()
        else:
            proxy.restore()
        # x1 reconnects, learns it lost its runs and joins again (a new epoch).
        self.wait_for(lambda: psql_rows(url, "SELECT 1 FROM nodes WHERE id = 'x1'"
                                        " AND state = 'alive' AND epoch > 1"),
                      10 * LEASE_S, "x1 joining again after the partition")
        self.wait_for(lambda: a.get("/health").status == 200, 10, "x1's /health after the cut")
        refused = su.read_text(a.err_path).count("taken over by another node")
        su.log("x1 reconnected: %d late transitions refused by the fence" % refused)
        if silent:
            self.assertGreater(refused, 0, "x1's late completions did not meet the fence"
                               + a.describe())
        # Nothing x1 would have written is in any history.
        self.check_runs(b, runs, SLOW_FLOW)
        owners = psql_rows(url, "SELECT DISTINCT owner_node FROM runs WHERE id IN (%s)"
                           % ",".join("'%s'" % r for r in runs))
        self.assertEqual(owners, [["x2"]])
        # x1 goes on working: new runs through it are its own, and complete.
        self.register(b, FLOW)
        more = self.start_runs([a], "cluster-order", 5, "after-cut")
        self.wait_all_finished(a, more, "runs started on x1 after the partition")
        self.check_runs(a, more, FLOW)
        owners = psql_rows(url, "SELECT DISTINCT owner_node FROM runs WHERE id IN (%s)"
                           % ",".join("'%s'" % r for r in more))
        self.assertEqual(owners, [["x1"]])

    def test_kill_cycles(self):
        """SIGKILL (and a restart under the same name) and SIGSTOP past the
        lease (and SIGCONT), each node twice, while runs are started
        through whichever nodes are up; a start cut short by a kill is sent
        again with its key to another node."""
        nodes = [self.node("k1"), self.node("k2"), self.node("k3")]
        self.register(nodes[0], FLOW, expect=(201,))
        lock = threading.Lock()
        up = list(nodes)
        runs, failures = {}, []

        def start_one(i):
            order, last = None, None
            for attempt in range(200):
                with lock:
                    srv = up[(i + attempt) % len(up)]
                try:
                    if order is None:
                        r = srv.post("/orders", {"amount": 10 + i})
                        if r.status != 201:
                            raise OSError("POST /orders: %s %s" % (r.status, r.text[:200]))
                        order = r.json()["id"]
                    r = srv.post("/workflows/cluster-order/runs",
                                 {"order_id": order, "idempotency_key": "kc-%d" % i})
                    if r.status in (200, 202):
                        return r.json()["id"], order
                    raise OSError("POST runs: %s %s" % (r.status, r.text[:200]))
                except (OSError, http.client.HTTPException) as e:
                    last = e
                    time.sleep(0.1)
            failures.append("run %d never started: %s" % (i, last))
            return None, None

        def starter():
            for i in range(N_CYCLE_RUNS):
                run_id, order = start_one(i)
                if run_id:
                    runs[run_id] = order

        t = threading.Thread(target=starter)
        t0 = time.monotonic()
        t.start()
        cycles = 0
        for what, i in [("kill", 0), ("stop", 1), ("kill", 2), ("stop", 0), ("kill", 1),
                        ("stop", 2)]:
            time.sleep(1.0)
            n = nodes[i]
            with lock:
                up.remove(n)
            if what == "kill":
                self.assertEqual(n.kill(), -9, n.name + " was not running" + n.describe())
                time.sleep(0.3)
                n.start()
            else:
                n.proc.send_signal(signal.SIGSTOP)
                time.sleep(LEASE_S * 1.5)
                n.proc.send_signal(signal.SIGCONT)
            with lock:
                up.append(n)
            cycles += 1
        t.join()
        self.assertFalse(failures, "\n".join(failures[:5]))
        su.log("%d kill/stop cycles while %d runs were started (%.1fs)"
               % (cycles, len(runs), time.monotonic() - t0))
        self.assertEqual(len(runs), N_CYCLE_RUNS, "a key gave two runs")
        self.wait_all_finished(nodes[0], runs, "after the kill cycles")
        self.check_runs(nodes[1], runs, FLOW)
        su.log("ok: %d runs through %d kills and stops, each action once (%.1fs)"
               % (len(runs), cycles, time.monotonic() - t0))

    def test_pg_restart_under_a_node(self):
        """PostgreSQL stopped and started again (the same data and port)
        under a node with runs in flight, twice: for less than the node's
        lease (20 s: it keeps its lease and its runs, whose first steps
        end while the database is down, and takes up again the runs whose
        writes failed), then, the node restarted with a lease of 2 s, for
        more (it fences itself, joins again and takes its runs back). While it is down the node answers 503 with the
        reason, /health too, and does not flood its log; then it
        reconnects by itself and every run completes, each action once."""
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
        import pg_server
        pg = pg_server.PgServer().start()
        self.addCleanup(pg.stop)
        a = self.node("r1", db=pg.url, lease=20.0)
        self.register(a, FLOW, expect=(201,))
        self.register(a, SLOW_FLOW, expect=(201,))
        late = [self.create_order(a, 99)["id"] for _ in range(2)]
        phases = ((20.0, 3.0, SLOW_FLOW), (LEASE_S, 1.5 * LEASE_S, FLOW))
        for k, (lease, outage, flow) in enumerate(phases):
            if k > 0:
                self.assertEqual(a.stop(), 0, a.describe())
                a.args = ["--node", "r1", "--lease", "%gs" % lease]
                a.start()
            runs = self.start_runs([a], flow["name"], 30, "rs%d" % k)
            some = sorted(runs)[0]
            time.sleep(0.5)  # steps in flight
            pg.stop_server()
            err = self.assertError(a.get("/health"), 503)
            self.assertIn("database", err["message"])
            err = self.assertError(a.get("/runs/%s" % some), 503)
            self.assertIn("database", err["message"])
            body = {"order_id": late[k], "idempotency_key": "down-%d" % k}
            self.assertError(a.post("/workflows/%s/runs" % flow["name"], body), 503)
            time.sleep(outage)
            pg.start_server()
            back = time.monotonic()
            self.wait_for(lambda: a.get("/health").status == 200, 30, "/health after the restart")
            su.log("PostgreSQL down %.1fs under a node with a lease of %gs: /health 200 again"
                   " %.2fs after it came back" % (outage, lease, time.monotonic() - back))
            self.assertIsNone(a.proc.poll(), "the node exited" + a.describe())
            # The start refused while the database was down, sent again.
            run = self.start_run(a, flow["name"], body)
            runs[run["id"]] = late[k]
            self.wait_all_finished(a, runs, "after a restart of PostgreSQL")
            su.log("every run completed %.2fs after PostgreSQL came back"
                   % (time.monotonic() - back))
            self.check_runs(a, runs, flow)
        # It said it lost the database, not a line per attempt to reconnect.
        lines = len(su.read_text(a.err_path).splitlines())
        su.log("the node logged %d lines" % lines)
        self.assertLess(lines, 1000, "the node flooded its log" + a.describe())
        self.assertEqual(a.stop(), 0, a.describe())

    def test_callers_through_another_node(self):
        a, b = self.node("o1"), self.node("o2")
        web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FailOnce)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        self.addCleanup(web.server_close)
        self.addCleanup(web.shutdown)
        url = "http://127.0.0.1:%d/call" % web.server_address[1]
        for flow in (APPROVAL_FLOW, LONG_FLOW, flaky_flow(url)):
            self.register(a, flow)
        appr = self.start_run(a, "cluster-approval")["id"]
        long = self.start_run(a, "cluster-long")["id"]
        self.wait_run(b, appr, statuses=("waiting",))
        r = b.post("/runs/%s/steps/ok/approve" % appr, {"by": "someone on o2"})
        self.assertStatus(r, 200)
        self.assertEqual(self.wait_run(b, appr)["status"], "completed")
        r = b.post("/runs/%s/cancel" % long, {})
        self.assertStatus(r, 200, 202)
        self.assertEqual(self.wait_run(a, long)["status"], "cancelled")
        # Fails once (HTTP 500), is retried through o2, and o1 runs it again.
        flaky = self.start_run(a, "cluster-flaky")["id"]
        self.assertEqual(self.wait_run(b, flaky)["status"], "failed")
        self.assertStatus(b.post("/runs/%s/retry" % flaky, {}), 200, 202)
        self.assertEqual(self.wait_run(b, flaky)["status"], "completed")
        self.assertEqual(FailOnce.calls, 2)
        owners = psql_rows(a.db, "SELECT DISTINCT owner_node FROM runs WHERE id IN ('%s')"
                           % "','".join((appr, long, flaky)))
        self.assertEqual(owners, [["o1"]], "runs moved to o2")
        su.log("ok: an approval, a cancel and a retry through o2 reached o1")


    def read_stream(self, stream, n):
        """The next n events of stream."""
        got = []
        while len(got) < n:
            ev = stream.next(20 * su.slow_factor())
            self.assertIsNotNone(ev, "the stream ended:\n" + stream.transcript())
            if ev.get("id") is not None:
                got.append(ev)
        return got

    def test_sse_on_any_node(self):
        a, b = self.node("s1"), self.node("s2")
        self.register(a, FLOW)
        stream = su.SSE(b, "/events/stream")
        self.addCleanup(stream.close)
        self.assertEqual(stream.status, 200)
        runs = self.start_runs([a], "cluster-order", 3, "sse")
        for r in runs:
            self.wait_run(a, r)
        # s2's stream shows the runs s1 executes, every event, in order.
        n = sum(len(self.events(a, r)) for r in runs)
        got = self.read_stream(stream, n)
        ids = [int(e["id"]) for e in got]
        self.assertEqual(ids, list(range(ids[0], ids[0] + n)), stream.transcript())
        self.assertEqual({e["data"]["run_id"] for e in got}, set(runs))
        stream.close()
        # Resumed on s1 with Last-Event-ID: what came after, nothing lost.
        more = self.start_runs([b], "cluster-order", 1, "sse2")
        self.wait_run(b, list(more)[0])
        again = su.SSE(a, "/events/stream", last_event_id=str(ids[n // 2]))
        self.addCleanup(again.close)
        rest = self.read_stream(again, n - n // 2 - 1 + len(self.events(b, list(more)[0])))
        self.assertEqual([int(e["id"]) for e in rest],
                         list(range(ids[n // 2] + 1, ids[n // 2] + 1 + len(rest))))
        self.assertEqual([e["id"] for e in rest[:n - n // 2 - 1]],
                         [e["id"] for e in got[n // 2 + 1:]])
        su.log("ok: %d events of s1's runs on s2's stream, resumed on s1" % n)

    def test_sse_while_both_nodes_run(self):
        a, b = self.node("m1"), self.node("m2")
        quick = {"name": "cluster-quick", "steps": [
            task("s%d" % i, 0, ["s%d" % (i - 1)] if i else []) for i in range(6)]}
        self.register(a, quick)
        stream = su.SSE(a, "/events/stream")
        self.addCleanup(stream.close)
        self.assertEqual(stream.status, 200)
        runs = self.start_runs([a, b], "cluster-quick", 40, "mix")
        self.wait_all_finished(a, runs, "mixed")
        want = {(r, e["seq"]) for r in runs for e in self.events(a, r)}
        got = self.read_stream(stream, len(want))
        ids = [int(e["id"]) for e in got]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(want))), stream.transcript())
        self.assertEqual({(e["data"]["run_id"], e["data"]["seq"]) for e in got}, want)
        su.log("ok: %d events of runs on both nodes on m1's stream, each once, in order"
               % len(want))

    def test_connections_keep_alive(self):
        """Every connection of a node to PostgreSQL probes a silent peer
        after 10 s idle (a dead peer is noticed in seconds, not the
        kernel's two hours), and a setting in the URL wins over durable's."""
        url = su.pg_test_db(self.tmp)
        pg_port = int(url.rsplit(":", 1)[1].split("/")[0])
        a = self.node("ka1", db=url)
        b = self.node("ka2", db=url + "?keepalives_idle=600")
        self.assertOk(a.get("/health"))
        self.assertOk(b.get("/health"))
        on_a = settled_keepalive_timers(a.pid, pg_port)
        on_b = settled_keepalive_timers(b.pid, pg_port)
        self.assertGreaterEqual(len(on_a), 2, on_a)
        self.assertTrue(all(t is not None and t <= 10 for t in on_a),
                        "ka1's keepalive timers (s): %s" % on_a)
        self.assertGreaterEqual(len(on_b), 2, on_b)
        self.assertTrue(all(t is not None and 10 < t <= 600 for t in on_b),
                        "ka2's keepalive timers (s), keepalives_idle=600: %s" % on_b)

    def test_commits_refused(self):
        """The server refuses a third of a node's commits after its first
        30 (DURABLE_FAILPOINT_COMMIT=refused: a statement of the
        transaction fails, so its COMMIT rolls it back), 40 times, while
        80 runs of steps that take no time go at once, so that most
        batches begin behind the COMMIT of the one before and a refusal
        undoes both. The writer tries each again: every run completes,
        each step and action once, and the node's stream shows every
        event once, in global id order, without a gap."""
        fast = dict(FLOW, name="cluster-order-fast",
                    steps=[dict(st, config=dict(st["config"], duration_seconds=0))
                           for st in FLOW["steps"]])
        a = self.start_server(name="f1", args=["--node", "f1", "--lease", "%gs" % LEASE_S],
                              env={"DURABLE_FAILPOINT_COMMIT": "refused,after=30,p=0.3,count=40"})
        self.register(a, fast, expect=(201,))
        stream = su.SSE(a, "/events/stream")
        self.addCleanup(stream.close)
        self.assertEqual(stream.status, 200)
        runs = self.start_runs([a], fast["name"], 80, "refused")
        self.wait_all_finished(a, runs, "with commits refused")
        self.check_runs(a, runs, fast)
        want = {(r, e["seq"]) for r in runs for e in self.events(a, r)}
        got = self.read_stream(stream, len(want))
        ids = [int(e["id"]) for e in got]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(want))), stream.transcript())
        self.assertEqual({(e["data"]["run_id"], e["data"]["seq"]) for e in got}, want)
        log = su.read_text(a.err_path)
        refused = log.count("commit failed, retrying")
        self.assertIn("DURABLE_FAILPOINT_COMMIT", log)
        self.assertGreater(refused, 0, a.describe())
        su.log("ok: %d commits refused and tried again; %d runs completed, each step and"
               " action once, %d events on the stream without a gap" % (refused, len(runs),
                                                                         len(want)))
        self.assertEqual(a.stop(), 0, a.describe())

    def test_same_key_through_two_nodes(self):
        a, b = self.node("k1"), self.node("k2")
        # Two versions, each node starting its own: a key names one run per
        # workflow name, whatever the version.
        v1 = self.register(a, {"name": "cluster-key", "steps": [task("s", 0.05)]})["id"]
        v2 = self.register(b, {"name": "cluster-key", "description": "v2",
                               "steps": [task("s", 0.05)]})["id"]
        self.assertNotEqual(v1, v2)
        keys = ["same-%d" % i for i in range(30)]
        answers = collections.defaultdict(list)
        barrier = threading.Barrier(2)

        def starter(srv, wf):
            for key in keys:
                barrier.wait()
                r = srv.post("/workflows/%s/runs" % wf, {"idempotency_key": key})
                answers[key].append((r.status, r.json() if r.status < 300 else r.text))

        threads = [threading.Thread(target=starter, args=x) for x in ((a, v1), (b, v2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for key in keys:
            got = answers[key]
            self.assertEqual(sorted(st for st, _ in got), [200, 202],
                             "%s: one start creates, the other finds it: %s" % (key, got))
            self.assertEqual(got[0][1]["id"], got[1][1]["id"], "%s: two runs: %s" % (key, got))
        # The database is the other tests' too: this workflow's runs only.
        rows = psql_rows(a.db, "SELECT r.idempotency_key FROM runs r JOIN workflows w"
                         " ON w.id = r.workflow_id WHERE w.name = 'cluster-key'")
        self.assertEqual(sorted(k for k, in rows), sorted(keys), "not one run per key")
        for key in keys:
            self.assertEqual(self.wait_run(b, answers[key][0][1]["id"])["status"], "completed")
        su.log("ok: %d keys started through two nodes at once, one run each" % len(keys))


if __name__ == "__main__":
    rest = su.parse_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
