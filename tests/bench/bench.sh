#!/usr/bin/env bash
# Compares CacheWarp's hit path with nginx proxy_cache on one hot 1 KiB URL.
#
#   BUILD=build/rel tests/bench/bench.sh          (or: make bench)
#
# Starts cw-test-origin, cachewarpd (2 workers) and nginx (2 workers, proxy_cache) on
# ephemeral loopback ports in a temp dir, warms both on the hot URL, then runs
# `wrk -t2 -c64 -d${BENCH_SECONDS}s --latency` against each twice, alternating
# (cw, nginx, cw, nginx), and keeps each server's better run (by req/s). Server CPU per
# request is the growth of utime+stime (/proc/PID/stat fields 14 and 15) summed over the
# server's processes (the master and every descendant), divided by the requests wrk made.
# Prints a markdown table and writes it to $TMP/bench.md.
#
# BENCH_SECONDS  length of each wrk run (default 10)
# BENCH_SERVERS  which servers to run (default "cw nginx"; cw is skipped when not built)
# BENCH_KEEP=1   keep the temp dir (logs, configs) afterwards
set -euo pipefail

BUILD=${BUILD:-build/rel}
SECS=${BENCH_SECONDS:-10}
SERVERS=${BENCH_SERVERS:-cw nginx}
HOT='/hot?size=1024&cc=max-age%3D3600'
HERE=$(cd "$(dirname "$0")" && pwd)
CLK_TCK=$(getconf CLK_TCK)

die() {
    echo "bench: $*" >&2
    exit 1
}

for tool in wrk nginx curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (make bench installs nginx-light and wrk)"
done
[ -x "$BUILD/bin/cw-test-origin" ] || die "$BUILD/bin/cw-test-origin is missing: run make first"
if [[ " $SERVERS " == *" cw "* ]] && [ ! -x "$BUILD/bin/cachewarpd" ]; then
    echo "bench: $BUILD/bin/cachewarpd is missing: benchmarking nginx only" >&2
    SERVERS=${SERVERS//cw/}
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cw-bench.XXXXXX")
PIDS=()

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        echo "bench: logs kept in $TMP" >&2
    fi
    if [ "${BENCH_KEEP:-0}" != 1 ] && [ $rc -eq 0 ]; then
        # Keep the table: it is what the run was for.
        find "$TMP" -mindepth 1 ! -name bench.md -exec rm -rf {} + 2>/dev/null || true
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (10 s at most) until 127.0.0.1:$1 accepts a connection.
wait_port() {
    local port=$1 what=$2
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    die "$what did not listen on $port within 10 s (logs in $TMP)"
}

# All descendants of a pid, one a line.
descendants() {
    local pid=$1 c
    # shellcheck disable=SC2013 # the file is a space-separated list of pids
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

# utime+stime in clock ticks of a process and all its descendants.
cpu_ticks() {
    local root=$1 total=0 p f
    local -a fields
    for p in "$root" $(descendants "$root"); do
        f=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        f=${f##*) } # fields from 3 on (comm may hold spaces)
        read -r -a fields <<<"$f"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# --- origin -------------------------------------------------------------------------------
"$BUILD/bin/cw-test-origin" -p 0 >"$TMP/origin.out" 2>"$TMP/origin.log" &
PIDS+=($!)
for _ in $(seq 100); do
    grep -q '^port=' "$TMP/origin.out" 2>/dev/null && break
    sleep 0.05
done
OPORT=$(sed -n 's/^port=//p' "$TMP/origin.out")
[ -n "$OPORT" ] || die "cw-test-origin printed no port ($(cat "$TMP/origin.log"))"

# --- cachewarpd ---------------------------------------------------------------------------
declare -A PORT MAINPID
if [[ " $SERVERS " == *" cw "* ]]; then
    PORT[cw]=$(free_port)
    cat >"$TMP/cachewarp.conf" <<EOF
listen = "127.0.0.1:${PORT[cw]}";
workers = 2;
log = { level = "warn"; access = ""; };
cache = { path = "$TMP/l1.mdb"; size = "256M"; max_object = "8M"; };
redis = { enabled = false; };
origins = ( { name = "api"; url = "http://127.0.0.1:$OPORT"; connect_timeout = "1s"; timeout = "10s"; } );
routes = ( { match = "/"; origin = "api"; ttl = "60s"; swr = "0s"; sie = "0s"; } );
stats = { listen = ""; };
control = { socket = "$TMP/control.sock"; };
purge = { allow = [ "127.0.0.1/32" ]; };
EOF
    "$BUILD/bin/cachewarpd" -c "$TMP/cachewarp.conf" >"$TMP/cachewarpd.log" 2>&1 &
    MAINPID[cw]=$!
    PIDS+=($!)
    wait_port "${PORT[cw]}" cachewarpd
fi

# --- nginx --------------------------------------------------------------------------------
if [[ " $SERVERS " == *" nginx "* ]]; then
    PORT[nginx]=$(free_port)
    user_line=""
    # As root, nginx workers would switch to nobody, who cannot write the 0700 temp dir.
    [ "$(id -u)" -eq 0 ] && user_line="user root root;"
    sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|${PORT[nginx]}|g" -e "s|@ORIGIN_PORT@|$OPORT|g" \
        -e "s|@USER@|$user_line|" "$HERE/nginx.conf.in" >"$TMP/nginx.conf"
    nginx -t -q -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" ||
        die "nginx -t failed: $(tail -n 5 "$TMP/nginx-error.log")"
    nginx -p "$TMP" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" -g 'daemon off;' &
    MAINPID[nginx]=$!
    PIDS+=($!)
    wait_port "${PORT[nginx]}" nginx
fi

# --- warm ---------------------------------------------------------------------------------
for s in $SERVERS; do
    url="http://127.0.0.1:${PORT[$s]}$HOT"
    curl -sf -o /dev/null "$url" || die "$s: warming GET $url failed"
    xc=$(curl -sf -D - -o /dev/null "$url" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache: *//p')
    [ "$xc" = HIT ] || die "$s: second GET of $HOT is not a HIT (X-Cache: '${xc}')"
    size=$(curl -sf -o /dev/null -w '%{size_download}' "$url")
    [ "$size" = 1024 ] || die "$s: hot body is $size bytes, want 1024"
done

# --- runs ---------------------------------------------------------------------------------
# run_wrk SERVER N: one wrk run; writes "rps p50 p90 p99 cpu_us_per_req" to $TMP/SERVER.N.
run_wrk() {
    local s=$1 n=$2 out="$TMP/wrk.$1.$2" before after reqs rps
    before=$(cpu_ticks "${MAINPID[$s]}")
    wrk -t2 -c64 -d"${SECS}s" --latency "http://127.0.0.1:${PORT[$s]}$HOT" >"$out"
    after=$(cpu_ticks "${MAINPID[$s]}")
    reqs=$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$out")
    rps=$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' "$out")
    if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then
        die "$s: wrk made no requests: $(cat "$out")"
    fi
    if grep -qE 'Non-2xx|Socket errors' "$out"; then
        echo "bench: $s run $n had errors: $(grep -E 'Non-2xx|Socket errors' "$out")" >&2
    fi
    local p50 p90 p99 cpu
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p90=$(awk '$1 == "90%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    cpu=$(awk -v d=$((after - before)) -v t="$CLK_TCK" -v r="$reqs" \
        'BEGIN { printf "%.1f", d / t * 1e6 / r }')
    echo "$rps $p50 $p90 $p99 $cpu $reqs" >"$TMP/$s.$n"
    echo "bench: $s run $n: $rps req/s, p50 $p50, p99 $p99, $cpu µs CPU/req" >&2
}

for n in 1 2; do
    for s in $SERVERS; do
        run_wrk "$s" "$n"
    done
done

# --- report -------------------------------------------------------------------------------
declare -A BEST
for s in $SERVERS; do
    a=$(cat "$TMP/$s.1")
    b=$(cat "$TMP/$s.2")
    if awk -v x="${a%% *}" -v y="${b%% *}" 'BEGIN { exit !(y > x) }'; then
        BEST[$s]=$b
    else
        BEST[$s]=$a
    fi
done

{
    echo "| server | req/s | p50 | p90 | p99 | CPU µs/req | ratio vs nginx |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for s in $SERVERS; do
        read -r rps p50 p90 p99 cpu _ <<<"${BEST[$s]}"
        name=$s
        [ "$s" = cw ] && name=cachewarp
        [ "$s" = nginx ] && name="nginx proxy_cache"
        ratio="n/a"
        if [ -n "${BEST[nginx]:-}" ]; then
            ratio=$(awk -v a="$rps" -v b="${BEST[nginx]%% *}" 'BEGIN { printf "%.2f×", a / b }')
        fi
        printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p90" "$p99" \
            "$cpu" "$ratio"
    done
    echo
    echo "wrk -t2 -c64 -d${SECS}s --latency on one 1 KiB hot URL; better of two alternating runs;"
    echo "2 server workers each; ratio is req/s against nginx; $(nproc) CPUs ($(uname -r))."
    if [ -n "${BEST[nginx]:-}" ] && [ -n "${BEST[cw]:-}" ]; then
        read -r _ _ _ _ cwcpu _ <<<"${BEST[cw]}"
        read -r _ _ _ _ ngcpu _ <<<"${BEST[nginx]}"
        awk -v a="$cwcpu" -v b="$ngcpu" \
            'BEGIN { printf "CPU per request vs nginx: %.2f×\n", a / b }'
    fi
} >"$TMP/bench.md"

cat "$TMP/bench.md"
echo
echo "bench: table written to $TMP/bench.md"
