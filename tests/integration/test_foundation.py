"""Foundation acceptance tests: the daemon's contract on the hit and miss paths, its
process model (workers, restarts, graceful stop) and its command line.

Contract under test: answers carry X-Cache (HIT|MISS|STALE|REVALIDATED|PASS|ERROR),
Cache-Status (RFC 9211), Age on cached answers and Via: 1.1 cachewarp; hop-by-hop request
headers never reach the origin; `cachewarpd -t -c FILE` exits 0 or 1 with
"FILE:LINE: setting: reason"; `--version` prints "cachewarpd <version>".
"""

import http.client
import json
import os
import re
import signal
import threading
import time

import cw


def xcache(r):
    return r.header("x-cache")


def assert_status(r, status, what):
    assert r.status == status, f"{what}: expected {status}, got {r}"


def parse_raw_response(raw):
    """(status, headers dict lower-case, bytes after the header block) of one raw answer."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete header block in {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers, rest


def start_thread(fn):
    out = {}

    def run():
        t0 = time.monotonic()
        try:
            out["r"] = fn()
        except Exception as e:  # noqa: BLE001 - inspected by the test
            out["e"] = e
        out["took"] = time.monotonic() - t0

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


# a. --------------------------------------------------------------------------------------
def test_miss_then_hit(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    path = "/a?cc=max-age%3D60"

    r1 = d.get(path)
    assert_status(r1, 200, "first GET")
    assert xcache(r1) == "MISS", f"first GET should be a MISS: {r1}"
    cs1 = r1.header("cache-status", "")
    assert cs1.startswith("CacheWarp") and "fwd=" in cs1, f"MISS Cache-Status: {r1}"
    assert "cachewarp" in r1.header("via", "").lower(), f"no Via: 1.1 cachewarp on MISS: {r1}"

    r2 = d.get(path)
    assert_status(r2, 200, "second GET")
    assert xcache(r2) == "HIT", f"second GET should be a HIT: {r2}"
    assert r2.header("age") is not None and r2.header("age").isdigit(), f"HIT without Age: {r2}"
    assert int(r2.header("age")) <= 60, f"Age beyond max-age on a fresh hit: {r2}"
    cs2 = r2.header("cache-status", "")
    assert cs2.startswith("CacheWarp") and "hit" in cs2, f"HIT Cache-Status: {r2}"
    assert "cachewarp" in r2.header("via", "").lower(), f"no Via: 1.1 cachewarp on HIT: {r2}"
    assert r2.body == r1.body, f"HIT body differs: {r1.body!r} vs {r2.body!r}"
    assert o.count(path) == 1, f"origin saw {o.count(path)} requests for {path}, want 1"


def test_keepalive_requests_keep_their_own_keys(env):
    """One worker, one keep-alive connection: each request is built in the memory (and key
    buffer) the one before it left (workers/req.c), and is keyed on its own URL and keyed
    field only. A short key after a long one that begins the same way, and a short keyed
    value after a long one, are each their own entry, a MISS then a HIT with their own body."""
    o = env.origin()
    d = env.daemon(o, workers=1, route={"key_headers": ["X-Tenant"]})
    long_path = "/ka-key?cc=max-age%3D60&pad=" + "p" * 3000
    short_path = "/ka-key?cc=max-age%3D60"
    asks = [(long_path, "tenant-with-a-long-name"), (short_path, "tenant-with-a-long-name"),
            (short_path, "tenant"), (short_path, "t")]
    c = http.client.HTTPConnection(cw.LOOPBACK, d.port, timeout=10)
    first = {}
    try:
        for rnd in range(3):
            for path, tenant in asks:
                c.request("GET", path, headers={"X-Tenant": tenant})
                r = c.getresponse()
                body = r.read()
                assert r.status == 200, (path[:40], tenant, r.status, body[:200])
                want = "MISS" if rnd == 0 else "HIT"
                assert r.getheader("X-Cache") == want, (rnd, path[:40], tenant, r.getheaders())
                got = json.loads(body)
                assert got["path"] == "/ka-key", got
                if rnd == 0:
                    first[(path, tenant)] = got["n"]
                assert got["n"] == first[(path, tenant)], (rnd, path[:40], tenant, got, first)
    finally:
        c.close()
    # Four entries, each filled once: the two URLs, and the short one under three values.
    assert sorted(first.values()) == [1, 1, 2, 3], first
    assert o.count(long_path) == 1 and o.count(short_path) == 3


# b. --------------------------------------------------------------------------------------
def test_one_origin_request_for_many_clients(env):
    """100 clients on 4 workers ask for one COLD key at once while the origin takes 1 s:
    the origin sees one request, one client gets the MISS, the other 99 wait for its fill
    (coalesced HITs with the same body). Then 400 more requests are plain HITs."""
    o = env.origin()
    d = env.daemon(o, workers=4)
    delay = 1.0
    path = f"/many?delay_ms={int(delay * 1000)}&cc=max-age%3D300"
    n = 100

    # Connected before the start line and written from one thread within milliseconds,
    # far inside the origin's 1 s: every request arrives while the first fetch runs.
    socks = cw.connect_many(d.port, n)
    batch = cw.send_all(socks, [cw.request_bytes(d.port, path)] * n)
    results = cw.collect(batch, timeout=30)
    spread = batch.sent[-1] - batch.release
    assert spread < delay / 2, f"sending took {spread:.2f}s: the burst did not overlap the fetch"
    errors = [x for x in results if isinstance(x, Exception)]
    assert not errors, f"{len(errors)} of {n} requests failed, e.g. {errors[0]!r}"
    assert o.count(path) == 1, \
        f"origin saw {o.count(path)} requests for {n} clients on a cold key, want 1"
    kinds = {}
    for x in results:
        kinds[(x.status, xcache(x))] = kinds.get((x.status, xcache(x)), 0) + 1
    assert kinds == {(200, "MISS"): 1, (200, "HIT"): n - 1}, \
        f"want one 200 MISS and {n - 1} coalesced 200 HITs, got {kinds}"
    assert len({x.body for x in results}) == 1, "clients of one fetch got different bodies"
    first = results[0]

    results = cw.concurrent(lambda i: d.get(path), 400, 32)
    errors = [x for x in results if isinstance(x, Exception)]
    assert not errors, f"{len(errors)} of 400 requests raised, e.g. {errors[0]!r}"
    bad = [x for x in results if x.status != 200 or xcache(x) != "HIT"]
    assert not bad, f"{len(bad)} of 400 answers were not 200 HIT, e.g. {bad[0]}"
    assert all(x.body == first.body for x in results), "a HIT body differs from the stored one"
    assert o.count(path) == 1, f"origin saw {o.count(path)} requests for {path}, want 1"
    env.note(f"cold burst of {n}: {kinds}; max hit latency "
             f"{max(x.elapsed for x in results) * 1000:.1f} ms")


# c. --------------------------------------------------------------------------------------
def test_killed_worker_is_replaced(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    before = cw.wait_for(lambda: sorted(d.workers()) if len(d.workers()) == 2 else None, 5,
                         what="2 cw-worker children")
    path = "/k?cc=max-age%3D600"
    assert_status(d.get(path), 200, "priming GET")

    # A sequential client runs across the kill: it has at most one request in flight, so at
    # most one request (the one on the killed worker) may be lost. No retries.
    stop = threading.Event()
    log = []

    def client():
        while not stop.is_set():
            try:
                log.append(d.get(path, timeout=5).status)
            except Exception as e:  # noqa: BLE001
                log.append(repr(e))

    th = threading.Thread(target=client, daemon=True)
    th.start()
    cw.wait_for(lambda: len(log) >= 20, 5, interval=0.005, what="20 requests before the kill")

    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    t_kill = time.monotonic()
    new = cw.wait_for(lambda: [p for p in d.workers() if p not in before], 5, interval=0.01,
                      what="a new cw-worker after SIGKILL")
    took = time.monotonic() - t_kill
    n_at_replace = len(log)
    cw.wait_for(lambda: len(log) >= n_at_replace + 20, 5, interval=0.005,
                what="20 requests after the replacement")
    stop.set()
    th.join(10)
    # Only the killed worker was replaced: the other one kept running, and there is exactly
    # one new worker in its place (not a restart of both, not an extra one).
    now = d.workers()
    assert victim not in now, f"killed worker {victim} still listed"
    assert len(new) == 1 and sorted(now) == sorted([before[1], new[0]]), \
        f"workers before {before}, killed {victim}, now {now}: want {before[1]} and one new"

    failed = [x for x in log if x != 200]
    assert len(failed) <= 1, f"{len(failed)} of {len(log)} requests failed across the kill: " \
        f"{failed[:5]}"

    results = cw.concurrent(lambda i: d.get(path, timeout=5), 200, 8)
    bad = [x for x in results if isinstance(x, Exception) or x.status != 200]
    assert not bad, f"{len(bad)} of 200 requests after the replacement failed, e.g. {bad[0]!r}"
    assert len(d.workers()) == 2, f"workers after replacement: {d.workers()}"
    env.note(f"replaced in {took * 1000:.0f} ms; {len(failed)} of {len(log)} lost across the kill")


# d. --------------------------------------------------------------------------------------
def test_slow_origin_does_not_delay_hits(env):
    o = env.origin()
    d = env.daemon(o, workers=1)
    fast = "/fast?cc=max-age%3D600"
    slow = "/slow?delay_ms=3000"
    assert_status(d.get(fast), 200, "priming GET")
    r = d.get(fast)
    assert xcache(r) == "HIT", f"second GET /fast should be a HIT: {r}"

    th, out = start_thread(lambda: d.get(slow, timeout=15))
    cw.wait_for(lambda: o.count(slow) == 1, 2, what="the slow request to reach the origin")

    lat = []
    for i in range(50):
        r = d.get(fast, timeout=5)
        assert_status(r, 200, f"hit {i}")
        assert xcache(r) == "HIT", f"hit {i} while the slow fetch runs: {r}"
        lat.append(r.elapsed)
    assert th.is_alive(), "the slow request ended before the 50 hits: the test proved nothing"
    worst = max(lat)
    env.note(f"max hit latency {worst * 1000:.1f} ms during a 3 s origin fetch")
    # Behaviour, not speed: no hit waited for the slow fetch (each came well under the
    # origin's 3 s; a hit queued behind the fetch would take the rest of it). The fine
    # figure is `make bench`'s.
    assert worst < 1.0, f"a hit took {worst * 1000:.0f} ms while a slow miss was in flight: " \
        f"it waited for the 3 s origin fetch"

    th.join(15)
    assert "e" not in out, f"slow request raised {out.get('e')!r}"
    rs = out["r"]
    assert_status(rs, 200, "slow request")
    assert xcache(rs) == "MISS", f"slow request: {rs}"
    assert out["took"] >= 2.9, f"slow request came back in {out['took']:.2f}s, before the origin"


# e. --------------------------------------------------------------------------------------
def test_sigterm_is_graceful(env):
    o = env.origin()
    grace = 5.0
    d = env.daemon(o, workers=2, overrides={"shutdown_grace": "5s"})
    path = "/inflight?delay_ms=1000&cc=no-store"
    th, out = start_thread(lambda: d.get(path, timeout=10))
    cw.wait_for(lambda: o.count(path) == 1, 2, what="the in-flight request to reach the origin")
    d.children()  # remember every process for the orphan check

    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait(grace + 3)
    took = time.monotonic() - t0
    th.join(10)
    assert rc == 0, f"cachewarpd exited with {rc} on SIGTERM"
    assert took < grace, f"stopping took {took:.1f}s, more than the {grace}s grace"
    assert "e" not in out, f"in-flight request failed across SIGTERM: {out.get('e')!r}"
    assert_status(out["r"], 200, "in-flight request across SIGTERM")
    assert not cw.port_accepts(d.port), "the listen port still accepts after exit"
    d.check_no_orphans()
    env.note(f"stopped in {took:.2f}s")


# f. --------------------------------------------------------------------------------------
def test_pass_through_and_hop_by_hop(env):
    o = env.origin()
    d = env.daemon(o, workers=2)

    r = d.request("/p", method="POST", body=b"hello=world",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_status(r, 200, "POST /p")
    assert xcache(r) == "PASS", f"POST should be PASS: {r}"
    assert o.method_count("POST") == 1, f"origin methods: {o.stats()['methods']}"
    assert r.json().get("received") == 11, f"origin did not get the 11-byte body: {r}"

    path = "/hop?cc=no-store"
    r = d.get(path, headers={
        "Connection": "X-Secret",
        "X-Secret": "1",
        "Keep-Alive": "5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Upgrade": "example/1",
        "X-End-To-End": "kept",
    })
    assert_status(r, 200, "GET with hop-by-hop headers")
    assert o.count(path) == 1, "the GET did not reach the origin"
    seen = o.stats()["last_headers"]
    assert seen.get("x-end-to-end") == "kept", f"end-to-end header lost: {seen}"
    leaked = [h for h in ("x-secret", "keep-alive", "te", "proxy-authorization", "upgrade")
              if h in seen]
    assert not leaked, f"hop-by-hop headers reached the origin: {leaked} in {seen}"
    assert "via" in seen and "cachewarp" in seen["via"].lower(), f"no Via to origin: {seen}"


# g. --------------------------------------------------------------------------------------
def test_no_store_private_and_route_ttl(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    for cc in ("no-store", "private"):
        path = f"/ns?cc={cc}"
        r1, r2 = d.get(path), d.get(path)
        assert_status(r1, 200, path)
        assert_status(r2, 200, path)
        assert xcache(r2) != "HIT", f"{cc} answer served from cache: {r2}"
        assert o.count(path) == 2, f"{cc}: origin saw {o.count(path)} requests, want 2"

    path = "/plain"
    r1, r2 = d.get(path), d.get(path)
    assert xcache(r1) == "MISS", f"first GET /plain: {r1}"
    assert xcache(r2) == "HIT", f"route ttl should cache a response without freshness: {r2}"
    assert o.count(path) == 1, f"/plain: origin saw {o.count(path)} requests, want 1"


# h. --------------------------------------------------------------------------------------
def test_config_check_and_version(env):
    good = env.config(name="good.conf")
    rc, out, err = cw.run_daemon_cmd(["-t", "-c", good])
    assert rc == 0, f"-t on a good config exited {rc}: {err or out}"

    bad = env.config(name="bad.conf", route={"ttl": "3x"})
    rc, out, err = cw.run_daemon_cmd(["-t", "-c", bad])
    assert rc == 1, f"-t on ttl=\"3x\" exited {rc}, want 1; stderr: {err!r}"
    m = re.search(r"\.conf:(\d+): routes\[0\]\.ttl", err)
    assert m, f"stderr lacks FILE:LINE: routes[0].ttl: {err!r}"
    with open(bad) as f:
        want = next(i for i, line in enumerate(f, 1) if line.startswith("routes"))
    assert int(m.group(1)) == want, f"error names line {m.group(1)}, routes is on line {want}"

    rc, out, err = cw.run_daemon_cmd(["--version"])
    assert rc == 0, f"--version exited {rc}: {err}"
    assert re.match(r"cachewarpd \S+", out.strip() or err.strip()), f"--version said {out!r}"


# i. --------------------------------------------------------------------------------------
def test_head_404_and_500(env):
    o = env.origin()
    d = env.daemon(o, workers=2)

    path = "/hd?cc=max-age%3D60"
    r = d.get(path)
    assert xcache(r) == "MISS" and len(r.body) > 0, f"GET {path}: {r}"
    # Raw bytes, so that a body after a HEAD answer would be seen. Host as http.client
    # sends it (with the port): the cache key may include the Host.
    host = f"127.0.0.1:{d.port}"
    raw = cw.raw_request(
        d.port, f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    status, headers, rest = parse_raw_response(raw)
    assert status == 200, f"HEAD: {raw[:300]!r}"
    assert headers.get("x-cache") == "HIT", \
        f"HEAD after GET should be a HIT (origin saw {o.count(path)} requests for " \
        f"{path}, {o.method_count('HEAD')} HEAD): {headers}"
    assert rest == b"", f"HEAD answer carried {len(rest)} body bytes: {rest[:80]!r}"
    assert o.count(path) == 1, f"origin saw {o.count(path)} requests for {path}, want 1"

    path = "/nf?status=404"
    r1, r2 = d.get(path), d.get(path)
    assert r1.status == 404 and r2.status == 404, f"{r1} / {r2}"
    assert xcache(r2) == "HIT", f"a 404 without freshness should be cached per route ttl: {r2}"
    assert o.count(path) == 1, f"origin saw {o.count(path)} requests for {path}, want 1"

    path = "/err?status=500"
    r1, r2 = d.get(path), d.get(path)
    assert r1.status == 500 and r2.status == 500, f"{r1} / {r2}"
    assert xcache(r2) != "HIT", f"a 500 was served from cache: {r2}"
    assert o.count(path) == 2, f"origin saw {o.count(path)} requests for {path}, want 2"
