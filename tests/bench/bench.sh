#!/usr/bin/env bash
# `make bench`: CacheWarp against nginx proxy_cache, Varnish and nginx static files in one
# run. The work is in bench.py (its docstring lists the BENCH_* settings); docs/PERFORMANCE.md
# says how to read the figures.
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" "$@"
