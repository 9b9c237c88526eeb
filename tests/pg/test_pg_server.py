#!/usr/bin/env python3
"""Tests of the PostgreSQL test server harness (tests/pg_server.py).

- a server starts, answers psql over TCP as `durable` with fsync on, runs
  as an unprivileged user when we are root, makes further empty databases,
  and once stopped is gone: no process, no port, no directory;
- as a command it runs another with DURABLE_TEST_PG set to a database that
  answers, and exits with that command's status;
- when the harness is killed with SIGKILL its watchdog still stops the
  server and removes the directory.

Usage: test_pg_server.py [unittest args]
"""
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(os.path.dirname(HERE), "pg_server.py")
sys.path.insert(0, os.path.dirname(HERE))
import pg_server  # noqa: E402


def port_open(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


class PgServerTest(unittest.TestCase):
    def test_start_query_stop(self):
        pg = pg_server.PgServer().start()
        tmp, port = pg.tmp, pg.port
        try:
            self.assertRegex(pg.url, r"^postgres://durable@127\.0\.0\.1:\d+/durable$")
            self.assertEqual(pg.psql("SHOW fsync").strip(), "on")
            self.assertEqual(pg.psql("SELECT current_user").strip(), "durable")
            if os.geteuid() == 0:
                st = os.stat(pg.data)
                self.assertNotEqual(st.st_uid, 0, "the cluster must not belong to root")
            url = pg.create_database("second")
            self.assertTrue(url.endswith("/second"))
            self.assertEqual(pg.psql("SELECT count(*) FROM pg_class WHERE relkind = 'r'"
                                     " AND relnamespace = 'public'::regnamespace", db="second")
                             .strip(), "0")
            self.assertTrue(os.path.exists(os.path.join(tmp, ".s.PGSQL.%d" % port)))
        finally:
            pg.stop()
        self.assertFalse(os.path.exists(tmp))
        self.assertFalse(port_open(port))
        pg.stop()  # again: nothing to do

    def test_wraps_a_command(self):
        check = ("import os, subprocess, sys; u = os.environ['DURABLE_TEST_PG'];"
                 "r = subprocess.run([sys.argv[1], '-X', '-Atc', 'SELECT 40 + 2', u],"
                 " capture_output=True, text=True); print(r.stdout.strip());"
                 "sys.exit(int(r.stdout.strip()) - 35)")
        r = subprocess.run([sys.executable, HARNESS, "--", sys.executable, "-c", check,
                            os.path.join(pg_server.bindir(), "psql")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.stdout.strip(), "42", r.stderr)
        self.assertEqual(r.returncode, 7, r.stderr)

    def test_sigkill_cleans_up(self):
        p = subprocess.Popen([sys.executable, HARNESS], stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            self.assertTrue(line.startswith("DURABLE_TEST_PG=postgres://"), line)
            port = int(line.rsplit(":", 1)[1].split("/")[0])
            self.assertTrue(port_open(port))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stdout.close()
        wait_until(lambda: not port_open(port), 60, "the server to stop")


if __name__ == "__main__":
    unittest.main(verbosity=2)
