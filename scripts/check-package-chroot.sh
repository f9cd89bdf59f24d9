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
if [ -x /usr/bin/cwctl ]; then
    systemd-analyze verify /lib/systemd/system/cachewarp.service || die "systemd-analyze verify"
    say "systemd-analyze verify (with man pages) clean on the installed system"
fi

ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(2)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
set -- $ports
conf=/etc/cachewarp/check-package.conf
sed -e "s|\"127.0.0.1:8080\"|\"127.0.0.1:$1\"|" -e "s|\"127.0.0.1:9145\"|\"127.0.0.1:$2\"|" \
    -e 's|enabled = true;|enabled = false;|' /etc/cachewarp/cachewarp.conf >$conf
chown root:cachewarp $conf && chmod 0640 $conf
setpriv --reuid=cachewarp --regid=cachewarp --init-groups --inh-caps=-all \
    /usr/sbin/cachewarpd -c $conf >/tmp/cachewarpd.log 2>&1 &
pid=$!
i=0
until curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
        cat /tmp/cachewarpd.log; kill $pid 2>/dev/null || true; die "cachewarpd did not answer /healthz"
    fi
    sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/x") || true
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
