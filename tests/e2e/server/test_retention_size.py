#!/usr/bin/env python3
"""The database does not grow without bound under a steady load with
retention on (issue 14 item 6; label slow).

`durable serve --retain-finished 3s` (SQLite, --durability process) gets
at least 100,000 short runs (20,000 under a sanitizer) from 8 keep-alive
clients, and more until five samples fall after the first window (a fast
machine finishes the minimum before the window is over, a slow one just
after it); the size of the database file plus its WAL is sampled every
2,000 runs.
Asserted: every start is answered 202; once the first window is over, the
size stays flat: the largest later sample is at most 1.2 times the sample
taken after the first window plus the WAL's bound (SQLite checkpoints the
WAL, and the pages of deleted runs are reused without VACUUM); at the end
retention catches up (the finished runs left are only those of the last
window or so) and PRAGMA integrity_check is ok. The samples are printed.

Usage: test_retention_size.py --durable PATH --examples DIR [--runs N]
"""
import http.client
import os
import sqlite3
import threading
import time

import server_util as su

WINDOW_S = 3
SHORT = {"name": "short",
         "steps": [{"id": "a", "type": "transform", "config": {"expression": "{n: 1}"}},
                   {"id": "b", "type": "transform", "depends_on": ["a"],
                    "config": {"expression": "{m: 2}"}}]}
# SQLite's WAL, checkpointed every 1,000 pages, may still hold a few
# batches' pages between two checkpoints.
WAL_ALLOWANCE = 16 * 1024 * 1024


def size_of(db):
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(db + suffix)
        except FileNotFoundError:
            pass
    return total


class RetentionSizeTest(su.ServerTest):

    def test_file_size_flat(self):
        runs = int(os.environ.get("DURABLE_RETENTION_RUNS", "0")) or \
            (20000 if su.sanitizer() else 100000)
        srv = self.start_server(args=["--retain-finished", "%ds" % WINDOW_S,
                                      "--durability", "process"])
        self.register(srv, SHORT)
        lock = threading.Lock()
        state = {"started": 0, "errors": [], "samples": []}
        t0 = time.monotonic()
        sample_every = 2000
        # the first sample taken a full window (and a pass) after the start
        settled_at = 2 * WINDOW_S + 2
        wanted_after = 5

        def enough():
            # called with the lock held
            after = sum(1 for s in state["samples"] if s[1] >= settled_at)
            return state["started"] >= runs and after >= wanted_after or \
                state["started"] >= 20 * runs

        def client():
            conn = None
            while True:
                with lock:
                    if state["errors"] or enough():
                        break
                    state["started"] += 1
                    n = state["started"]
                for attempt in (1, 2):
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection(srv.host, srv.port,
                                                              timeout=60 * su.slow_factor())
                        conn.request("POST", "/workflows/short/runs", body=b"{}",
                                     headers={"Content-Type": "application/json",
                                              "Idempotency-Key": "k%d" % n})
                        r = conn.getresponse()
                        body = r.read()
                        if r.status != 202:
                            with lock:
                                state["errors"].append("%d %s" % (r.status, body[:200]))
                        break
                    except (OSError, http.client.HTTPException) as e:
                        if conn is not None:
                            conn.close()
                        conn = None
                        if attempt == 2:
                            with lock:
                                state["errors"].append(repr(e))
                if n % sample_every == 0:
                    with lock:
                        state["samples"].append((n, time.monotonic() - t0, size_of(srv.db)))
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(state["errors"], [], "run starts refused")
        samples = sorted(state["samples"])
        for n, at, size in samples:
            su.log("%7d runs  %6.1fs  %8.1f MiB" % (n, at, size / 1048576.0))
        after_window = [s for s in samples if s[1] >= settled_at]
        self.assertGreaterEqual(len(after_window), wanted_after,
                                "too few samples after the first window: %s" % samples)
        base = after_window[0][2]
        top = max(s[2] for s in after_window)
        su.log("after the first window: %.1f MiB; largest later: %.1f MiB"
               % (base / 1048576.0, top / 1048576.0))
        self.assertLessEqual(top, 1.2 * base + WAL_ALLOWANCE,
                             "the database grows under retention: %s" % samples)

        # retention catches up once the load stops
        def caught_up():
            r = srv.get("/runs?status=completed&limit=1")
            return r.total() < runs // 4
        self.wait_for(caught_up, 120, "retention to catch up", interval=0.5)
        self.assertEqual(srv.stop(), 0)
        db = sqlite3.connect(srv.db)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            su.log("end: %d pages, %d of them free (reused by later inserts)" % (pages, free))
        finally:
            db.close()


if __name__ == "__main__":
    su.main()
