#!/usr/bin/env python3
"""Checks that the build enforces the layering of docs/ARCHITECTURE.md.

CTest runs it (label lint) with the build's compile_commands.json. For each
layer it takes the compile command of one of the layer's own files and, with
exactly those flags, compiles one-line files including every layer's header:
an allowed header must compile, a forbidden one must fail because the header
is not found (not for any other reason). It also refuses a quoted #include
holding "..", which would reach a folder around the include roots.

LAYERS below is the table of docs/ARCHITECTURE.md; CMakeLists.txt's
DURABLE_USES_* must agree with it, and this test is what says so.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

# layer -> the other layers whose headers it may include (its own always).
LAYERS = {
    "util": [],
    "expr": ["util"],
    "def": ["util", "expr"],
    "store": ["util", "def"],
    "steps": ["util", "def", "expr"],
    "engine": ["util", "expr", "def", "store", "steps"],
    "http": ["util"],
    "cli": ["util", "http"],
}
# Flags of the original command that name its input, output or depfile.
DROP_WITH_VALUE = {"-o", "-c", "-MT", "-MF", "-MQ"}
DROP = {"-MD", "-MMD"}


def layer_command(entries, root, layer):
    """The compile command of one of the layer's files in the layer's own
    target (tests compile some of src/ again with src/ as include path)."""
    src = os.path.join(root, "src", layer) + os.sep
    for e in entries:
        argv = shlex.split(e["command"])
        out = argv[argv.index("-o") + 1] if "-o" in argv else ""
        if e["file"].startswith(src) and not out.startswith("tests/"):
            return e["directory"], argv
    return None, None


def probe(directory, argv, header, tmp):
    path = os.path.join(tmp, "probe.c")
    with open(path, "w") as f:
        f.write('#include "%s"\n' % header)
    cmd, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in DROP_WITH_VALUE:
            skip = True
        elif a not in DROP:
            cmd.append(a)
    cmd += ["-fsyntax-only", path]
    return subprocess.run(cmd, cwd=directory, capture_output=True, text=True)


def check_layer(entries, root, layer, tmp):
    failures = []
    directory, argv = layer_command(entries, root, layer)
    if argv is None:
        return ["%s: no compile command for a file of src/%s" % (layer, layer)]
    for other in LAYERS:
        header = "%s/%s.h" % (other, other)
        allowed = other == layer or other in LAYERS[layer]
        r = probe(directory, argv, header, tmp)
        not_found = re.search(re.escape(header) + r"(: No such file|' file not found)", r.stderr)
        if allowed and r.returncode != 0:
            failures.append("%s may include %s but cannot:\n%s" % (layer, header, r.stderr))
        elif not allowed and r.returncode == 0:
            failures.append("%s must not see %s but compiles with it" % (layer, header))
        elif not allowed and not not_found:
            failures.append("%s including %s failed, not for want of it:\n%s"
                            % (layer, header, r.stderr))
    return failures


def parent_includes(root):
    hits = []
    for base, _, files in os.walk(os.path.join(root, "src")):
        for name in files:
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(base, name)
            with open(path, errors="replace") as f:
                for n, line in enumerate(f, 1):
                    if re.match(r'\s*#\s*include\s*"[^"]*\.\.', line):
                        hits.append("%s:%d: include through \"..\"" % (path, n))
    return hits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--compile-commands", required=True)
    args = ap.parse_args()
    with open(args.compile_commands) as f:
        entries = json.load(f)
    failures = parent_includes(args.root)
    with tempfile.TemporaryDirectory() as tmp:
        for layer in LAYERS:
            failures += check_layer(entries, args.root, layer, tmp)
    for f in failures:
        print(f)
    checked = len(LAYERS) * len(LAYERS)
    print("%d include probes, %d failed" % (checked, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
