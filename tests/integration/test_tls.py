"""Origin TLS, timeouts, connection caps and the breaker's stale copies.

An https origin verified by a test CA made with openssl here (TLS sessions resumed across
connections, the sni and Host overrides seen by the origin), a wrong CA (502 and one log
line), an origin that requires a client certificate (mTLS), a first-byte timeout (504 in about
its time), a total timeout that cuts a flowing transfer, pooled connections closed after
idle_timeout, a per-server max_conns (a full server passed over; with a full queue, a fast
503) or a queue_timeout, and an open breaker that serves a copy past its stale-if-error window
up to breaker.max_stale, with Retry-After from the breaker's cooldown.

Everything runs on loopback: Python TLS servers and cw-test-origin processes as origins, one
cachewarpd in front.
"""

import http.server
import os
import re
import socketserver
import ssl
import threading
import time
import urllib.parse

import cw


def _certs(dirpath):
    ca = cw.make_ca(dirpath, "test-ca")
    other = cw.make_ca(dirpath, "other-ca")
    srv = cw.make_leaf(dirpath, "origin", ca,
                       "subjectAltName=IP:127.0.0.1,DNS:origin.test\nextendedKeyUsage=serverAuth\n")
    cli = cw.make_leaf(dirpath, "cachewarp-client", ca, "extendedKeyUsage=clientAuth\n")
    return {"ca": ca[0], "other": other[0], "srv": srv, "cli": cli}


class _TlsOrigin:
    """A TLS origin: one HTTP/1.0 answer per connection (so each request is a new connection
    and a new handshake), recording what each request showed: the SNI, the Host field,
    whether the TLS session was resumed, and the client certificate's CN."""

    def __init__(self, certs, client_ca=None):
        self.seen = []
        self.lock = threading.Lock()
        origin = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*certs["srv"])
        self.snis = []

        def on_sni(sock, name, c):
            with origin.lock:
                origin.snis.append(name)

        ctx.sni_callback = on_sni
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                peer = self.request.getpeercert() or {}
                cn = dict(x[0] for x in peer.get("subject", ())).get("commonName")
                with origin.lock:
                    origin.seen.append({"host": self.headers.get("Host"),
                                        "reused": self.request.session_reused,
                                        "cn": cn, "path": self.path})
                cw.answer_plain(self, b"hello over tls\n")

            def log_message(self, *a):
                pass

        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def _log(d):
    return open(d.log_path, encoding="utf-8", errors="replace").read()


def test_tls_origin_sni_host_and_session_reuse(env):
    certs = _certs(env.dir)
    o = _TlsOrigin(certs)
    try:
        plain = env.origin()  # the daemon helper wants one; the route goes to the TLS server
        d = env.daemon(plain, workers=1, origin_cfg={
            "url": o.url, "ca_file": certs["ca"], "sni": "origin.test", "host": "api.example"})
        for i in range(6):
            r = d.get(f"/tls{i}")
            assert r.status == 200 and r.body == b"hello over tls\n", r
        assert len(o.seen) == 6, o.seen
        # The sni is what the origin saw in the handshake (and the name verified: the URL is
        # an IP); the Host field is the host setting's.
        assert o.snis and all(n == "origin.test" for n in o.snis), o.snis
        assert all(s["host"] == "api.example" for s in o.seen), o.seen
        # Every answer closes its connection: each later request is a new handshake, and
        # resumes the session an earlier one left in the shared cache.
        reused = sum(1 for s in o.seen[1:] if s["reused"])
        env.note(f"TLS sessions resumed on {reused} of 5 new connections")
        assert reused >= 4, o.seen
    finally:
        o.stop()


def test_tls_wrong_ca_is_502_and_one_log_line(env):
    certs = _certs(env.dir)
    o = _TlsOrigin(certs)
    try:
        plain = env.origin()
        # breaker.failures above the requests sent: every one reaches the handshake.
        d = env.daemon(plain, workers=1, origin_cfg={
            "url": o.url, "ca_file": certs["other"],
            "breaker": cw.Raw('{ failures = 20; }')})
        for i in range(6):
            r = d.get(f"/w{i}")
            assert r.status == 502, r
            assert b"TLS" in r.body and "detail=origin-tls" in r.header("cache-status"), r
        log = _log(d)
        lines = [ln for ln in log.splitlines() if "TLS handshake failed" in ln]
        assert len(lines) == 1, log[-3000:]
        assert "origin api" in lines[0] and f"server {o.url}" in lines[0], lines
        assert "certificate" in lines[0].lower(), lines
        env.note(f"wrong CA: 6 x 502, one log line: {lines[0][:160]}")
    finally:
        o.stop()


def test_tls_client_certificate(env):
    certs = _certs(env.dir)
    o = _TlsOrigin(certs, client_ca=certs["ca"])
    try:
        plain = env.origin()
        bare = env.daemon(plain, workers=1, name="bare", origin_cfg={
            "url": o.url, "ca_file": certs["ca"]})
        r = bare.get("/m")
        assert r.status == 502, r
        crt, key = certs["cli"]
        mtls = env.daemon(plain, workers=1, name="mtls", origin_cfg={
            "url": o.url, "ca_file": certs["ca"], "tls_cert": crt, "tls_key": key})
        r = mtls.get("/m")
        assert r.status == 200 and r.body == b"hello over tls\n", r
        assert o.seen[-1]["cn"] == "cachewarp-client", o.seen
    finally:
        o.stop()
    # An unreadable file is a config error at load, naming file, line and setting.
    missing = os.path.join(env.dir, "missing.pem")
    path = cw.write_config(env.dir, name="bad.conf", port=cw.free_port(),
                           origin_port=plain.port,
                           origin={"url": "https://127.0.0.1:1", "tls_cert": missing})
    rc, out, err = cw.run_daemon_cmd(["-t", "-c", path])
    assert rc == 1 and re.search(r"bad\.conf:\d+: origins\[0\]\.tls_cert: .*missing\.pem.*"
                                 r"cannot read", err), err


def test_first_byte_timeout_is_504(env):
    o = env.origin()
    d = env.daemon(o, workers=1, origin_cfg={"timeout": "10s", "first_byte_timeout": "400ms",
                                             "breaker": cw.Raw('{ failures = 20; }')})
    lat = []
    for i in range(3):
        r = d.get(f"/slow{i}?delay_ms=5000")
        assert r.status == 504, r
        lat.append(r.elapsed)
    env.note("first_byte_timeout 400ms: 504 after " +
             ", ".join(f"{x * 1000:.0f}" for x in lat) + " ms")
    assert min(lat) >= 0.35 and max(lat) < 2.5 * cw.TIME_FACTOR, lat
    # A fast origin is not affected.
    assert d.get("/quick").status == 200


def test_server_max_conns_and_full_queue_fail_fast(env):
    o = env.origin()
    d = env.daemon(o, workers=1, origin_cfg={
        "url": None, "servers": [f"{o.url} max_conns=2"], "queue": 2,
        "breaker": cw.Raw('{ failures = 100; }')})
    slow = []
    threads = [threading.Thread(target=lambda i=i: slow.append(
        d.get(f"/busy{i}?delay_ms=2500", timeout=20).status)) for i in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    time.sleep(0.5)  # 2 running on the server, 2 waiting in the queue
    lat, codes = [], []
    for i in range(20):
        r = d.get(f"/extra{i}")
        codes.append(r.status)
        lat.append(r.elapsed)
    for t in threads:
        t.join()
    assert sorted(slow) == [200] * 4, slow
    assert codes == [503] * 20, codes
    p50, mx = cw.percentile(lat, 50), max(lat)
    env.note(f"server at max_conns=2, queue=2 full: 503 in p50 {p50 * 1000:.2f} ms, "
             f"max {mx * 1000:.2f} ms")
    assert mx < 0.5 * cw.TIME_FACTOR, lat
    assert o.count_prefix("/extra") == 0
    log = _log(d)
    assert log.count("every connection busy") == 1, log[-2000:]


def test_queue_timeout_is_503(env):
    o = env.origin()
    d = env.daemon(o, workers=1, origin_cfg={
        "max_conns": 1, "queue": 8, "queue_timeout": "400ms",
        "breaker": cw.Raw('{ failures = 100; }')})
    t = threading.Thread(target=lambda: d.get("/hold?delay_ms=2000", timeout=20))
    t.start()
    time.sleep(0.3)
    r = d.get("/queued")
    t.join()
    assert r.status == 503 and r.header("retry-after") == "1", r
    env.note(f"queue_timeout 400ms: 503 after {r.elapsed * 1000:.0f} ms")
    assert 0.35 <= r.elapsed < 1.8 * cw.TIME_FACTOR, r.elapsed


def test_breaker_open_serves_stale_past_sie_within_max_stale(env):
    o = env.origin()
    d = env.daemon(o, workers=1, route={"sie": "0s", "swr": "0s"}, origin_cfg={
        "breaker": cw.Raw('{ failures = 2; window = "10s"; cooldown = "30s"; '
                          'max_stale = "1h"; }')})
    cc = urllib.parse.quote("max-age=1", safe="")
    assert d.get(f"/keep?cc={cc}").status == 200
    t_stored = time.monotonic()
    o.stop()  # connections refused from here
    time.sleep(1.2)  # the copy is stale, and past its (zero) stale-if-error window
    for i in range(2):
        assert d.get(f"/down{i}").status == 502
    # Open: a request without a copy fails fast, told to come back when the cooldown ends.
    r = d.get("/nocopy")
    assert r.status == 503, r
    ra = int(r.header("retry-after"))
    assert 20 <= ra <= 30, r
    # One with a copy past stale-if-error gets it, saying why.
    r = d.get(f"/keep?cc={cc}")
    assert r.status == 200 and r.header("x-cache") == "STALE-ERROR", r
    assert "fwd=stale" in r.header("cache-status") and \
        "detail=breaker-open" in r.header("cache-status"), r
    env.note(f"breaker open: Retry-After {ra} (cooldown 30s); stale copy: "
             f"{r.header('cache-status')}")
    # The refresher's sweep of expired entries (every 10 s) keeps it for max_stale.
    time.sleep(max(0.0, 11.5 - (time.monotonic() - t_stored)))
    r = d.get(f"/keep?cc={cc}")
    assert r.status == 200 and "detail=breaker-open" in r.header("cache-status"), r


def test_total_timeout_cuts_a_flowing_transfer(env):
    from stream_origin import StreamOrigin

    o = StreamOrigin(env)
    d = env.daemon(o, workers=1, origin_cfg={"timeout": "10s", "total_timeout": "1s",
                                             "breaker": cw.Raw('{ failures = 20; }')})
    # 200 KB at 50 KB/s: 4 s of bytes that never pause long enough for timeout; total_timeout
    # ends it after 1 s (the head went out: the connection closes short of its length).
    t0 = time.monotonic()
    raw = cw.raw_request(d.port, b"GET /gen?size=200000&rate=50000 HTTP/1.1\r\n"
                                 b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n", timeout=20)
    took = time.monotonic() - t0
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) < 200000, len(body)
    env.note(f"total_timeout 1s: cut after {took * 1000:.0f} ms, {len(body)} of 200000 bytes")
    assert 0.9 <= took < 3.0 * cw.TIME_FACTOR, took
    log = _log(d)
    assert "total_timeout" in log, log[-2000:]


def test_idle_timeout_closes_pooled_connections(env):
    conns = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            conns.append(self.client_address)

        def do_GET(self):
            cw.answer_plain(self, b"ok\n")

        def log_message(self, *a):
            pass

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        plain = env.origin()
        d = env.daemon(plain, workers=1, origin_cfg={
            "url": f"http://127.0.0.1:{srv.server_address[1]}", "idle_timeout": "1s"})
        assert d.get("/i1").status == 200
        time.sleep(0.2)
        assert d.get("/i2").status == 200
        assert len(conns) == 1, conns  # reused while idle less than idle_timeout
        time.sleep(2.2)
        assert d.get("/i3").status == 200
        assert len(conns) == 2, conns  # idle past it: a new connection
    finally:
        srv.shutdown()
        srv.server_close()


def test_server_max_conns_passes_a_full_server_over(env):
    a = env.origin("a")
    b = env.origin("b")
    d = env.daemon(a, workers=1, origin_cfg={
        "url": None, "servers": [f"{a.url} max_conns=1", b.url]})
    out = []
    threads = [threading.Thread(target=lambda i=i: out.append(
        d.get(f"/c{i}?delay_ms=1500", timeout=20).status)) for i in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted(out) == [200] * 4, out
    # Round robin would give each two; a holds one connection at a time, so b takes the rest.
    assert (a.count_prefix("/c"), b.count_prefix("/c")) == (1, 3)
