#!/bin/sh
# Installs the Debian 12 packages durable needs to build and test (the lint
# tests run clang-format and clang-tidy; `make test-fuzz` builds the fuzz
# targets with clang and links libFuzzer and the sanitizers' runtimes from
# libclang-rt-14-dev, only recommended by clang; the PostgreSQL tests start
# a server of postgresql-15 on a temporary directory), and only those that are missing,
# with any further packages named as arguments (`make bench` adds wrk).
# Works as root, or through sudo otherwise. Then playwright-core (pinned by
# tests/browser/package-lock.json) into build/npm for the browser test; it
# drives Debian's chromium: no browser download.
set -eu

PACKAGES="build-essential cmake ninja-build pkg-config
libsqlite3-dev libjansson-dev libyaml-dev libcmocka-dev libjq-dev libmicrohttpd-dev libcurl4-openssl-dev
libpq-dev postgresql-15 libicu-dev
python3 sqlite3 curl chromium clang-format clang-tidy clang libclang-rt-14-dev $*"
# Node.js and npm for the browser test: from apt unless already on the PATH
# (a nodesource install ships npm inside its nodejs, which apt's npm conflicts with).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES="$PACKAGES nodejs npm"
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: need root or sudo to install:$missing" >&2
        exit 1
    fi
    echo "install-deps: installing:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# The browser test's driver, project-local and only when missing or changed.
root=$(cd "$(dirname "$0")/.." && pwd)
npm_dir="$root/build/npm"
if ! cmp -s "$root/tests/browser/package-lock.json" "$npm_dir/package-lock.json" ||
    [ ! -f "$npm_dir/node_modules/playwright-core/package.json" ]; then
    echo "install-deps: installing playwright-core into build/npm"
    mkdir -p "$npm_dir"
    cp "$root/tests/browser/package.json" "$root/tests/browser/package-lock.json" "$npm_dir/"
    npm ci --prefix "$npm_dir" --ignore-scripts --no-audit --no-fund --loglevel=error
fi
