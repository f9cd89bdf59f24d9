"""Ready answers (workers/req_ready.h): a worker keeps the response it built for a fresh hit
and queues it again for the next hits on the same entry, while the answer would be the same.

Contract under test: an answer is kept for a key hit often for it (its SEEN-th build for the
same answer, then each rebuild of an answer that served as many hits); a kept answer is byte
for byte what a fresh build gives (the same fields once each, the same body); Age and
Cache-Status ttl move with the clock; a purge and a refill, a precondition, a range, HEAD, a
collapsed waiter and a drain each get the answer their own request calls for, never another
request's; and the kept answers are used (`cachewarp_ready_hits_total`), so the tests above
exercise them.
"""

import os
import signal
import socket
import threading
import time

import cw

HOT = "/ready?size=1024&cc=max-age%3D3600"
# A key's answer is kept once it was built this often for one answer (READY_SEEN in
# workers/req_ready.c): hot keys are, a key hit a few times a second is not.
SEEN = 8


def make_ready(d, path):
    """Hits path until a kept answer serves one (at most 3 x SEEN hits)."""
    before = d.metric("cachewarp_ready_hits_total")
    for _ in range(3 * SEEN):
        d.get(path)
        if d.metric("cachewarp_ready_hits_total") > before:
            return
    raise AssertionError(f"no kept answer for {path} after {3 * SEEN} hits")


def raw_get(d, path):
    """(status line, [(name lower-case, value)] with repeats, body) of one GET."""
    s = socket.create_connection((cw.LOOPBACK, d.port), timeout=10)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n\r\n".encode())
        status, lines, body = _read_answer(s)
    finally:
        s.close()
    return status, lines, body


def fields(lines):
    return sorted(k for k, _ in lines)


def test_ready_answer_reused_byte_for_byte(env):
    o = env.origin()
    d = env.daemon(o, workers=1, stats=True)
    r0 = d.get(HOT)
    assert r0.status == 200 and r0.header("x-cache") == "MISS", r0
    make_ready(d, HOT)
    used0 = d.metric("cachewarp_ready_hits_total")
    hits0 = d.metric("cachewarp_requests_total", result="hit")
    hits = [raw_get(d, HOT) for _ in range(30)]
    for status, lines, body in hits:
        h = dict(lines)
        assert " 200 " in status + " " and h.get("x-cache") == "HIT", (status, lines)
        assert body == r0.body, "a kept answer's body differs from the origin's"
        assert h.get("content-length") == "1024", lines
        # Every field once: Via, Age and Cache-Status are not added again to a kept answer.
        names = fields(lines)
        for once in ("via", "age", "cache-status", "x-cache", "content-length", "date",
                     "cache-control", "content-type"):
            assert names.count(once) == 1, f"{once} x{names.count(once)}: {lines}"
        assert h["via"] == "1.1 cachewarp", lines
    # Within one second (same Age and ttl), the answers are the same fields and values.
    same = [lines for _, lines, _ in hits
            if dict(lines)["age"] == dict(hits[0][1])["age"]
            and dict(lines)["cache-status"] == dict(hits[0][1])["cache-status"]]
    assert len(same) >= 2 and all(sorted(x) == sorted(same[0]) for x in same), same
    used = d.metric("cachewarp_ready_hits_total") - used0
    # The answer is kept; every hit reuses it (one rebuild per second crossed).
    assert used >= 30 - 1 - 5, f"only {used} of 30 hits used the kept answer"
    assert d.metric("cachewarp_requests_total", result="hit") - hits0 == 30


def test_ready_age_and_ttl_move_with_the_clock(env):
    o = env.origin()
    d = env.daemon(o, workers=1, stats=True)
    d.get(HOT)
    a = d.get(HOT)
    b = d.get(HOT)
    assert a.header("age") == b.header("age"), (a, b)
    # A kept answer that served another hit: a key keeps one only once it was built SEEN
    # times for the same answer (req_ready_admit()).
    make_ready(d, HOT)
    assert d.metric("cachewarp_ready_hits_total") >= 1
    time.sleep(1.1)
    c = d.get(HOT)
    assert c.header("x-cache") == "HIT", c
    assert int(c.header("age")) >= int(a.header("age")) + 1, (a, c)
    ttl = lambda r: int(r.header("cache-status").split("ttl=")[1].split(";")[0])  # noqa: E731
    assert ttl(c) <= ttl(a) - 1, (a.header("cache-status"), c.header("cache-status"))
    assert c.body == a.body
    # Age and ttl= tick over at different instants (from the response time and from the end
    # of freshness): one pair of back-to-back hits may straddle a ttl tick, two hardly.
    e = d.get(HOT)
    assert e.body == a.body
    assert d.metric("cachewarp_ready_hits_total") >= 1


def test_ready_answer_never_outlives_its_entry(env):
    o = env.origin()
    d = env.daemon(o, workers=1, stats=True)
    # change_ms: the body's letter follows the origin's content version.
    path = "/ready-purge?size=64&cc=max-age%3D3600&change_ms=400"
    first = d.get(path).body
    for _ in range(SEEN + 4):
        assert d.get(path).body == first
    assert d.metric("cachewarp_ready_hits_total") >= 3
    for _ in range(3):
        assert d.request(path, method="PURGE").status == 200
        time.sleep(0.45)  # the next fill gets the next version
        m = d.get(path)
        assert m.header("x-cache") == "MISS" and m.body != first, (m, first)
        for _ in range(5):
            h = d.get(path)
            assert h.header("x-cache") == "HIT" and h.body == m.body, (h, m)
        first = m.body


def test_ready_answer_not_used_for_conditional_range_or_head(env):
    o = env.origin()
    d = env.daemon(o, workers=1, stats=True)
    path = "/ready-cond?size=100&cc=max-age%3D3600&etag=r1"
    full = d.get(path)
    make_ready(d, path)
    before = d.metric("cachewarp_ready_hits_total")
    assert before >= 1
    r = d.get(path, headers={"If-None-Match": '"r1"'})
    assert r.status == 304 and r.body == b"", r
    r = d.get(path, headers={"Range": "bytes=0-9"})
    assert r.status == 206 and r.body == full.body[:10], r
    assert r.header("content-range") == "bytes 0-9/100", r
    r = d.request(path, method="HEAD")
    assert r.status == 200 and r.body == b"" and r.header("content-length") == "100", r
    r = d.get(path)
    assert r.status == 200 and r.body == full.body and r.header("content-range") is None, r
    r = d.get(path, headers={"If-None-Match": '"other"'})
    assert r.status == 200 and r.body == full.body, r


def test_ready_collapsed_waiters_and_later_hits_say_what_they_are(env):
    o = env.origin()
    d = env.daemon(o, workers=1, stats=True)
    path = "/ready-burst?size=256&cc=max-age%3D3600&delay_ms=300"
    rs = cw.concurrent(lambda i: d.get(path), 12, 12)
    assert all(r.status == 200 and r.body == rs[0].body for r in rs), rs
    waiters = [r for r in rs if r.header("x-cache") == "HIT"]
    assert waiters and all("collapsed" in r.header("cache-status") for r in waiters), \
        [r.header("cache-status") for r in rs]
    assert o.count(path) == 1
    for _ in range(3):
        r = d.get(path)
        assert r.header("x-cache") == "HIT" and "collapsed" not in r.header("cache-status"), r


def _read_answer(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"connection closed before a whole head: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fl = [(k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
    n = int(dict(fl).get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        assert chunk, "connection closed before the whole body"
        rest += chunk
    return lines[0], fl, rest[:n]


def test_ready_answer_closes_while_draining(env):
    """A keep-alive client asking for a hot entry while its worker drains is told to go
    (Connection: close), though the entry's answer was kept ready before the drain."""
    o = env.origin()
    d = env.daemon(o, workers=1, overrides={"shutdown_grace": "10s"})
    d.get(HOT)
    req = f"GET {HOT} HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n\r\n".encode()
    s = socket.create_connection((cw.LOOPBACK, d.port), timeout=10)
    try:
        for _ in range(SEEN + 2):
            s.sendall(req)
            status, fl, _ = _read_answer(s)
            hdrs = dict(fl)
            assert " 200 " in status + " " and hdrs.get("x-cache") == "HIT", (status, hdrs)
            assert "close" not in hdrs.get("connection", "").lower(), hdrs
        # A slow miss in flight keeps the worker draining for about 2 s.
        slow = threading.Thread(target=lambda: d.get("/ready-slow?delay_ms=2000", timeout=15),
                                daemon=True)
        slow.start()
        time.sleep(0.3)
        os.kill(d.pid, signal.SIGTERM)
        time.sleep(0.4)
        s.sendall(req)
        status, fl, body = _read_answer(s)
        hdrs = dict(fl)
        assert hdrs.get("x-cache") == "HIT" and len(body) == 1024, (status, hdrs)
        assert hdrs.get("connection", "").lower() == "close", \
            f"a hit while draining kept its connection: {hdrs}"
        slow.join(15)
    finally:
        s.close()
