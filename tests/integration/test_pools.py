"""Origin pools (issue 14): servers of one origin share the load, a dead server is routed
around without a failed GET, a restarted one is used again after its health check, the
origin's circuit breaker fails fast while the origin is dead and closes when it heals, and
an https origin is verified against a configured CA file.

Everything runs on loopback: cw-test-origin processes as the servers (a Python TLS server
for https), one cachewarpd in front.
"""

import http.server
import os
import re
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse

import cw


def pool_cfg(servers, **extra):
    """An origin "api" made of servers (their URLs), instead of one url."""
    o = {"url": None, "servers": servers, "connect_timeout": "300ms", "timeout": "2s"}
    o.update(extra)
    return o


def spread(d, n, prefix):
    """n GETs of distinct (uncached) paths; returns the statuses."""
    return [d.get(f"/{prefix}{i}").status for i in range(n)]


class Load:
    """GETs of distinct paths /<prefix>N on threads until stop(): (sent, status) of each,
    sent on the monotonic clock."""

    def __init__(self, d, prefix, threads=4):
        self.d, self.prefix = d, prefix
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.out = []
        self.next = 0
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.done.is_set():
            with self.lock:
                i = self.next
                self.next += 1
            t0 = time.monotonic()
            try:
                st = self.d.get(f"/{self.prefix}{i}").status
            except Exception as e:  # noqa: BLE001 - a failed GET, reported by the test
                st = repr(e)
            with self.lock:
                self.out.append((t0, st))

    def sent_since(self, t):
        """GETs sent at or after t that have completed."""
        with self.lock:
            return sum(1 for t0, _ in self.out if t0 >= t)

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join()
        return list(self.out)


def test_pool_spreads_and_routes_around_a_dead_server(env):
    a = env.origin("a")
    b = env.origin("b")
    c = env.origin("c")
    d = env.daemon(a, workers=2, stats=True, origin_cfg=pool_cfg(
        [a.url, b.url, f"{c.url} weight=2"], max_fails=1, fail_timeout="30s",
        health=cw.Raw('{ path = "/__stats"; interval = "200ms"; timeout = "300ms"; '
                      'rise = 1; fall = 2; }')))
    assert all(s == 200 for s in spread(d, 200, "w"))
    na, nb, nc = (o.count_prefix("/w") for o in (a, b, c))
    assert na + nb + nc == 200, (na, nb, nc)
    # Weights 1:1:2, two workers each with its own round robin: within 10 % of the share.
    for got, want in ((na, 50), (nb, 50), (nc, 100)):
        assert abs(got - want) <= 0.1 * 200, (na, nb, nc)
    env.note(f"spread a={na} b={nb} c={nc} (weights 1:1:2)")

    # b dies under load (4 threads of GETs): none fails, those sent to b are retried. The
    # load runs until b has taken its share, and goes on until many GETs were sent after b
    # was dead, so that the kill happens under load and its aftermath is tested.
    port_b = b.port
    retries0 = d.metric("cachewarp_origin_retries_total", origin="api")
    load = Load(d, "k")
    cw.wait_for(lambda: b.count_prefix("/k") >= 20, 20, what="b serving under load")
    b.stop()
    t_kill = time.monotonic()
    cw.wait_for(lambda: load.sent_since(t_kill) >= 300, 60, interval=0.05,
                what="300 GETs sent after b was killed")
    results = load.stop()
    statuses = [st for _, st in results]
    after = sum(1 for t0, _ in results if t0 >= t_kill)
    failed = sum(1 for st in statuses if st != 200)
    assert after >= 300, after
    assert failed == 0, f"{failed} failed GETs while b was dead: {sorted(set(map(str, statuses)))}"
    # The dead server was seen: at least one GET went to it, failed to connect or was cut,
    # and was retried on another server (each retry sent is counted).
    retries = d.metric("cachewarp_origin_retries_total", origin="api") - retries0
    assert retries >= 1, "no GET was retried: b's death was never met under load"
    d.wait_metric("cachewarp_origin_server_up", lambda v: v == 0, timeout=5, origin="api",
                  server=f"http://127.0.0.1:{port_b}")
    env.note(f"b killed under load: {failed}/{len(statuses)} GETs failed ({after} sent after "
             f"the kill), {retries:.0f} retried")

    # b comes back on its port: the refresher's health check brings it back, and its
    # passing check ends the 30 s passive down time the workers gave it.
    b2 = env.origin("b2", port=port_b)
    t0 = time.monotonic()
    d.wait_metric("cachewarp_origin_server_up", lambda v: v == 1, timeout=40, origin="api",
                  server=f"http://127.0.0.1:{port_b}")

    def used():
        spread(d, 20, f"r{time.monotonic_ns()}-")
        return b2.count_prefix("/r") > 0

    cw.wait_for(used, 40, interval=0.1, what="restarted server used again")
    env.note(f"b back in use {time.monotonic() - t0:.1f}s after restart")


def test_pool_breaker_fails_fast_and_closes(env):
    o = env.origin()
    d = env.daemon(o, workers=2, stats=True, route={"sie": "1h"}, origin_cfg={
        "timeout": "300ms", "fail_timeout": "500ms",
        "breaker": cw.Raw('{ failures = 3; window = "10s"; cooldown = "3s"; }')})
    # A copy that is stale before the breaker opens, to be served while it is open.
    cc = urllib.parse.quote("max-age=1", safe="")
    assert d.get(f"/stale?cc={cc}").status == 200
    time.sleep(1.2)
    # The origin accepts and never answers: three timeouts open the breaker (3 s cooldown).
    o.mode("hang")
    for i in range(3):
        r = d.get(f"/t{i}")
        assert r.status == 504, r
    d.wait_metric("cachewarp_origin_breaker_state", lambda v: v == 2, timeout=5, origin="api")
    # The stale copy comes at once from the cache: no wait on the hanging origin (its
    # timeout is 300 ms), and the breaker is still open after it (no probe went).
    hung = o.count(f"/stale?cc={cc}")
    r = d.get(f"/stale?cc={cc}")
    assert r.status == 200 and r.header("x-cache") == "STALE-ERROR", r
    assert r.elapsed < 0.05, f"stale copy took {r.elapsed * 1000:.1f} ms with the breaker open"
    assert d.metric("cachewarp_origin_breaker_state", origin="api") == 2
    assert o.count(f"/stale?cc={cc}") == hung, "the stale request reached the origin"
    env.note(f"breaker open: stale copy served in {r.elapsed * 1000:.2f} ms")
    lat = []
    for i in range(30):
        r = d.get(f"/f{i}")
        assert r.status == 503 and r.header("retry-after"), r
        assert b"origin unavailable" in r.body
        lat.append(r.elapsed)
    p50, mx = cw.percentile(lat, 50), max(lat)
    assert mx < 0.05, f"fail-fast max {mx * 1000:.1f} ms"
    env.note(f"breaker open: 503 in p50 {p50 * 1000:.2f} ms, max {mx * 1000:.2f} ms")
    assert d.metric("cachewarp_origin_fail_fast_total", origin="api") >= 30

    o.mode("normal")

    def closed():
        d.get(f"/h{time.monotonic_ns()}")
        return d.metric("cachewarp_origin_breaker_state", origin="api") == 0

    t0 = time.monotonic()
    cw.wait_for(closed, 20, interval=0.1, what="breaker closed after the origin healed")
    env.note(f"closed {time.monotonic() - t0:.1f}s after the origin healed")
    assert d.get("/after").status == 200
    log = open(d.log_path, encoding="utf-8", errors="replace").read()
    assert log.count("circuit breaker open (was closed)") == 1, log[-3000:]
    assert "circuit breaker closed" in log


def test_pool_active_checks_take_a_server_out_and_back(env):
    """Active health checks alone (no client request reaches the sick server): b answers
    its checks 503 while it still accepts connections; the refresher's checks mark it down
    (fall = 2), every GET then goes to a, none fails; b healed, its checks (rise = 2) put it
    back and it gets GETs again. Each change is logged once."""
    a = env.origin("a")
    b = env.origin("b")
    d = env.daemon(a, workers=2, stats=True, origin_cfg=pool_cfg(
        [a.url, b.url], health=cw.Raw('{ path = "/health"; interval = "200ms"; '
                                      'timeout = "300ms"; expect = 200; rise = 2; fall = 2; }')))
    server_b = f"http://127.0.0.1:{b.port}"
    d.wait_metric("cachewarp_origin_server_up", lambda v: v == 1, timeout=5, origin="api",
                  server=server_b)
    # Checks run once per node (the refresher's), not once per process: over 3 s at a
    # 200 ms interval b gets about 15, where each of the 3 processes checking would make 45
    # and the 2 workers alone 30.
    c0, t0 = b.count("/health"), time.monotonic()
    time.sleep(3.0)
    checks, dur = b.count("/health") - c0, time.monotonic() - t0
    per_node = dur / 0.2
    assert checks <= 1.3 * per_node + 2, f"{checks} checks in {dur:.1f}s: more than one checker"
    assert checks >= 0.4 * per_node / cw.TIME_FACTOR, f"{checks} checks in {dur:.1f}s"
    env.note(f"active checks: {checks} in {dur:.1f}s at a 200 ms interval, 2 workers")
    b.mode("503")
    t0 = time.monotonic()
    d.wait_metric("cachewarp_origin_server_up", lambda v: v == 0, timeout=5, origin="api",
                  server=server_b)
    env.note(f"b out {time.monotonic() - t0:.2f} s after its checks began failing")
    before = b.count_prefix("/x")
    st = spread(d, 40, "x")
    assert st == [200] * 40, st
    assert b.count_prefix("/x") == before, "a server marked down by its checks got requests"
    b.mode("normal")
    t0 = time.monotonic()
    d.wait_metric("cachewarp_origin_server_up", lambda v: v == 1, timeout=5, origin="api",
                  server=server_b)
    env.note(f"b back {time.monotonic() - t0:.2f} s after it healed")
    st = spread(d, 40, "y")
    assert st == [200] * 40, st
    assert b.count_prefix("/y") > 0, "the healed server got no request"
    log = open(d.log_path, encoding="utf-8", errors="replace").read()
    down = [x for x in log.splitlines() if server_b in x and "down" in x]
    assert len(down) == 1, down


def test_pool_retry_budget_and_retry_off(env):
    """b is dead and kept in the pool (max_fails high, the breaker out of reach), so about
    every other GET is sent to it first and wants a retry: the retries sent stay within the
    budget (its burst of 10 plus 20 % of the requests; one worker, so one bucket), the rest
    fail at once, and every GET sent to b is either retried or failed. With retry = false no
    GET is retried."""
    a = env.origin("a")
    b = env.origin("b")
    b_url = b.url
    b.stop()
    # Keep b's port bound (not listening: connects are refused) so that no daemon started
    # below is handed it as its own listening port and ends up proxying to itself.
    dead = socket.socket()
    dead.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    dead.bind(("127.0.0.1", urllib.parse.urlsplit(b_url).port))
    burst, pct, n = 10, 20, 200
    d = env.daemon(a, workers=1, stats=True, name="budget", origin_cfg=pool_cfg(
        [a.url, b_url], retry_budget=pct, max_fails=1000,
        breaker=cw.Raw('{ failures = 10000; }')))
    st = spread(d, n, "g")
    retries = int(d.metric("cachewarp_origin_retries_total", origin="api"))
    to_a = a.count_prefix("/g")  # first attempts on a, and the retries
    to_b = n - (to_a - retries)  # first attempts on b
    failed = [s for s in st if s != 200]
    assert set(failed) <= {502, 503, 504}, sorted(set(failed))
    assert st.count(200) == to_a, (st.count(200), to_a)
    assert abs(to_b - n / 2) <= 0.1 * n, to_b
    assert retries + len(failed) == to_b, (retries, len(failed), to_b)
    assert retries <= burst + pct * n / 100, f"{retries} retries past the budget"
    # More than the burst went (the rate refills it), and the budget did run out.
    assert retries > burst and failed, (retries, len(failed))
    env.note(f"retry budget {pct} %: {n} GETs, {to_b} sent to the dead server, "
             f"{retries} retried (at most {burst + pct * n // 100}), {len(failed)} failed")

    off = env.daemon(a, workers=1, stats=True, name="noretry", origin_cfg=pool_cfg(
        [a.url, b_url], retry=False, max_fails=1000, breaker=cw.Raw('{ failures = 10000; }')))
    a.reset()
    st = spread(off, 20, "n")
    assert off.metric("cachewarp_origin_retries_total", origin="api") == 0
    assert a.count_prefix("/n") == st.count(200), (a.count_prefix("/n"), st)
    assert st.count(200) == 10 and st.count(502) == 10, st
    dead.close()


def test_pool_non_idempotent_not_retried(env):
    a = env.origin("a")
    b = env.origin("b")
    d = env.daemon(a, workers=1, origin_cfg=pool_cfg([a.url, b.url], retry=True))
    port_a = a.port
    a.stop()
    # POSTs: each goes where the round robin says; those to the dead server fail, none
    # is sent twice.
    st = [d.request(f"/p{i}", method="POST", body=b"x").status for i in range(6)]
    assert st.count(502) >= 1 and st.count(200) >= 1, st
    assert b.method_count("POST") == st.count(200), st
    del port_a


def _make_certs(dirpath):
    ca = cw.make_ca(dirpath, "cw-test-ca")
    crt, key = cw.make_leaf(dirpath, "srv", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
                            cn="127.0.0.1")
    return ca[0], crt, key


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        cw.answer_plain(self, b"hello over tls\n")

    def log_message(self, *a):
        pass


def test_pool_https_origin_verified_by_ca_file(env):
    ca, crt, key = _make_certs(env.dir)
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Hello)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}"
    try:
        plain = env.origin()  # the daemon helper wants one; the route goes to the TLS server
        ok = env.daemon(plain, workers=1, name="ok", origin_cfg={"url": url, "ca_file": ca})
        r = ok.get("/tls")
        assert r.status == 200 and r.body == b"hello over tls\n", r
        bad = env.daemon(plain, workers=1, name="bad", origin_cfg={"url": url})
        r = bad.get("/tls")
        assert r.status == 502, r
        log = open(bad.log_path, encoding="utf-8", errors="replace").read()
        assert "certificate" in log.lower(), log[-2000:]
        off = env.daemon(plain, workers=1, name="off", origin_cfg={"url": url,
                                                                   "tls_verify": False})
        assert off.get("/tls").status == 200
    finally:
        srv.shutdown()
        srv.server_close()


def test_pool_config_errors_name_the_setting(env):
    o = env.origin()
    for bad, what in ((["http://127.0.0.1:1/x"], "is not a server"),
                      (["http://127.0.0.1:1 weight=0"], "weight must be 1 to 100"),
                      (["http://127.0.0.1:1 backup"], "every server is a backup")):
        path = cw.write_config(env.dir, name="bad.conf", port=cw.free_port(), origin_port=o.port,
                               origin={"servers": bad})
        rc, out, err = cw.run_daemon_cmd(["-t", "-c", path])
        # file:line: setting: why
        assert rc == 1 and re.search(r"bad\.conf:\d+: origins\[0\]\.servers", err), err
        assert what in err, err
