#!/bin/bash
# Source checks run by CTest (label lint), like curl's checksrc:
#  1. banned functions (STYLE.md) do not appear in src/ or include/;
#  2. the shared library exports exactly the symbols in include/durable.sym.
set -euo pipefail
root="$1"
lib="$2"
status=0

banned='strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|atof|strerror|localtime|gmtime|rand|system'
# A call is the name followed by "(" and not preceded by an identifier char,
# "_" or "." (so snprintf, gmtime_r, rand_unit and strerror_r pass).
hits=$(grep -rnE "(^|[^A-Za-z0-9_.>])($banned)[[:space:]]*\(" "$root/src" "$root/include" \
        --include='*.c' --include='*.h' | grep -vE '^\S+:[0-9]+:\s*(/\*|\*)' || true)
if [ -n "$hits" ]; then
    echo "banned functions used:"
    echo "$hits"
    status=1
fi

exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort)
expected=$(grep -v '^#' "$root/include/durable.sym" | sort)
if [ "$exported" != "$expected" ]; then
    echo "exported symbols differ from include/durable.sym:"
    diff <(echo "$expected") <(echo "$exported") 2>/dev/null || \
        { echo "expected:"; echo "$expected"; echo "exported:"; echo "$exported"; }
    status=1
fi
[ $status -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $status
