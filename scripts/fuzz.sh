#!/bin/sh
# Runs one libFuzzer target for a while and prints what it did (CTest's
# fuzz_<t> tests, which `make fuzz` and `make test-fuzz` run):
#
#   scripts/fuzz.sh BINARY SECONDS WORKDIR SEED_DIR... [-- LIBFUZZER_ARGS...]
#
# The corpus the fuzzer grows is WORKDIR/corpus (kept between runs, so a
# long `make fuzz` starts where the last stopped); the seed directories are
# read, never written. A crash leaves its input in WORKDIR (crash-*, leak-*,
# timeout-*): minimise it (BINARY -minimize_crash=1 -runs=10000 FILE), fix
# the bug and add the input to tests/fuzz/regress/<t>/. Prints one line
#   fuzz <t>: N executions in S s (R/s), cov C, ft F, corpus K inputs
# to stdout and WORKDIR/summary. Exit status: the fuzzer's (0: no crash).
set -u
bin=$1
seconds=$2
work=$3
shift 3
seeds=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    [ -d "$1" ] && seeds="$seeds $1"
    shift
done
[ $# -gt 0 ] && shift
name=$(basename "$bin" | sed 's/^fuzz_//')
mkdir -p "$work/corpus"
log="$work/log"
# -timeout: one input taking 30 s is a hang; -rss_limit_mb: 2 GiB is a leak.
# shellcheck disable=SC2086
"$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "$@" "$work/corpus" $seeds >"$log" 2>&1
status=$?
# The last status line ("#N DONE cov: C ft: F corp: K/...") and the stats.
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
line="fuzz $name: ${execs:-?} executions in $seconds s (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?} inputs"
if [ $status -ne 0 ]; then
    line="$line; FAILED (exit $status), see $log"
    tail -n 60 "$log"
fi
echo "$line" | tee "$work/summary"
exit $status
