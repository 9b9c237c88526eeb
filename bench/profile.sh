#!/bin/sh
# Profiles one workload of bench_engine with perf (DWARF call graphs: the
# release build keeps no frame pointers) and prints where the time goes,
# per thread and per function (inclusive). Run `make bench` first, once, so
# that build-bench/bench/bench_engine exists.
#
#   bench/profile.sh w2              # any bench_engine workload: w1 w2 w3 w4 ...
#   BENCH_BUILD=dir bench/profile.sh w1
#
# W5's recovery needs its database first:
#   build-bench/bench/bench_engine w5create --db DIR/w5.db
#   bench/profile.sh w5recover --db DIR/w5.db
set -eu

BENCH_BUILD=${BENCH_BUILD:-build-bench}
mode=${1:?usage: bench/profile.sh WORKLOAD [bench_engine options]}
shift
dir=$(mktemp -d "$BENCH_BUILD/profile-XXXXXX")
trap 'rm -rf "$dir"' EXIT

case " $* " in
*" --db "*) set -- "$@" ;;
*) set -- --db "$dir/$mode.db" "$@" ;;
esac

perf record -q -F 999 --call-graph dwarf,16384 -o "$dir/perf.data" \
    "$BENCH_BUILD/bench/bench_engine" "$mode" "$@"
echo "== samples per thread"
perf report -i "$dir/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -8
echo "== functions, inclusive (children), user space, >= 2%"
perf report -i "$dir/perf.data" --children --sort symbol --stdio -g none --percent-limit 2 \
    2>/dev/null | grep -v '^#' | grep -v '^$' | grep -v '\[k\]' | head -60
