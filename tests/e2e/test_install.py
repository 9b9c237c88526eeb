#!/usr/bin/env python3
"""`make install` as a C programmer uses it: install the build into a
temporary prefix (and again under a DESTDIR), then compile programs from
outside the source tree against the installed library with
`pkg-config --cflags --libs durable` (PKG_CONFIG_PATH pointed at the
prefix) and run them:

- examples/c/custom_step.c (a send_email step type answered from another
  thread): the run completes with the mailer's message id;
- examples/c/onboarding.c (code-first steps): every step runs, the run
  completes;
- custom_step again, linked with the static libdurable.a and
  `pkg-config --static --libs durable`: it runs, and needs no libdurable.so;
- the installed `durable` binary answers --version.

Usage: test_install.py --build DIR --source DIR --cc CC [--cflags FLAGS]
"""
import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import unittest

ARGS = None


def run(cmd, env=None, timeout=120):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(cmd), p.returncode, p.stdout))
    return p.stdout


class InstallTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="durable-install-")
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def install(self, prefix, destdir=None):
        env = dict(os.environ)
        env.pop("DESTDIR", None)
        if destdir:
            env["DESTDIR"] = destdir
        run(["cmake", "--install", ARGS.build, "--prefix", prefix], env=env)
        root = (destdir or "") + prefix
        for f in ["include/durable.h", "lib/libdurable.so", "lib/libdurable.a",
                  "lib/pkgconfig/durable.pc", "bin/durable"]:
            self.assertTrue(os.path.exists(os.path.join(root, f)), f + " not installed")
        return root

    def pkg(self, root, *args):
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(root, "lib", "pkgconfig"))
        return shlex.split(run(["pkg-config"] + list(args) + ["durable"], env=env))

    def compile(self, root, example, out, static=False):
        src = os.path.join(ARGS.source, "examples", "c", example)
        flags = shlex.split(ARGS.cflags or "") + ["-pthread"]
        if static:
            libs = [os.path.join(root, "lib", "libdurable.a") if a == "-ldurable" else a
                    for a in self.pkg(root, "--static", "--libs")]
            cmd = [ARGS.cc] + flags + self.pkg(root, "--cflags") + ["-o", out, src] + libs
        else:
            cmd = [ARGS.cc] + flags + ["-o", out, src] + self.pkg(root, "--cflags", "--libs")
        run(cmd)
        return out

    def run_program(self, root, prog, *args):
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "lib"))
        return run([prog] + list(args), env=env)

    def check_custom_step(self, root, prog, db):
        out = self.run_program(root, prog, "--db", db, "--to", "grace@example.com")
        self.assertIn("mailer: sending {\"to\":\"grace@example.com\"", out)
        self.assertIn("completed", out)
        self.assertIn("\"message_id\":\"msg-1\"", out)

    def test_prefix(self):
        root = self.install(os.path.join(self.dir, "prefix"))
        self.assertIn("-I" + os.path.join(root, "lib", "pkgconfig", "..", "..", "include"),
                      self.pkg(root, "--cflags"))
        prog = self.compile(root, "custom_step.c", os.path.join(self.dir, "custom_step"))
        self.check_custom_step(root, prog, os.path.join(self.dir, "a.db"))
        prog = self.compile(root, "onboarding.c", os.path.join(self.dir, "onboarding"))
        out = self.run_program(root, prog, "--db", os.path.join(self.dir, "b.db"),
                               "--speed", "50")
        for step in ["create_record", "provision_laptop", "setup_access", "send_welcome"]:
            self.assertIn(step + ": ran", out)
        self.assertIn("completed", out)
        out = run([os.path.join(root, "bin", "durable"), "--version"])
        self.assertTrue(out.startswith("durable "), out)

    def test_static(self):
        root = self.install(os.path.join(self.dir, "prefix"))
        prog = self.compile(root, "custom_step.c", os.path.join(self.dir, "custom_static"),
                            static=True)
        self.assertNotIn("libdurable", run(["ldd", prog]))
        out = run([prog, "--db", os.path.join(self.dir, "c.db"), "--to", "grace@example.com"])
        self.assertIn("\"message_id\":\"msg-1\"", out)

    def test_destdir(self):
        root = self.install("/opt/durable", destdir=os.path.join(self.dir, "stage"))
        self.assertEqual(root, os.path.join(self.dir, "stage") + "/opt/durable")
        prog = self.compile(root, "custom_step.c", os.path.join(self.dir, "custom_staged"))
        self.check_custom_step(root, prog, os.path.join(self.dir, "d.db"))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--cc", required=True)
    ap.add_argument("--cflags", default="")
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
