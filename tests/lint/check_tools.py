#!/usr/bin/env python3
"""Runs clang-format or clang-tidy over the sources (CTest, label lint).

  check_tools.py format --root DIR
      clang-format --dry-run -Werror (the repository's .clang-format) over
      every tracked .c and .h of src/, include/, tests/ and bench/;
  check_tools.py tidy --root DIR --build DIR
      clang-tidy (the repository's .clang-tidy, the build's
      compile_commands.json) over every .c of src/, two files at a time.

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


def run_format(root):
    exe = tool_path(["clang-format", "clang-format-14"])
    if not exe:
        print("clang-format not installed (scripts/install-deps.sh): skipped")
        return None
    files = sources(root, ["src", "include", "tests", "bench"], (".c", ".h"))
    r = subprocess.run([exe, "--dry-run", "-Werror"] + files, cwd=root,
                       capture_output=True, text=True)
    print(r.stdout + r.stderr, end="")
    dirty = {m.group(1)
             for m in map(DIAG.match, r.stderr.splitlines()) if m}
    bad = len(dirty) if r.returncode == 0 else max(len(dirty), 1)
    print("clang-format: %d files, %d not formatted" % (len(files), bad))
    return bad


def tidy_one(exe, build, path):
    r = subprocess.run([exe, "-p", build, "--quiet", "--use-color=false", path],
                       capture_output=True, text=True)
    return path, r.returncode, r.stdout + r.stderr


def run_tidy(root, build):
    exe = tool_path(["clang-tidy", "clang-tidy-14"])
    if not exe:
        print("clang-tidy not installed (scripts/install-deps.sh): skipped")
        return None
    files = [os.path.join(root, f) for f in sources(root, ["src"], (".c",))]
    findings, failed = set(), []
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for path, rc, out in pool.map(lambda p: tidy_one(exe, build, p), files):
            diags = [m for m in map(DIAG.match, out.splitlines()) if m]
            for m in diags:
                rel = os.path.relpath(os.path.join(root, m.group(1)), root)
                findings.add("%s:%s:%s: %s" % (rel, m.group(2), m.group(3), m.group(4)))
            if rc != 0 and not diags:
                failed.append("%s: clang-tidy failed:\n%s" % (path, out))
    for line in sorted(findings) + failed:
        print(line)
    print("clang-tidy: %d files, %d findings, %d failures"
          % (len(files), len(findings), len(failed)))
    return len(findings) + len(failed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool", choices=["format", "tidy"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--build")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    if args.tool == "format":
        bad = run_format(root)
    else:
        bad = run_tidy(root, os.path.abspath(args.build))
    if bad is None:
        return SKIP
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
