#!/usr/bin/env bash
# `make run`: cachewarpd in the foreground on the example config, in front of $ORIGIN when
# given, else in front of the bundled demo origin (started and stopped with it). The cache
# file and control socket go under build/run/ so that no root is needed.
set -euo pipefail
BUILD=${BUILD:-build/rel}
run_dir=$PWD/build/run
mkdir -p "$run_dir"
origin_pid=""
cleanup() {
    [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null && wait "$origin_pid" 2>/dev/null
    return 0
}
trap cleanup EXIT

origin=${ORIGIN:-}
if [ -z "$origin" ]; then
    "$BUILD/bin/cw-test-origin" -p 0 >"$run_dir/origin.out" 2>"$run_dir/origin.log" &
    origin_pid=$!
    for _ in $(seq 50); do
        grep -q '^port=' "$run_dir/origin.out" 2>/dev/null && break
        sleep 0.1
    done
    port=$(sed -n 's/^port=//p' "$run_dir/origin.out")
    [ -n "$port" ] || { echo "run: the demo origin did not start" >&2; exit 1; }
    origin="http://127.0.0.1:$port"
    echo "run: demo origin on $origin (try /hello?cc=max-age%3D30 or /slow?delay_ms=500)" >&2
fi

sed -e "s|url = \"http://127.0.0.1:9000\"|url = \"$origin\"|" \
    -e "s|\"/var/cache/cachewarp/l1.mdb\"|\"$run_dir/l1.mdb\"|" \
    -e "s|\"/run/cachewarp/control.sock\"|\"$run_dir/control.sock\"|" \
    etc/cachewarp.conf >"$run_dir/cachewarp.conf"
# As root, the daemon runs as nobody once its socket is bound (the user setting); its files
# are in build/run, which nobody must then own.
if [ "$(id -u)" -eq 0 ]; then
    echo 'user = "nobody";' >>"$run_dir/cachewarp.conf"
    chown -R nobody: "$run_dir"
fi
listen=$(sed -n 's/^listen *= *"\(.*\)";.*/\1/p' "$run_dir/cachewarp.conf")
echo "run: cachewarpd on http://$listen  (curl -i http://$listen/hello?cc=max-age%3D30)" >&2
echo "run: Ctrl-C stops it" >&2
"$BUILD/bin/cachewarpd" -c "$run_dir/cachewarp.conf" &
cw_pid=$!
trap 'kill -TERM $cw_pid 2>/dev/null' INT TERM
wait $cw_pid || true
wait $cw_pid 2>/dev/null || true
