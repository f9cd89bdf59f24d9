#!/bin/sh
# Runs inside the throwaway overlay chroot of scripts/check-package.sh (never on the host):
# installs the package with apt-get as a user would, checks what the maintainer scripts did,
# starts cachewarpd as the cachewarp user on the shipped config (ports moved to free ones,
# Redis off), asks /healthz and a request, stops it, purges the package and checks that it is
# gone. Lines starting "inside: " are the summary; the first failure exits 1.
set -eu
deb=$1
say() { echo "inside: $*"; }
die() { echo "inside: FAIL: $*"; exit 1; }
export DEBIAN_FRONTEND=noninteractive

[ -e /var/lib/dpkg/status ] || die "no dpkg database: not a Debian root"
! dpkg-query -W cachewarp >/dev/null 2>&1 || die "cachewarp is already installed on this machine"
apt-get install -y -q --no-install-recommends "$deb" || die "apt-get install $deb"
say "apt-get install ./$(basename "$deb"): ok"

getent passwd cachewarp >/dev/null || die "postinst created no cachewarp user"
[ "$(getent passwd cachewarp | cut -d: -f7)" = /usr/sbin/nologin ] || die "cachewarp has a login shell"
[ "$(stat -c '%U:%G %a' /etc/cachewarp/cachewarp.conf)" = "root:cachewarp 640" ] ||
    die "/etc/cachewarp/cachewarp.conf is $(stat -c '%U:%G %a' /etc/cachewarp/cachewarp.conf)"
[ -L /etc/systemd/system/multi-user.target.wants/cachewarp.service ] ||
    die "postinst did not enable cachewarp.service"
for d in /run/cachewarp /var/cache/cachewarp /var/log/cachewarp; do
    [ "$(stat -c %U "$d" 2>/dev/null)" = cachewarp ] || die "$d missing or not owned by cachewarp"
done
say "user, config mode root:cachewarp 640, unit enabled, directories owned by cachewarp"
# The logrotate snippet parses, now that its user exists (debug mode: nothing moves).
if command -v logrotate >/dev/null; then
    out=$(logrotate -d -s /tmp/logrotate.state /etc/logrotate.d/cachewarp 2>&1) ||
        { echo "$out"; die "logrotate -d /etc/logrotate.d/cachewarp"; }
    ! echo "$out" | grep -q '^error' || { echo "$out"; die "logrotate: errors in the snippet"; }
    say "logrotate -d accepts /etc/logrotate.d/cachewarp"
fi
if [ -x /usr/bin/cwctl ] && command -v systemd-analyze >/dev/null; then
    if command -v man >/dev/null; then
        systemd-analyze verify /lib/systemd/system/cachewarp.service || die "systemd-analyze verify"
        say "systemd-analyze verify (with man pages) clean on the installed system"
    else # no man-db (a minimal root): Documentation= cannot be looked up
        systemd-analyze verify --man=no /lib/systemd/system/cachewarp.service ||
            die "systemd-analyze verify"
        say "systemd-analyze verify (no man-db here, so without the man pages) clean"
    fi
fi

# Two free loopback ports; a clean Debian root (minbase) has neither python3 nor curl, so
# both have a fallback: ports not in /proc/net/tcp, and HTTP over bash's /dev/tcp.
if command -v python3 >/dev/null; then
    ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(2)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
else
    ports=""
    for p in $(shuf -i 20000-60000 -n 40); do
        hex=$(printf ':%04X ' "$p")
        grep -q "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null && continue
        ports="$ports $p"
        [ "$(echo $ports | wc -w)" -eq 2 ] && break
    done
fi
# The status code of GET http://127.0.0.1:$1$2, or nothing.
http_code() {
    if command -v curl >/dev/null; then
        curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2"
    else
        bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
            printf "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" "$1" >&3
            head -n 1 <&3 | cut -d" " -f2' "$1" "$2" 2>/dev/null
    fi
}
set -- $ports
conf=/etc/cachewarp/check-package.conf
sed -e "s|\"127.0.0.1:8080\"|\"127.0.0.1:$1\"|" -e "s|\"127.0.0.1:9145\"|\"127.0.0.1:$2\"|" \
    -e 's|enabled = true;|enabled = false;|' /etc/cachewarp/cachewarp.conf >$conf
chown root:cachewarp $conf && chmod 0640 $conf
setpriv --reuid=cachewarp --regid=cachewarp --init-groups --inh-caps=-all \
    /usr/sbin/cachewarpd -c $conf >/tmp/cachewarpd.log 2>&1 &
pid=$!
i=0
until [ "$(http_code "$2" /healthz)" = 200 ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
        cat /tmp/cachewarpd.log; kill $pid 2>/dev/null || true; die "cachewarpd did not answer /healthz"
    fi
    sleep 0.1
done
code=$(http_code "$1" /x) || true
[ -e /var/cache/cachewarp/l1.mdb ] || { kill $pid; die "no /var/cache/cachewarp/l1.mdb"; }
[ "$(stat -c %U /var/cache/cachewarp/l1.mdb)" = cachewarp ] || { kill $pid; die "l1.mdb not the user's"; }
kill -TERM $pid
wait $pid || die "cachewarpd exited with $? on SIGTERM"
case "$code" in 502|504) ;; *) die "a request with no origin got '$code', not 502/504";; esac
say "cachewarpd as user cachewarp: /healthz ok, L1 in /var/cache/cachewarp, origin down -> $code"
rm -f $conf

apt-get purge -y -q cachewarp || die "apt-get purge"
for f in /usr/sbin/cachewarpd /lib/systemd/system/cachewarp.service /etc/cachewarp \
         /var/cache/cachewarp /var/log/cachewarp \
         /etc/systemd/system/multi-user.target.wants/cachewarp.service; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || die "$f left after purge"
done
say "apt-get purge: files, config, cache, logs and the enablement gone (the user stays)"
