#!/bin/sh
# Installs the Debian 12 packages durable needs to build and test, and only
# those that are missing. Works as root, or through sudo otherwise.
set -eu

PACKAGES="build-essential cmake ninja-build pkg-config
libsqlite3-dev libjansson-dev libyaml-dev libcmocka-dev libjq-dev libmicrohttpd-dev
python3 sqlite3 curl"

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
