#!/usr/bin/env bash
# Runs `make check` (and `make check SAN=1` with SAN=1) RUNS times in a row (default 5) while
# two busy loops load both cores, as a shared CI machine may be; prints each run's time and
# fails at the first failed run. Not part of `make check`: `make flake-check [SAN=1] [RUNS=5]`.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
runs=${RUNS:-5}
san=${SAN:-}
loads=()
cleanup() { for p in "${loads[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
for cpu in 0 1; do
    taskset -c "$cpu" sh -c 'while :; do :; done' &
    loads+=($!)
done
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    if ! make check SAN="$san" >"build/flake-$i.log" 2>&1; then
        echo "flake-check: run $i of $runs FAILED after $(( $(date +%s) - start )) s (build/flake-$i.log):"
        grep -E '^FAIL|Failures: [1-9]|Errors: [1-9]' "build/flake-$i.log" | head -20
        exit 1
    fi
    echo "flake-check: run $i of $runs passed in $(( $(date +%s) - start )) s: $(grep -E "^[0-9]+ passed, [0-9]+ failed" "build/flake-$i.log" | tail -n 1)"
done
