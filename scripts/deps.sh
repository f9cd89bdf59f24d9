#!/usr/bin/env bash
# Installs the Debian packages CacheWarp needs to build, run and test, when missing.
# Uses sudo only when not root. BENCH_DEPS=1 installs what `make bench` adds, FUZZ_DEPS=1 what
# `make fuzz` needs, PKG_DEPS=1 what `make deb` and `make check-package` need.
set -euo pipefail

pkgs=(gcc make pkg-config libmicrohttpd-dev liblmdb-dev libhiredis-dev libconfig-dev check
      libcurl4-openssl-dev libsystemd-dev redis-server python3 curl lmdb-utils
      prometheus prometheus-node-exporter # promtool and node_exporter: observability tests
      clang-format binutils                # make lint: clang-format 14 (bookworm), nm
      libc-ares-dev dnsmasq-base)          # origin DNS discovery; dnsmasq: tests/integration/test_dns.py
if [ "${BENCH_DEPS:-0}" = 1 ]; then
    pkgs=(nginx-light varnish) # the peers; the load generator is our own (tests/bench)
fi
# clang-14's package only recommends libclang-rt-14-dev, which holds libFuzzer and the
# sanitizer runtimes, and we install without recommends: name it.
if [ "${FUZZ_DEPS:-0}" = 1 ]; then
    pkgs=(clang libclang-rt-14-dev)
fi
# dpkg-dev gives dpkg-shlibdeps; mandoc lints the mdoc man pages; lintian checks the .deb.
# systemd gives systemd-analyze (verify, security) even where it is not PID 1; logrotate -d
# checks the logrotate snippet.
if [ "${PKG_DEPS:-0}" = 1 ]; then
    pkgs=(dpkg-dev fakeroot mandoc lintian systemd logrotate)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
# policy-rc.d keeps the packages' own services (redis, nginx) from starting system-wide:
# tests start their own instances on ephemeral loopback ports.
tmp_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    tmp_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$tmp_policy" >/dev/null
    $sudo chmod +x "$tmp_policy"
fi
rc=0
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || rc=$?
[ -n "$tmp_policy" ] && $sudo rm -f "$tmp_policy"
exit $rc
