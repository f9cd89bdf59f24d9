#!/usr/bin/env bash
# Runs the unit test binaries and the integration suite, then prints one closing line
# "N passed, N failed". Exit status is non-zero when anything failed.
# BUILD: the build folder; ONLY=unit|integration runs one half.
set -uo pipefail
BUILD=${BUILD:-build/rel}
passed=0
failed=0
export CW_BUILD="$BUILD"
if [ "${SAN:-}" = 1 ]; then
    export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:${ASAN_OPTIONS:-}"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
    export CW_TIME_FACTOR=${CW_TIME_FACTOR:-3} # latency bounds scale for the slower build
fi

if [ "${ONLY:-unit}" = unit ] || [ -z "${ONLY:-}" ]; then
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        out=$("$t" 2>&1)
        rc=$?
        printf '%s\n' "$out"
        line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
        n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
        e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
        if [ -z "$line" ]; then
            echo "check: $t printed no summary (exit $rc)"
            failed=$((failed + 1))
            continue
        fi
        passed=$((passed + n - f - e))
        failed=$((failed + f + e))
        [ $rc -ne 0 ] && [ $((f + e)) -eq 0 ] && failed=$((failed + 1))
    done
fi

if [ "${ONLY:-integration}" = integration ] || [ -z "${ONLY:-}" ]; then
    out_file=$(mktemp)
    python3 tests/integration/run.py --build "$BUILD" 2>&1 | tee "$out_file"
    line=$(grep -E '^integration: [0-9]+ passed, [0-9]+ failed' "$out_file" | tail -n 1)
    rm -f "$out_file"
    if [ -z "$line" ]; then
        echo "check: integration suite printed no summary"
        failed=$((failed + 1))
    else
        p=$(sed -E 's/^integration: ([0-9]+) passed.*/\1/' <<<"$line")
        f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
        passed=$((passed + p))
        failed=$((failed + f))
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
