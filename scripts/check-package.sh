#!/usr/bin/env bash
# `make check-package`: builds the .deb (scripts/deb.sh) and checks what it ships.
#
#   1. lintian: no error and no warning but those in pkg/lintian/accepted-tags (info and
#      pedantic tags are printed, not fatal);
#   2. the man pages: mandoc -T lint -W warning;
#   3. the alerting rules: promtool check rules and promtool test rules; the configs that
#      etc/k8s/configmap.yaml and etc/docker/Dockerfile give cachewarpd pass its check;
#   4. the unpacked package (dpkg-deb -x into a scratch root): systemd-analyze verify of the
#      unit against that root (its ExecStart/ExecReload binaries and its Documentation= man
#      pages must be there), systemd-analyze security --offline (the exposure score, which
#      must stay under MAX_EXPOSURE, 2.0), systemd-sysusers and systemd-tmpfiles --root on the
#      snippets, and cachewarpd -t on the shipped config;
#   5. a real `apt-get install ./cachewarp_*.deb` into a throwaway copy of this machine (an
#      overlay of / in a private mount namespace, chrooted: nothing reaches the host): the
#      postinst creates the user and the directories and enables the unit, cachewarpd starts
#      as that user on the shipped config (ports moved to free ones) and answers /healthz,
#      then `apt-get purge` removes it all. Needs root and overlayfs; skipped with a note
#      otherwise, or with CHECK_PACKAGE_INSTALL=0. CHECK_PACKAGE_ROOT=DIR puts the overlay on
#      DIR instead of / (`make check-package-clean` passes a fresh debootstrap of Debian 12
#      there, to prove the install on a clean system).
# Prints `check-package: ok (...)` or the first failure, and exits 0 or 1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
t0=$(date +%s)

fail() { echo "check-package: FAIL: $*" >&2; exit 1; }
note() { echo "check-package: $*" >&2; }

deb=$(scripts/deb.sh)
[ -f "$deb" ] || fail "scripts/deb.sh made no package"
note "built $deb"
scratch=$(mktemp -d /tmp/cw-pkg.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# ---- 1. lintian
# lintian warns that it runs as root; everything else it prints is about the package.
lint=$(lintian --display-info --pedantic --suppress-tags-from-file pkg/lintian/accepted-tags \
    --fail-on error,warning "$deb" 2>&1) || { echo "$lint" >&2; fail "lintian"; }
lint=$(echo "$lint" | grep -v 'running with root privileges' || true)
[ -z "$lint" ] || echo "$lint" | sed 's/^/check-package: lintian: /' >&2
note "lintian: no errors, no unaccepted warnings"

# ---- 2. man pages
for m in man/*.[1-9]; do
    mandoc -T lint -W warning "$m" >&2 || fail "mandoc -T lint $m"
done
note "man pages: mandoc lint clean"

# ---- 3. alerting rules
promtool check rules etc/prometheus/cachewarp-alerts.yml >/dev/null || fail "promtool check rules"
promtool test rules tests/prometheus/cachewarp-alerts.test.yml >/dev/null ||
    fail "promtool test rules tests/prometheus/cachewarp-alerts.test.yml"
note "alerting rules: promtool check and test pass"

# ---- 3b. the container files (not built or run here: no container runtime): the configs
# they give cachewarpd pass its check.
sed -n '/^  cachewarp.conf: |$/,/^[^ ]/s/^    //p' etc/k8s/configmap.yaml >"$scratch/k8s.conf"
build/deb/bin/cachewarpd -t -c "$scratch/k8s.conf" >/dev/null 2>&1 ||
    fail "cachewarpd -t rejects the config of etc/k8s/configmap.yaml"
sed -e 's|^listen = "127.0.0.1:8080";|listen = ":8080";|' \
    -e 's|^  listen = "127.0.0.1:9145";|  listen = ":9145";|' etc/cachewarp.conf >"$scratch/docker.conf"
grep -q '^listen = ":8080";' "$scratch/docker.conf" && grep -q '^  listen = ":9145";' "$scratch/docker.conf" ||
    fail "etc/docker/Dockerfile's sed no longer matches the listen lines of etc/cachewarp.conf"
build/deb/bin/cachewarpd -t -c "$scratch/docker.conf" >/dev/null 2>&1 ||
    fail "cachewarpd -t rejects the config etc/docker/Dockerfile makes"
note "container files: the k8s ConfigMap's and the Dockerfile's configs pass cachewarpd -t"

# ---- 4. the unpacked package
root=$scratch/root
dpkg-deb -x "$deb" "$root"
unit=$root/lib/systemd/system/cachewarp.service
[ -f "$unit" ] || fail "no /lib/systemd/system/cachewarp.service in the package"
for f in /usr/sbin/cachewarpd /etc/cachewarp/cachewarp.conf /etc/logrotate.d/cachewarp \
         /usr/lib/sysusers.d/cachewarp.conf /usr/lib/tmpfiles.d/cachewarp.conf \
         /usr/share/man/man8/cachewarpd.8.gz /usr/share/man/man5/cachewarp.conf.5.gz \
         /usr/share/cachewarp/grafana/cachewarp.json \
         /usr/share/cachewarp/prometheus/cachewarp-alerts.yml /usr/share/doc/cachewarp/copyright \
         /usr/bin/cwctl /usr/share/man/man8/cwctl.8.gz; do
    [ -e "$root$f" ] || fail "$f missing from the package"
done
# Every program the unit runs and every man page it names is in the package.
for exe in $(sed -n 's/^Exec[A-Za-z]*=[-+!@:]*\([^ ]*\).*/\1/p' "$unit" | sort -u); do
    [ -x "$root$exe" ] || fail "unit runs $exe, which the package does not ship"
done
for page in $(sed -n 's/^Documentation=//p' "$unit"); do
    name=${page#man:}; sec=${name##*(}; sec=${sec%)}; name=${name%(*}
    [ -e "$root/usr/share/man/man$sec/$name.$sec.gz" ] ||
        fail "unit names man:$name($sec), which the package does not ship"
done
# systemd-analyze resolves the unit's dependencies (sysinit.target, ...) inside --root.
mkdir -p "$root/lib/systemd"
cp -an /lib/systemd/system/. "$root/lib/systemd/system/"
out=$(systemd-analyze verify --man=no --root="$root" cachewarp.service 2>&1) ||
    { echo "$out" >&2; fail "systemd-analyze verify"; }
[ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify printed warnings"; }
sec=$(systemd-analyze security --offline=yes --root="$root" cachewarp.service 2>&1 |
    sed -n 's/.*Overall exposure level for cachewarp.service: \([0-9.]*\).*/\1/p')
[ -n "$sec" ] || fail "systemd-analyze security gave no exposure level"
awk -v s="$sec" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
    fail "systemd-analyze security: exposure $sec above $MAX_EXPOSURE"
note "systemd-analyze verify clean; security exposure $sec (offline)"
# The snippets, applied to the scratch root.
mkdir -p "$root/etc"
touch "$root/etc/passwd" "$root/etc/group" "$root/etc/shadow" "$root/etc/gshadow"
systemd-sysusers --root="$root" >/dev/null 2>&1 || fail "systemd-sysusers --root"
grep -q '^cachewarp:' "$root/etc/passwd" || fail "sysusers.d made no cachewarp user"
systemd-tmpfiles --root="$root" --create cachewarp.conf >/dev/null 2>&1 ||
    fail "systemd-tmpfiles --root --create"
for d in /run/cachewarp /var/cache/cachewarp /var/log/cachewarp; do
    [ -d "$root$d" ] || fail "tmpfiles.d did not create $d"
done
"$root/usr/sbin/cachewarpd" -t -c "$root/etc/cachewarp/cachewarp.conf" >/dev/null 2>&1 ||
    fail "cachewarpd -t rejects the shipped /etc/cachewarp/cachewarp.conf"
note "unpacked: files where the unit expects them; sysusers, tmpfiles and the config check pass"
# ---- 4b. make install and make uninstall (PREFIX=/usr/local) into a scratch root
inst=$scratch/inst
make --no-print-directory -s install DESTDIR="$inst" >/dev/null 2>"$scratch/install.err" ||
    { cat "$scratch/install.err" >&2; fail "make install DESTDIR=$inst"; }
for f in /usr/local/sbin/cachewarpd /usr/local/bin/cwctl /usr/local/lib/systemd/system/cachewarp.service \
         /usr/local/lib/sysusers.d/cachewarp.conf /usr/local/lib/tmpfiles.d/cachewarp.conf \
         /etc/logrotate.d/cachewarp /etc/cachewarp/cachewarp.conf \
         /usr/local/share/man/man8/cachewarpd.8 /usr/local/share/man/man8/cwctl.8 \
         /usr/local/share/man/man5/cachewarp.conf.5 /usr/local/share/cachewarp/grafana/cachewarp.json; do
    [ -e "$inst$f" ] || fail "make install put no $f"
done
grep -q '^ExecStart=/usr/local/sbin/cachewarpd ' "$inst/usr/local/lib/systemd/system/cachewarp.service" &&
    grep -q '^ExecReload=/usr/local/bin/cwctl reload' "$inst/usr/local/lib/systemd/system/cachewarp.service" ||
    fail "make install did not point the unit at /usr/local"
make --no-print-directory -s uninstall DESTDIR="$inst" >/dev/null 2>&1 || fail "make uninstall"
left=$(cd "$inst" && find . -type f | sort)
[ "$left" = "./etc/cachewarp/cachewarp.conf" ] ||
    { echo "$left" >&2; fail "make uninstall left more than the config (above)"; }
note "make install (PREFIX=/usr/local) and uninstall: every file placed, then all but the config gone"

# ---- 5. apt-get install into a throwaway overlay of this machine
if [ "${CHECK_PACKAGE_INSTALL:-1}" = 0 ]; then
    note "install test skipped (CHECK_PACKAGE_INSTALL=0)"
elif [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
    note "install test skipped: needs root and unshare (run as root for the apt-get install test)"
else
    mkdir -p "$scratch/ovl/up" "$scratch/ovl/work" "$scratch/ovl/mnt"
    cp "$deb" "$scratch/cachewarp.deb"
    cp scripts/check-package-chroot.sh "$scratch/inside.sh"
    lower=${CHECK_PACKAGE_ROOT:-/}
    [ -e "$lower/var/lib/dpkg/status" ] || fail "CHECK_PACKAGE_ROOT=$lower is not a Debian root"
    [ "$lower" = / ] || cp /etc/resolv.conf "$scratch/resolv.conf"
    unshare --mount --propagation private -- sh -ec '
        o=$1 lower=$2
        mount -t overlay overlay -o "lowerdir=$lower,upperdir=$o/ovl/up,workdir=$o/ovl/work" "$o/ovl/mnt"
        m=$o/ovl/mnt
        [ ! -e "$o/resolv.conf" ] || cp "$o/resolv.conf" "$m/etc/resolv.conf"
        mount -t proc proc "$m/proc"
        mount --rbind /dev "$m/dev"
        mount -t tmpfs tmpfs "$m/run"
        mount -t tmpfs tmpfs "$m/tmp"
        cp "$o/cachewarp.deb" "$o/inside.sh" "$m/tmp/"
        chroot "$m" /bin/sh /tmp/inside.sh /tmp/cachewarp.deb
    ' sh "$scratch" "$lower" >"$scratch/install.log" 2>&1 ||
        { cat "$scratch/install.log" >&2; fail "apt-get install in the scratch overlay of $lower"; }
    note "install: into an overlay of $lower"
    sed -n 's/^inside: /check-package: install: /p' "$scratch/install.log" >&2
fi
note "ok ($(( $(date +%s) - t0 ))s)"
