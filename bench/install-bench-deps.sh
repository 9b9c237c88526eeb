#!/bin/sh
# Installs what `make bench` needs beyond scripts/install-deps.sh: wrk (the
# HTTP load generator of workload W6), only when it is missing. Works as root,
# or through sudo otherwise, like scripts/install-deps.sh.
set -eu

PACKAGES="wrk"

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
        echo "install-bench-deps: need root or sudo to install:$missing" >&2
        exit 1
    fi
    echo "install-bench-deps: installing:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
