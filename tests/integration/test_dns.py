"""Origin discovery by DNS: a host name's A records become the servers of the pool and are
followed when they change, SRV records give servers, ports and weights and are followed too,
and a failed lookup keeps the last known servers.

Everything runs on loopback: a dnsmasq started here on an ephemeral port serves the names
(from an addn-hosts file the test rewrites, re-read on SIGHUP, and --srv-host records),
cw-test-origin processes are the servers (on 127.0.0.1 and 127.0.0.2), one cachewarpd in front
with resolver = that dnsmasq.
"""

import os
import shutil
import signal
import subprocess
import threading
import time

import cw

NAME = "api.cw.test"
SRV = "_api._tcp.cw.test"
# How soon a change must be followed: the records' TTL is 1 s and resolve_min 1 s, so the
# next lookup is at most 1 s away; the rest is the refresher's and the workers' turn, and a
# loaded machine's margin. resolve_max is 60 s in these tests, so a lookup schedule that
# ignored the TTL would miss this by far.
FOLLOW_S = 3.0 * cw.TIME_FACTOR


class Dnsmasq:
    """A dnsmasq on 127.0.0.1:port serving hosts_path's names and srv records (TTL 1 s)."""

    def __init__(self, tmpdir, hosts_path, srv=(), port=0, name="dnsmasq"):
        exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not os.access(exe, os.X_OK):
            raise AssertionError("dnsmasq is missing: install dnsmasq-base (scripts/deps.sh)")
        self.port = port or cw.free_port()
        self.log_path = os.path.join(tmpdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        args = [exe, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts_path}",
                "--local-ttl=1", "--conf-file=/dev/null", "--pid-file="]
        if os.getuid() == 0:
            args.append("--user=root")  # the temp dir is the test's: keep reading it on SIGHUP
        args += [f"--srv-host={s}" for s in srv]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        self.pid = self.proc.pid
        cw.wait_for(lambda: self._answers() or self.proc.poll() is not None, 10,
                    what="dnsmasq listening")
        if self.proc.poll() is not None:
            raise AssertionError(f"dnsmasq exited: {cw.tail(self.log_path)}")

    def _answers(self):
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x03api\x02cw\x04test\x00"
             + b"\x00\x01\x00\x01")
        try:
            s.sendto(q, ("127.0.0.1", self.port))
            return len(s.recv(512)) > 12
        except OSError:
            return False
        finally:
            s.close()

    def reload(self):
        """Re-reads the hosts file."""
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class AddrOrigin(cw.Origin):
    """A cw-test-origin on another loopback address (cw.Origin listens on 127.0.0.1)."""

    def __init__(self, tmpdir, addr, port, name):
        self.log_path = os.path.join(tmpdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([cw.binary("cw-test-origin"), "-p", str(port), "-a", addr],
                                     stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.port = self._read_port(5.0)
        self.addr = addr
        self.url = f"http://{addr}:{port}"

    def get(self, path, **kw):
        return cw.request(self.port, path, host=self.addr, **kw)

    def stats(self):
        r = cw.request(self.port, "/__stats", timeout=5, host=self.addr)
        assert r.status == 200, f"origin /__stats: {r}"
        return r.json()


def write_hosts(path, addrs):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for a in addrs:
            f.write(f"{a} {NAME}\n")
    os.replace(tmp, path)


class Load:
    """Threads sending GETs of distinct paths (every one a miss, so every one reaches an
    origin) until stopped; keeps every status."""

    def __init__(self, d, prefix, threads=3):
        self.d = d
        self.prefix = prefix
        self.statuses = []
        self.lock = threading.Lock()
        self.stopping = False
        self.n = 0
        self.threads = [threading.Thread(target=self._run, args=(t,)) for t in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, t):
        i = 0
        while not self.stopping:
            st = self.d.get(f"/{self.prefix}{t}-{i}").status
            with self.lock:
                self.statuses.append(st)
            i += 1

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join()
        return self.statuses


def wait_log(d, text, timeout=10, count=1):
    cw.wait_for(lambda: log_count(d, text) >= count, timeout, interval=0.05,
                what=f"log line {text!r} x{count}")


def log_count(d, text):
    return open(d.log_path, encoding="utf-8", errors="replace").read().count(text)


def test_dns_a_records_followed_under_load(env):
    a = env.origin("a")
    b = AddrOrigin(env.dir, "127.0.0.2", a.port, "b")
    env.origins.append(b)
    hosts = os.path.join(env.dir, "hosts")
    write_hosts(hosts, ["127.0.0.1"])
    dns = Dnsmasq(env.dir, hosts)
    try:
        d = env.daemon(a, workers=2, stats=True, origin_cfg={
            "url": f"http://{NAME}:{a.port}", "resolver": f"127.0.0.1:{dns.port}",
            "resolve_min": "1s", "resolve_max": "60s", "connect_timeout": "500ms"})
        wait_log(d, f"server 127.0.0.1:{a.port} added (DNS)")
        r = d.get("/first")
        assert r.status == 200, r
        # The address is only where the connection goes: the request is the one sent
        # without discovery (Host as the client sent it; the URL, and so SNI, the name).
        assert a.stats()["last_headers"].get("host") == f"127.0.0.1:{d.port}", a.stats()

        # The name moves to 127.0.0.2 under steady load: not one request fails, and a slow
        # request in flight on the old address finishes there (drained, not cut).
        slow = []
        slow_t = threading.Thread(target=lambda: slow.append(d.get("/slow?delay_ms=3000")))
        slow_t.start()
        cw.wait_for(lambda: a.count("/slow?delay_ms=3000") == 1, 5, what="slow request sent")
        load = Load(d, "m")
        time.sleep(1.0)
        write_hosts(hosts, ["127.0.0.2"])
        t0 = time.monotonic()
        dns.reload()
        cw.wait_for(lambda: b.count_prefix("/m") > 0, 15, interval=0.02,
                    what="requests on the new address")
        first_b = time.monotonic() - t0
        # Drained: once the new table is taken, the old address gets nothing new.
        wait_log(d, f"server 127.0.0.1:{a.port} removed (DNS)")
        time.sleep(0.5)
        na = a.count_prefix("/m")
        time.sleep(1.0)
        statuses = load.stop()
        slow_t.join()
        assert slow[0].status == 200 and b"/slow" in slow[0].body, slow
        assert a.count_prefix("/m") == na, "the old address still got requests"
        failed = [s for s in statuses if s != 200]
        assert not failed, f"{len(failed)}/{len(statuses)} failed: {sorted(set(failed))}"
        env.note(f"A record moved: new address used {first_b:.2f}s after the change "
                 f"(TTL 1s), {len(statuses)} GETs under load, 0 failed")
        assert first_b < FOLLOW_S, f"took {first_b:.1f}s to follow a 1 s TTL"
        assert b.stats()["last_headers"].get("host") == f"127.0.0.1:{d.port}"

        # Two addresses: both serve.
        write_hosts(hosts, ["127.0.0.1", "127.0.0.2"])
        dns.reload()
        wait_log(d, f"server 127.0.0.1:{a.port} added (DNS)", count=2)
        time.sleep(0.2)  # the workers take the table at their next request
        a.reset()
        b.reset()
        for i in range(40):
            assert d.get(f"/both{i}").status == 200
        assert a.count_prefix("/both") > 0 and b.count_prefix("/both") > 0
        # Each address is a server of the pool in /metrics.
        for addr in ("127.0.0.1", "127.0.0.2"):
            d.wait_metric("cachewarp_origin_server_up", lambda v: v == 1, timeout=5,
                          origin="api", server=f"http://{addr}:{a.port}")

        # DNS down: the last known servers keep serving, the failure is logged once.
        dns.stop()
        load = Load(d, "down")
        time.sleep(4.0)  # several rounds at resolve_min = 1 s
        statuses = load.stop()
        assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
        assert log_count(d, "DNS lookup failed") == 1, cw.tail(d.log_path, 30)
        assert d.metric("cachewarp_origin_dns_failures_total", origin="api") >= 2
        assert d.metric("cachewarp_origin_dns_servers", origin="api") == 2
        env.note(f"DNS down 4s: {len(statuses)} GETs, 0 failed, last servers kept")
        # Back: said once.
        dns = Dnsmasq(env.dir, hosts, port=dns.port, name="dnsmasq2")
        wait_log(d, "DNS lookups answer again")
    finally:
        dns.stop()


def test_dns_srv_weights_ports_and_change(env):
    p = env.origin("p")
    q = env.origin("q")
    r = env.origin("r")
    hosts = os.path.join(env.dir, "hosts")
    write_hosts(hosts, ["127.0.0.1"])
    srv = [f"{SRV},{NAME},{p.port},0,1", f"{SRV},{NAME},{q.port},0,3"]
    dns = Dnsmasq(env.dir, hosts, srv=srv)
    try:
        d = env.daemon(p, workers=2, stats=True, origin_cfg={
            "url": f"http://{NAME}", "srv": SRV, "resolver": f"127.0.0.1:{dns.port}",
            "resolve_min": "1s", "resolve_max": "60s", "connect_timeout": "500ms"})
        wait_log(d, f"server 127.0.0.1:{q.port} added (DNS), weight 3")
        wait_log(d, f"server 127.0.0.1:{p.port} added (DNS), weight 1")
        for i in range(200):
            assert d.get(f"/w{i}").status == 200
        np_, nq = p.count_prefix("/w"), q.count_prefix("/w")
        assert np_ + nq == 200, (np_, nq)
        # Weights 1:3, two workers each with its own round robin: within 10 % of the share.
        assert abs(np_ - 50) <= 20 and abs(nq - 150) <= 20, (np_, nq)
        assert q.stats()["last_headers"].get("host") == f"127.0.0.1:{d.port}", q.stats()
        env.note(f"SRV spread p={np_} q={nq} (weights 1:3)")

        # The records change (dnsmasq restarted with others on the same port): p leaves,
        # r comes. The lookups that fail meanwhile keep the last servers.
        load = Load(d, "s")
        time.sleep(0.5)
        t0 = time.monotonic()
        dns.stop()
        dns = Dnsmasq(env.dir, hosts, port=dns.port, name="dnsmasq2",
                      srv=[f"{SRV},{NAME},{q.port},0,1", f"{SRV},{NAME},{r.port},0,1"])
        served = time.monotonic() - t0
        cw.wait_for(lambda: r.count_prefix("/s") > 0, 15, interval=0.02,
                    what="requests on the new SRV target")
        took = time.monotonic() - t0
        wait_log(d, f"server 127.0.0.1:{p.port} removed (DNS)")
        time.sleep(0.5)
        n_p = p.count_prefix("/s")
        time.sleep(1.0)
        statuses = load.stop()
        assert p.count_prefix("/s") == n_p, "the removed SRV target still got requests"
        failed = [s for s in statuses if s != 200]
        assert not failed, f"{len(failed)}/{len(statuses)} failed: {sorted(set(failed))}"
        assert took - served < FOLLOW_S, (f"took {took - served:.1f}s after the new records "
                                          f"were served to follow a 1 s TTL")
        env.note(f"SRV change followed {took:.2f}s after the old records went "
                 f"(new ones served after {served:.2f}s), {len(statuses)} GETs under load, "
                 f"0 failed")
        assert d.metric("cachewarp_origin_dns_changes_total", origin="api") >= 3

        # A restarted refresher goes on from the published table: no server moves.
        added = log_count(d, "added (DNS)")
        old = d.named("cw-refresher")
        assert len(old) == 1, old
        os.kill(old[0], signal.SIGKILL)
        cw.wait_for(lambda: d.named("cw-refresher") not in ([], old), 10,
                    what="refresher restarted")
        wait_log(d, "servers found by DNS (SRV", count=2)
        time.sleep(2.5)  # two rounds at the 1 s TTL
        assert log_count(d, "added (DNS)") == added, cw.tail(d.log_path, 20)
        assert all(d.get(f"/k{i}").status == 200 for i in range(20))

        # A reload empties the table: the new refresher finds the servers again.
        os.kill(d.pid, signal.SIGHUP)
        wait_log(d, f"server 127.0.0.1:{r.port} added (DNS)", count=2)
        assert all(d.get(f"/h{i}").status == 200 for i in range(20))
    finally:
        dns.stop()


def test_dns_config_errors(env):
    cases = [
        ({"srv": "_api._tcp.x", "servers": ["http://127.0.0.1:1"], "url": None},
         "origins.[0].servers"),
        ({"resolver": "dns.example:53"}, "resolver"),
        ({"resolve_min": "10s", "resolve_max": "5s"}, "resolve_min"),
        ({"srv": "bad name!"}, "srv"),
    ]
    for cfg, where in cases:
        path = env.config(origin=cfg)
        rc, out, err = cw.run_daemon_cmd(["-t", "-c", path])
        assert rc == 1, (cfg, out, err)
        assert where.split(".")[-1] in err and ".conf:" in err, (cfg, err)


def test_dns_system_resolver_and_hosts_file(env):
    """Without resolver, lookups follow the system's configuration: /etc/hosts' localhost."""
    o = env.origin()
    d = env.daemon(o, workers=1, origin_cfg={"url": f"http://localhost:{o.port}",
                                             "connect_timeout": "500ms"})
    wait_log(d, f"server 127.0.0.1:{o.port} added (DNS)")
    for i in range(10):
        assert d.get(f"/l{i}").status == 200
    assert o.count_prefix("/l") == 10
