#!/usr/bin/env bash
# `make check-package-clean`: `make check-package` with its apt-get install test run on a
# clean Debian 12 instead of a copy of this machine, twice: on a minimal root (debootstrap
# --variant=minbase bookworm: no systemd, as in a container; the package's Depends must
# bring every library, its postinst must make the user and directories without systemd),
# then on that root with systemd installed, as on a VM (sysusers, tmpfiles, the unit
# enabled, systemd-analyze verify). The roots are made once in CLEAN_ROOT (default
# build/debian12-root, and CLEAN_ROOT-systemd; about 4 minutes and 350 MB) and reused; each
# install goes into a throwaway overlay, so they stay clean. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${CLEAN_ROOT:-$PWD/build/debian12-root}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

fail() { echo "check-package-clean: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot)"
if [ ! -e "$root/.complete" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
    rm -rf "$root"
    echo "check-package-clean: debootstrap bookworm into $root (a few minutes)" >&2
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
        { tail -20 "$root.log" >&2; fail "debootstrap"; }
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    chroot "$root" apt-get update -q >>"$root.log" 2>&1 ||
        { tail -20 "$root.log" >&2; fail "apt-get update"; }
    touch "$root/.complete"
fi
if [ ! -e "$root-systemd/.complete" ]; then
    rm -rf "$root-systemd"
    echo "check-package-clean: $root-systemd: the same with systemd" >&2
    cp -a "$root" "$root-systemd"
    rm "$root-systemd/.complete"
    chroot "$root-systemd" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends systemd >>"$root.log" 2>&1 ||
        { tail -20 "$root.log" >&2; fail "apt-get install systemd"; }
    touch "$root-systemd/.complete"
fi
for r in "$root" "$root-systemd"; do
    echo "check-package-clean: on $r" >&2
    CHECK_PACKAGE_ROOT=$r scripts/check-package.sh
done
