#!/usr/bin/env python3
"""Runs clang-format or clang-tidy over the sources (CTest, label lint).

  check_tools.py format --root DIR
      clang-format --dry-run -Werror (the repository's .clang-format) over
      every tracked .c and .h of src/, include/, tests/ and bench/;
  check_tools.py tidy --root DIR --build DIR
      clang-tidy (the repository's .clang-tidy, the build's
      compile_commands.json) over every .c of src/, two files at a time.

A file named in pending.txt (next to this script) for that tool is skipped:
the list of files whose findings are not fixed yet. It may only shrink: an
entry whose file has become clean, or is gone, fails the check too.
Exit 77 (CTest's SKIP_RETURN_CODE) only when the tool is not installed.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys

SKIP = 77
DIAG = re.compile(r"^([^:\s]+):(\d+):(\d+): (?:warning|error): (.*)$")


def pending(tool):
    """Files (relative to the root) the tool's findings are not fixed in."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pending.txt")
    files = set()
    with open(path) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) == 2 and words[0] == tool:
                files.add(words[1])
    return files


def sources(root, dirs, exts):
    """Tracked files under dirs (every file when root is not a git checkout)."""
    r = subprocess.run(["git", "-C", root, "ls-files", "--"] + dirs,
                       capture_output=True, text=True)
    if r.returncode == 0:
        names = r.stdout.split()
    else:
        names = [os.path.relpath(os.path.join(b, n), root)
                 for d in dirs for b, _, fs in os.walk(os.path.join(root, d)) for n in fs]
    return sorted(n for n in names if n.endswith(exts))


def tool_path(names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def run_format(root, skip):
    exe = tool_path(["clang-format", "clang-format-14"])
    if not exe:
        print("clang-format not installed (scripts/install-deps.sh): skipped")
        return None, set()
    files = [f for f in sources(root, ["src", "include", "tests", "bench"], (".c", ".h"))
             if f not in skip]
    r = subprocess.run([exe, "--dry-run", "-Werror"] + files, cwd=root,
                       capture_output=True, text=True)
    print(r.stdout + r.stderr, end="")
    dirty = {m.group(1)
             for m in map(DIAG.match, r.stderr.splitlines()) if m}
    bad = len(dirty) if r.returncode == 0 else max(len(dirty), 1)
    print("clang-format: %d files, %d not formatted" % (len(files), bad))
    # The skipped files are checked apart, to find those that became clean.
    still = set()
    for f in sorted(skip):
        if os.path.exists(os.path.join(root, f)):
            r2 = subprocess.run([exe, "--dry-run", "-Werror", f], cwd=root,
                                capture_output=True, text=True)
            if r2.returncode != 0:
                still.add(f)
    return bad, still


def tidy_one(exe, build, path):
    r = subprocess.run([exe, "-p", build, "--quiet", "--use-color=false", path],
                       capture_output=True, text=True)
    return path, r.returncode, r.stdout + r.stderr


def run_tidy(root, build, skip):
    exe = tool_path(["clang-tidy", "clang-tidy-14"])
    if not exe:
        print("clang-tidy not installed (scripts/install-deps.sh): skipped")
        return None, set()
    files = [os.path.join(root, f) for f in sources(root, ["src"], (".c",))]
    findings, still, failed = set(), set(), []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for path, rc, out in pool.map(lambda p: tidy_one(exe, build, p), files):
            diags = [m for m in map(DIAG.match, out.splitlines()) if m]
            for m in diags:
                rel = os.path.relpath(os.path.join(root, m.group(1)), root)
                if rel in skip:
                    still.add(rel)
                else:
                    findings.add("%s:%s:%s: %s" % (rel, m.group(2), m.group(3), m.group(4)))
            if rc != 0 and not diags:
                failed.append("%s: clang-tidy failed:\n%s" % (path, out))
    for line in sorted(findings) + failed:
        print(line)
    print("clang-tidy: %d files, %d findings, %d failures"
          % (len(files), len(findings), len(failed)))
    return len(findings) + len(failed), still


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool", choices=["format", "tidy"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--build")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    skip = pending(args.tool)
    if args.tool == "format":
        bad, still = run_format(root, skip)
    else:
        bad, still = run_tidy(root, os.path.abspath(args.build), skip)
    if bad is None:
        return SKIP
    for f in sorted(skip - still):
        print("%s: no %s findings left: remove it from tests/lint/pending.txt" % (f, args.tool))
        bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
