#!/usr/bin/env python3
"""End-to-end tests of the live events of `durable serve` (SPEC §6, issue 3):
GET /runs/{id}/stream and GET /events/stream as Server-Sent Events.

- a subscriber to a run's stream sees every transition in history order: the
  `id:` of each event is its seq, 1..n without gaps, `event:` its type, and
  the events are those of GET /runs/{id}/events;
- a client that drops the connection mid-run and reconnects with
  Last-Event-ID receives exactly what it missed, no duplicate, no gap;
- the global stream delivers the events of several runs with increasing ids,
  and reconnecting there with Last-Event-ID loses nothing either;
- many idle subscribers do not each hold a server thread, and all of them
  get the events;
- a stream whose wake-up is lost (the failpoint `sse.resume` leaves out one
  resume of a suspended connection) still gets its events, from the
  server's safety net at the pings, and the server says so on stderr.

Usage: test_sse.py --durable PATH/durable --examples PATH/examples [unittest args]
"""
import socket
import time

import server_util as su
from server_util import task

END_TYPES = ("run_completed", "run_failed", "run_cancelled")


def chain(name, n=5, seconds=0.25):
    steps = [task("s1", seconds)]
    for i in range(2, n + 1):
        steps.append(task("s%d" % i, seconds, ["s%d" % (i - 1)]))
    return {"name": name, "steps": steps}


def key(e):
    return (e["seq"], e["type"], e["step_id"])


def ended(run):
    """read_until's test: the last event read is run's final one."""
    return lambda g: g and isinstance(g[-1]["data"], dict) \
        and g[-1]["data"].get("run_id") == run and g[-1]["data"].get("type") in END_TYPES


class SseTest(su.ServerTest):

    def open(self, srv, path, last_event_id=None, **kw):
        try:
            sse = su.SSE(srv, path, last_event_id=last_event_id, **kw)
        except (socket.timeout, TimeoutError) as e:
            self.fail("GET %s: no response headers (%s): a stream must answer at once, not at"
                      " its first event" % (path, e))
        self.addCleanup(sse.close)
        if sse.status != 200:
            self.fail("GET %s -> %s: %s" % (path, sse.status, sse.read_body()[:2000]))
        ctype = sse.headers.get("Content-Type", "")
        self.assertIn("text/event-stream", ctype, "GET %s Content-Type" % path)
        return sse

    def read_until(self, sse, done, timeout, what):
        """Events until done(list of events so far) is true."""
        got = []
        deadline = time.monotonic() + timeout * su.slow_factor()
        while not done(got):
            left = deadline - time.monotonic()
            try:
                ev = sse.next(max(0.01, left)) if left > 0 else None
            except (socket.timeout, TimeoutError):
                ev = None
                left = 0
            if ev is None:
                self.fail("%s: %s after %d events; stream so far:\n%s"
                          % (what, "timed out" if left <= 0 else "the server ended the stream",
                             len(got), sse.transcript()))
            got.append(ev)
        return got

    def nothing_more(self, sse, wait=1.0):
        """No further event within wait seconds (the stream may also end)."""
        try:
            ev = sse.next(wait)
        except (socket.timeout, TimeoutError, OSError):
            return
        self.assertIsNone(ev, "unexpected event after the end: %s" % (ev,))

    def check_run_events(self, evs, context):
        """id: is seq, event: is the type, data is the event object."""
        for ev in evs:
            d = ev["data"]
            self.assertIsInstance(d, dict, "data: is a JSON event object" + context)
            for k in su.EVENT_KEYS:
                self.assertIn(k, d, "event data has %r%s" % (k, context))
            self.assertEqual(ev["id"], str(d["seq"]), "a run stream's id: is the seq" + context)
            self.assertEqual(ev["event"], d["type"], "event: is the event type" + context)
        return [ev["data"] for ev in evs]

    def check_exact(self, srv, run_id, received, context):
        """received (event objects) = GET /runs/{id}/events: seq 1..n, no gap,
        no duplicate, same content."""
        spec = lambda evs: [{k: e[k] for k in su.EVENT_KEYS} for e in evs]
        history = self.events(srv, run_id)
        self.assertEqual([e["seq"] for e in received], list(range(1, len(received) + 1)),
                         "seq 1..n without gaps or duplicates%s\nreceived:\n%s"
                         % (context, su.format_events(received)))
        self.assertEqual(spec(received), spec(history), "the stream = the history" + context)

    # ------------------------------------------------------------ run stream

    def test_run_stream_sees_every_transition_in_order(self):
        srv = self.start_server()
        d = {"name": "watched", "steps": [
            task("validate", 0.3, action="validate_order"),
            task("charge", 0.3, ["validate"], action="charge_payment"),
            task("stock", 0.4, ["validate"]),
            task("ship", 0.2, ["charge", "stock"], action="ship_order")]}
        self.register(srv, d)
        order = self.create_order(srv, 7)
        run = self.start_run(srv, "watched", {"order_id": order["id"]})
        path = "/runs/%s/stream" % run["id"]
        subs = [self.open(srv, path) for _ in range(3)]
        streams = []
        for i, sse in enumerate(subs):
            evs = self.read_until(sse, lambda g: g and g[-1]["event"] in END_TYPES, 20,
                                  "subscriber %d of %s" % (i, path))
            streams.append(self.check_run_events(evs, " (subscriber %d)" % i))
        for i, received in enumerate(streams):
            self.check_exact(srv, run["id"], received, " (subscriber %d)" % i)
            self.assertEqual(received[-1]["type"], "run_completed")
            self.assertEqual(sum(1 for e in received if e["type"] == "action_applied"), 3)
        for sse in subs:
            self.nothing_more(sse, 0.5)
        # A subscriber that comes after the end gets the whole history too.
        late = self.open(srv, path)
        evs = self.read_until(late, lambda g: g and g[-1]["event"] in END_TYPES, 10, "late")
        self.check_exact(srv, run["id"], self.check_run_events(evs, " (late)"), " (late)")
        self.nothing_more(late, 0.5)

    def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(self):
        srv = self.start_server()
        self.register(srv, chain("chain", 6, 0.3))
        run = self.start_run(srv, "chain")
        path = "/runs/%s/stream" % run["id"]
        first = self.open(srv, path)
        part1 = self.check_run_events(self.read_until(first, lambda g: len(g) >= 4, 15, "part 1"),
                                      " (part 1)")
        first.close()
        last = part1[-1]["seq"]
        # Let several events commit while nobody listens.
        self.wait_for(lambda: len(self.events(srv, run["id"])) >= last + 3, 15,
                      "events committed while disconnected", interval=0.05)
        second = self.open(srv, path, last_event_id=last)
        evs = self.read_until(second, lambda g: g and g[-1]["event"] in END_TYPES, 20, "part 2")
        part2 = self.check_run_events(evs, " (part 2)")
        self.assertEqual(part2[0]["seq"], last + 1,
                         "the first event after Last-Event-ID %d\n%s"
                         % (last, su.format_events(part2)))
        self.check_exact(srv, run["id"], part1 + part2, " (part 1 + part 2)")
        self.nothing_more(second, 0.5)
        n = part2[-1]["seq"]

        # After the end: exactly the tail, then nothing.
        third = self.open(srv, path, last_event_id=n - 3)
        tail = self.check_run_events(self.read_until(third, lambda g: len(g) >= 3, 10, "tail"),
                                     " (tail)")
        self.assertEqual([e["seq"] for e in tail], [n - 2, n - 1, n])
        self.nothing_more(third, 0.5)
        # Nothing after the last event of a finished run: an empty stream, or
        # 204, which tells an EventSource not to reconnect (HTML Living
        # Standard, server-sent events).
        fourth = su.SSE(srv, path, last_event_id=n)
        self.addCleanup(fourth.close)
        self.assertIn(fourth.status, (200, 204), "GET %s with Last-Event-ID %d" % (path, n))
        if fourth.status == 200:
            self.nothing_more(fourth, 1.0)
        else:
            self.assertEqual(fourth.read_body(), b"")

    def test_run_stream_errors(self):
        srv = self.start_server()
        self.assertError(srv.get("/runs/no-such-run/stream"), 404)
        self.register(srv, chain("c", 1, 0.05))
        run = self.start_run(srv, "c")
        r = srv.post("/runs/%s/stream" % run["id"])
        self.assertError(r, 405)
        self.assertIn("GET", r.header("Allow", ""), r)

    # ------------------------------------------------------------ global stream

    def test_global_stream_several_runs_and_reconnect(self):
        srv = self.start_server()
        self.register(srv, chain("g", 4, 0.25))
        g1 = self.open(srv, "/events/stream")
        runs = [self.start_run(srv, "g")["id"] for _ in range(4)]
        part1 = self.read_until(g1, lambda g: len(g) >= 12, 20, "global part 1")
        g1.close()
        self.wait_for(lambda: all(self.run_json(srv, r)["status"] in su.FINISHED for r in runs),
                      20, "every run to finish", interval=0.1)
        last = part1[-1]["id"]
        g2 = self.open(srv, "/events/stream", last_event_id=last)
        ended = set()

        def all_ended(got):
            if got:
                d = got[-1]["data"]
                if isinstance(d, dict) and d.get("type") in END_TYPES:
                    ended.add(d.get("run_id"))
            return ended >= set(runs)
        # Ends in part 1 count too.
        for ev in part1:
            if isinstance(ev["data"], dict) and ev["data"].get("type") in END_TYPES:
                ended.add(ev["data"].get("run_id"))
        part2 = self.read_until(g2, all_ended, 20, "global part 2")
        received = part1 + part2
        context = "\nglobal stream:\n" + "\n".join(
            "  id %s %s %s" % (e["id"], e["event"], e["data"]) for e in received)

        ids = []
        for ev in received:
            self.assertRegex(ev["id"] or "", r"^\d+$", "global ids are integers" + context)
            ids.append(int(ev["id"]))
            d = ev["data"]
            self.assertIsInstance(d, dict, context)
            for k in ("run_id",) + su.EVENT_KEYS:
                self.assertIn(k, d, "global event data has %r%s" % (k, context))
            self.assertEqual(ev["event"], d["type"], context)
        self.assertEqual(ids, sorted(set(ids)), "ids strictly increasing, no duplicate" + context)
        self.assertGreater(ids[len(part1)], int(last), context)
        for run_id in runs:
            mine = [{k: e["data"][k] for k in su.EVENT_KEYS} for e in received
                    if e["data"]["run_id"] == run_id]
            self.check_exact(srv, run_id, mine, " (run %s on the global stream)%s"
                             % (run_id, context))
        self.nothing_more(g2, 0.5)

    def test_many_idle_subscribers_share_threads(self):
        """Idle subscribers must not each hold a thread (issue 3), and every
        one of them gets the events."""
        srv = self.start_server()
        self.register(srv, chain("idle", 2, 0.1))
        threads_before = int(srv.status_file()["Threads"])
        subs = [self.open(srv, "/events/stream") for _ in range(120)]
        time.sleep(0.5)
        threads_idle = int(srv.status_file()["Threads"])
        self.assertLess(threads_idle - threads_before, 40,
                        "120 idle SSE subscribers took %d more threads (%d -> %d)"
                        % (threads_idle - threads_before, threads_before, threads_idle))
        h = srv.get("/health", timeout=5)
        self.assertOk(h)
        run = self.start_run(srv, "idle")["id"]
        for i, sse in enumerate(subs):
            evs = self.read_until(sse, ended(run), 20, "subscriber %d" % i)
            seqs = [e["data"]["seq"] for e in evs if e["data"].get("run_id") == run]
            self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "subscriber %d" % i)
        for sse in subs:
            sse.close()
        self.wait_for(lambda: srv.get("/health").status == 200, 5, "health after the subscribers")

    def test_lost_wake_up_is_made_good(self):
        """A stream with frames to send whose connection stays suspended (a
        lost wake-up) is resumed again by the pinger; here a failpoint loses
        the first resume, of one of two streams. The other stream, idle but
        for its pings, is never taken for stalled."""
        srv = self.start_server(env={"DURABLE_FAILPOINT": "sse.resume:1"})
        self.register(srv, chain("lost", 2, 0.1))
        streams = [self.open(srv, "/events/stream") for _ in range(2)]
        time.sleep(0.5)  # both are suspended, waiting for events
        for n, wait in ((1, 60), (2, 10)):
            # The first run's events: one stream gets them at once, the other
            # when two pings (15 s apart) have seen it stalled; then at once.
            run = self.start_run(srv, "lost")["id"]
            for i, sse in enumerate(streams):
                evs = self.read_until(sse, ended(run), wait, "stream %d, run %d" % (i, n))
                mine = [e["data"] for e in evs if e["data"].get("run_id") == run]
                self.check_exact(srv, run, mine, " (stream %d, run %d)" % (i, n))
        time.sleep(0.5)
        with open(srv.err_path, encoding="utf-8", errors="replace") as f:
            said = f.read().count("stayed suspended; resumed again")
        self.assertEqual(said, 1, "warnings of a stalled stream (one stream lost its wake-up)")


if __name__ == "__main__":
    su.main()
