#!/usr/bin/env python3
"""A real PostgreSQL 15 for the tests, on a temporary directory and a free port.

PgServer runs initdb and pg_ctl from PostgreSQL's bin directory
(`pg_config --bindir`, or $PG_BINDIR; Debian: /usr/lib/postgresql/15/bin):
a cluster whose superuser is `durable` with trust authentication, listening
on 127.0.0.1 on a free port and on a Unix socket in the temporary directory,
with fsync on (the durability the store promises is measured with it). It
creates the database `durable` and gives its URL,
postgres://durable@127.0.0.1:PORT/durable. initdb and postgres refuse to
run as root: as root, they run as `nobody` (setpriv, which needs no login
shell or home), and the directory is theirs.

Everything is stopped and removed at the end: by stop() (or leaving the
`with` block), at interpreter exit, and, should this process die without
either (SIGKILL, a crash), by a watchdog process that waits for this one's
end on a pipe and then stops the server and removes the directory.

As a command it wraps another one:

    tests/pg_server.py -- ctest -L pg      # runs it with DURABLE_TEST_PG set
    tests/pg_server.py                     # prints the URL, serves until ^C

and exits with the command's status (1 when the server does not start).

Python 3 standard library only.
"""
import argparse
import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

USER = "durable"
DB = "durable"
START_TIMEOUT = 60


def log(msg):
    print("pg_server: %s" % msg, file=sys.stderr, flush=True)


def bindir():
    """PostgreSQL's server programs: $PG_BINDIR, else `pg_config --bindir`,
    else Debian's path for version 15."""
    env = os.environ.get("PG_BINDIR")
    if env:
        return env
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if os.path.exists(os.path.join(out, "initdb")):
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/usr/lib/postgresql/15/bin"


def free_port():
    """A TCP port free on 127.0.0.1 a moment ago (start() retries if it is
    taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user_prefix():
    """The command prefix that runs a program as an unprivileged user when
    we are root, and nothing otherwise."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def stop_and_remove(pg_ctl, tmp, prefix):
    """Stops the server of tmp/data (fast, then immediate) and removes tmp.
    Safe to call when either is already gone."""
    data = os.path.join(tmp, "data")
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        for mode in ("fast", "immediate"):
            try:
                r = subprocess.run(prefix + [pg_ctl, "stop", "-D", data, "-m", mode, "-w", "-t",
                                             "30"], capture_output=True, timeout=40)
                if r.returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
    shutil.rmtree(tmp, ignore_errors=True)


class PgServer:
    """One PostgreSQL server. start() returns self; url is the database's."""

    def __init__(self, extra_conf=None):
        self.bindir = bindir()
        self.extra_conf = dict(extra_conf or {})
        self.tmp = None
        self.port = None
        self.url = None
        self.watchdog = None
        self.prefix = as_user_prefix()

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _run(self, argv, **kw):
        return subprocess.run(self.prefix + argv, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, **kw)

    @property
    def data(self):
        return os.path.join(self.tmp, "data")

    def _initdb(self):
        self.tmp = tempfile.mkdtemp(prefix="durable-pg-")
        if self.prefix:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.tmp, nobody.pw_uid, nobody.pw_gid)
        self._start_watchdog()
        # --no-sync: initdb's files need not survive a crash of this machine;
        # the server itself runs with fsync on.
        r = self._run([self._bin("initdb"), "-D", self.data, "-U", USER, "-A", "trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
        if r.returncode != 0:
            raise RuntimeError("initdb failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))

    def _start_watchdog(self):
        """A process that outlives us only to clean up: it reads its stdin
        (a pipe whose writer is this process) until end of file, which comes
        when we close it or die, then stops the server and removes tmp."""
        self.watchdog = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--watchdog", self.tmp,
             self._bin("pg_ctl")], stdin=subprocess.PIPE, start_new_session=True)

    def _options(self):
        conf = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.tmp,
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "200",
        }
        conf.update(self.extra_conf)
        return " ".join("-c %s=%s" % (k, v) for k, v in conf.items())

    def _pg_ctl_start(self):
        # A session of its own: a ^C in the terminal is ours to handle, and
        # the server is stopped in order rather than by the signal.
        return subprocess.run(
            self.prefix + [self._bin("pg_ctl"), "start", "-D", self.data, "-w", "-t",
                           str(START_TIMEOUT), "-l", os.path.join(self.tmp, "server.log"),
                           "-o", self._options()],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, start_new_session=True,
            timeout=START_TIMEOUT + 10)

    def start(self):
        try:
            self._initdb()
            for _ in range(5):
                self.port = free_port()
                r = self._pg_ctl_start()
                if r.returncode == 0:
                    break
                if "already in use" not in self.log_text():
                    raise RuntimeError("pg_ctl start failed (%d): %s%s\n%s" % (
                        r.returncode, r.stdout, r.stderr, self.log_text()))
            else:
                raise RuntimeError("no free port: %s" % self.log_text())
            self.url = self.create_database(DB)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def stop_server(self, mode="fast"):
        """Stops the server and keeps its data and port: start_server brings
        the same database back (a restart under running clients)."""
        r = self._run([self._bin("pg_ctl"), "stop", "-D", self.data, "-m", mode, "-w", "-t",
                       str(START_TIMEOUT)], timeout=START_TIMEOUT + 10)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl stop failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))

    def start_server(self):
        """Starts the server stop_server stopped, on the same port."""
        r = self._pg_ctl_start()
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed (%d): %s%s\n%s" % (
                r.returncode, r.stdout, r.stderr, self.log_text()))

    def log_text(self):
        try:
            with open(os.path.join(self.tmp, "server.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def psql(self, sql, db=DB):
        """Runs sql with psql over TCP; returns stdout (unaligned, tuples
        only) or raises with psql's message."""
        r = subprocess.run([self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", db,
                            "-c", sql], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr.strip())
        return r.stdout

    def create_database(self, name):
        """Creates an empty database (a fresh one per test) and returns its URL."""
        self.psql('CREATE DATABASE "%s"' % name.replace('"', '""'), db="postgres")
        return "postgres://%s@127.0.0.1:%d/%s" % (USER, self.port, name)

    def stop(self):
        """Stops the server and removes its directory. Idempotent."""
        if self.tmp:
            stop_and_remove(self._bin("pg_ctl"), self.tmp, self.prefix)
            self.tmp = None
        if self.watchdog:
            self.watchdog.stdin.close()
            self.watchdog.wait()
            self.watchdog = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def watchdog(tmp, pg_ctl):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    stop_and_remove(pg_ctl, tmp, as_user_prefix())
    return 0


def serve(cmd):
    """Runs cmd (or waits for a signal when empty) with DURABLE_TEST_PG set;
    returns its exit status."""
    stop = []

    def on_signal(signum, _frame):
        stop.append(signum)

    with PgServer() as pg:
        log("PostgreSQL at %s" % pg.url)
        env = dict(os.environ, DURABLE_TEST_PG=pg.url)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)
        if not cmd:
            print("DURABLE_TEST_PG=%s" % pg.url, flush=True)
            while not stop:
                signal.pause()
            return 0
        child = subprocess.Popen(cmd, env=env)
        while child.poll() is None:
            if stop:
                child.send_signal(stop.pop())
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        return child.returncode if child.returncode >= 0 else 128 - child.returncode


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--watchdog":
        return watchdog(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description="Runs a command beside a temporary PostgreSQL "
                                 "server, with DURABLE_TEST_PG set to its URL.")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        return serve(cmd)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
