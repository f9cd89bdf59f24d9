"""Acceptance tests of issue 5: the refresher process, request coalescing on LMDB leases,
stale-while-revalidate, stale-if-error and the adaptive TTL, through the real daemon.

Contract under test (docs: DESIGN.md "The request path", docs/ADAPTIVE_TTL.md):
- a miss takes the key's FETCH lease; every other request for the key waits for that fill
  (woken by an event, a futex, within microseconds of it) and is answered from L1: one
  origin request per stampede, whatever the number of clients and workers; no fill's
  wake-up is lost, however it races the waiter;
- a waiter whose lease owner dies is served within lock_timeout plus one fetch;
- a stale entry inside stale-while-revalidate is answered at once (X-Cache: STALE) and
  refreshed once in the background, however many hits ask;
- a hot key is refreshed ahead of its expiry (route refresh_ahead) and never goes stale;
- an origin failure (refused, timeout, 5xx) with a stale copy inside stale-if-error answers
  it (X-Cache: STALE-ERROR); past the window the client gets a short, clear error;
- with `adaptive = true`, a key's TTL follows what revalidations see, within
  [min_ttl, max_ttl]: a changing key stays short, an unchanging one grows.

Latencies are measured from one thread that writes every request on connections opened
beforehand and reads the answers with select (cw.connect_many/send_all/collect), so thread
start-up and the GIL do not pollute the figures.
"""

import http.client
import os
import re
import signal
import time
import urllib.parse

import cw


def xcache(r):
    return r.header("x-cache")


def q(value):
    """A query-string value, percent-encoded (e.g. a Cache-Control for the test origin)."""
    return urllib.parse.quote(value, safe="")


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def tally(results):
    """{X-Cache value (or exception type): count} of a list of answers."""
    out = {}
    for r in results:
        k = type(r).__name__ if isinstance(r, Exception) else f"{r.status} {xcache(r)}"
        out[k] = out.get(k, 0) + 1
    return out


def cs_param(r, name):
    """An integer parameter of the Cache-Status header (e.g. ttl), or None."""
    m = re.search(rf";\s*{name}=(-?\d+)", r.header("cache-status", ""))
    return int(m.group(1)) if m else None


class Client:
    """One keep-alive connection (http.client), reopened when the server closes it."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def get(self, path):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(cw.LOOPBACK, self.port,
                                                       timeout=self.timeout)
            t0 = time.monotonic()
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed between requests: once more on a
                # new one (the request never reached a handler).
                self.close()
                if attempt:
                    raise
                continue
            h = {}
            for k, v in resp.getheaders():
                k = k.lower()
                h[k] = f"{h[k]}, {v}" if k in h else v
            if resp.will_close:
                self.close()
            return cw.Response(resp.status, h, body, time.monotonic() - t0)
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# 1. --------------------------------------------------------------------------------------
def test_stampede_one_origin_request(env):
    """200 clients on one cold key, origin 500 ms: one origin request, one body, and every
    waiter woken by the fill: answered well before lock_timeout (5 s) would have let it
    fetch on its own. (The fine figure, waiters' p99 past the origin time, is in the note
    and in `make bench`; it is not asserted, CI runs on a shared 2-core machine.)

    Latency runs from the release (just before the first request is written) to the kernel's
    receive timestamp of each answer's last bytes; the test reads nothing until the answers
    are due, so its own CPU use does not slow the two workers on a 2-core machine. The
    daemon answers one request on another key first: the key is cold, the process is not."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    assert d.get("/warm-up").status == 200
    delay = 0.5
    path = f"/stampede?delay_ms={int(delay * 1000)}&cc={q('max-age=60')}"

    socks = cw.connect_many(d.port, 200)
    # Both workers have accepted every connection before the start line (read from /proc).
    cw.socket_owners(socks, d.port, d.workers(), timeout=5)
    batch = cw.send_all(socks, [cw.request_bytes(d.port, path)] * len(socks))
    results = cw.collect(batch, timeout=10, settle=delay + 0.3)

    errors = [x for x in results if isinstance(x, Exception)]
    assert not errors, f"{len(errors)} of 200 requests failed, e.g. {errors[0]!r}"
    bad = [x for x in results if x.status != 200]
    assert not bad, f"{len(bad)} of 200 answers were not 200, e.g. {bad[0]}"
    n_origin = o.count(path)
    assert n_origin == 1, f"origin saw {n_origin} requests for one cold key, want 1 " \
        f"(answers: {tally(results)})"
    bodies = {x.body for x in results}
    assert len(bodies) == 1, f"{len(bodies)} different bodies among 200 answers: " \
        f"{[b[:80] for b in bodies]}"

    owner = [x for x in results if xcache(x) == "MISS"]
    waiters = [x for x in results if xcache(x) != "MISS"]
    assert len(owner) == 1, f"want one MISS (the lease owner), got {tally(results)}"
    lat = [x.since_release for x in waiters]
    p50, p99, worst = cw.percentile(lat, 50), cw.percentile(lat, 99), max(lat)
    over = p99 - delay
    env.note(f"origin requests 1/200; owner (MISS) {ms(owner[0].since_release)}; waiters "
             f"p50 {ms(p50)} p99 {ms(p99)} max {ms(worst)}: p99 {ms(over)} over the origin's "
             f"{ms(delay)}, {ms(p99 - owner[0].since_release)} after the owner's answer; "
             f"send spread {ms(batch.sent[-1] - batch.release)}; {tally(results)}")
    assert all("collapsed" in x.header("cache-status", "") for x in waiters), \
        f"a waiter was not answered from the owner's fill: {tally(results)}"
    assert worst < delay + 2.0, f"slowest waiter {ms(worst)}, want < {ms(delay + 2.0)}: " \
        f"waiters are woken by the fill, not by lock_timeout (5 s); the owner was answered " \
        f"at {ms(owner[0].since_release)}"


# 2. --------------------------------------------------------------------------------------
def test_killed_lease_owner_waiters_served(env):
    """SIGKILL the worker that holds a key's FETCH lease mid-fetch: the 20 requests waiting
    in the other worker are answered within lock_timeout + one fetch, and the origin sees
    at most one more request.

    Which worker serves a connection is read from /proc (cw.socket_owners): request A goes
    on a connection of one worker, the waiters on connections of the other, all opened
    beforehand."""
    o = env.origin()
    lock_timeout, fetch = 2.0, 1.0
    d = env.daemon(o, workers=2, route={"lock_timeout": "2s"}, stats=True)
    workers = cw.wait_for(lambda: d.workers() if len(d.workers()) == 2 else None, 5,
                          what="2 workers")
    path = f"/owner?delay_ms={int(fetch * 1000)}&cc={q('max-age=60')}"
    req = cw.request_bytes(d.port, path)

    by_worker = {p: [] for p in workers}
    a, keep = [], []
    try:
        for _ in range(10):
            socks = cw.connect_many(d.port, 40)
            for s, pid in zip(socks, cw.socket_owners(socks, d.port, workers)):
                by_worker[pid].append(s)
            if min(len(v) for v in by_worker.values()) >= 1 and \
                    max(len(v) for v in by_worker.values()) >= 21:
                break
        spread = {p: len(v) for p, v in by_worker.items()}
        other = max(workers, key=lambda p: len(by_worker[p]))  # the waiters' worker
        owner = next(p for p in workers if p != other)  # A's, killed
        assert by_worker[owner] and len(by_worker[other]) >= 21, \
            f"could not get connections on both workers: {spread}"
        a = [by_worker[owner].pop()]
        keep = by_worker[other][:20]
    finally:
        used = {id(s) for s in a + keep}  # close every connection the test will not use
        for v in by_worker.values():
            for s in v:
                if id(s) not in used:
                    s.close()

    a_batch = cw.send_all(a, [req])
    cw.wait_for(lambda: o.count(path) == 1, 2, interval=0.005,
                what="request A to reach the origin (its worker holds the lease)")
    batch = cw.send_all(keep, [req] * len(keep))
    # The waiters find the lease and suspend: each is counted as coalesced.
    d.wait_metric("cachewarp_coalesced_requests_total", lambda v: v >= len(keep), 0.5)
    assert o.count(path) == 1, f"a waiter went to the origin while the owner was alive: " \
        f"{o.count(path)} requests"
    t_kill = time.monotonic()
    assert t_kill - a_batch.release < fetch - 0.3, \
        f"too late to kill mid-fetch ({t_kill - a_batch.release:.2f}s after A)"
    os.kill(owner, signal.SIGKILL)

    results = cw.collect(batch, timeout=lock_timeout + fetch + 3)
    a_result = cw.collect(a_batch, timeout=1)[0]
    errors = [x for x in results if isinstance(x, Exception)]
    assert not errors, f"{len(errors)} of 20 waiters failed, e.g. {errors[0]!r}; " \
        f"{tally(results)}"
    bad = [x for x in results if x.status != 200]
    assert not bad, f"{len(bad)} of 20 waiters were not answered 200, e.g. {bad[0]}"
    assert isinstance(a_result, Exception), \
        f"request A was answered although its worker was killed mid-fetch: {a_result}"
    n_origin = o.count(path)
    after_kill = [x.done_at - t_kill for x in results]
    lat = [x.elapsed for x in results]
    bound = lock_timeout + fetch + 1.0
    env.note(f"waiters answered {ms(min(after_kill))}..{ms(max(after_kill))} after the kill "
             f"({t_kill - a_batch.release:.2f}s into A's fetch), max latency {ms(max(lat))} "
             f"(bound {bound:.0f} s); origin requests {n_origin}; {tally(results)}; "
             f"connections per worker {spread}")
    assert max(lat) < bound, f"a waiter took {max(lat):.2f}s, want < {bound:.0f}s " \
        f"(lock_timeout {lock_timeout:.0f}s + one {fetch:.0f}s fetch + 1s)"
    assert n_origin <= 2, f"origin saw {n_origin} requests for the key, want at most 2 " \
        f"(A's and one re-fetch); answers: {tally(results)}"
    assert len({x.body for x in results}) == 1, "waiters got different bodies"


# 2b. -------------------------------------------------------------------------------------
def test_coalesced_wakeup_never_lost(env):
    """Fills racing the waiters' look-then-sleep: 30 rounds, each on a new key with an origin
    delay of 0-15 ms, 12 clients in two groups (the second sent a random 0-18 ms after the
    first, so some arrive as the fill lands: between their lookup and their watch, or their
    look and their sleep). Every request is answered well before lock_timeout (3 s), which is
    what a lost wake-up would cost; one origin request per key. The note gives how long the
    waiters took past the owner's answer (not asserted: a shared 2-core machine)."""
    import random

    rnd = random.Random(15)
    o = env.origin()
    lock_timeout = 3.0
    d = env.daemon(o, workers=2, route={"lock_timeout": "3s"})
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    assert d.get("/warm-up").status == 200
    past_owner, worst = [], 0.0
    for i in range(30):
        delay_ms = rnd.randint(0, 15)
        path = f"/race-{i}?delay_ms={delay_ms}&cc={q('max-age=60')}"
        socks = cw.connect_many(d.port, 12)
        req = cw.request_bytes(d.port, path)
        first = cw.send_all(socks[:6], [req] * 6)
        time.sleep(rnd.uniform(0, (delay_ms + 3) / 1000.0))
        second = cw.send_all(socks[6:], [req] * 6)
        results = cw.collect(first, timeout=lock_timeout + 2) + \
            cw.collect(second, timeout=lock_timeout + 2)
        errors = [x for x in results if isinstance(x, Exception) or x.status != 200]
        assert not errors, f"round {i}: {len(errors)} of 12 failed, e.g. {errors[0]!r}"
        slow = max(x.elapsed for x in results)
        worst = max(worst, slow)
        assert slow < lock_timeout / 2, f"round {i} (origin {delay_ms} ms): a request took " \
            f"{ms(slow)}: its waiter slept through the fill until the lock_timeout or an " \
            f"owner check; answers {tally(results)}"
        n_origin = o.count(path)
        assert n_origin == 1, f"round {i}: origin saw {n_origin} requests, want 1 " \
            f"({tally(results)})"
        owner = [x for x in results if xcache(x) == "MISS"]
        if owner:
            t_own = owner[0].done_at
            past_owner += [x.done_at - t_own for x in results
                           if "collapsed" in x.header("cache-status", "")]
    env.note(f"30 rounds, slowest request {ms(worst)}; collapsed waiters past the owner's "
             f"answer: n {len(past_owner)} p50 {ms(cw.percentile(past_owner, 50))} p99 "
             f"{ms(cw.percentile(past_owner, 99))}")


# 3. --------------------------------------------------------------------------------------
def test_swr_answers_at_once_one_refresh(env):
    """A stale entry inside stale-while-revalidate answers 50 concurrent requests at once
    (X-Cache: STALE) while one background refresh takes 2 s at the origin: no STALE answer
    waits for the origin (each comes well under its 2 s; the fine latency figures are in
    the note and in `make bench`, not asserted on a shared 2-core machine).

    max-age=3, not 1: RFC 9111 §4.2.3 counts the response delay in the initial age
    (corrected_age_value = age_value + response_delay), so a response that took 2 s with
    max-age=1 is stale on arrival, and so would be every refreshed copy: no request could
    ever see the refresh land as a HIT. With max-age=3 each copy is fresh for about 1 s."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    path = f"/swr?delay_ms=2000&cc={q('max-age=3, stale-while-revalidate=30')}"

    r1 = d.get(path)
    t_fill = time.monotonic()
    assert r1.status == 200 and xcache(r1) == "MISS", f"first GET: {r1}"
    r2 = d.get(path)
    assert xcache(r2) == "HIT", f"GET right after the fill: {r2}"
    time.sleep(max(0.0, t_fill + 1.3 - time.monotonic()))  # fresh for 3 - 2 s, then stale
    before = o.count(path)
    assert before == 1, f"origin saw {before} requests before the stale burst, want 1"

    results = cw.burst(d.port, [path] * 50, timeout=5, settle=0.1)
    t_burst = time.monotonic()
    errors = [x for x in results if isinstance(x, Exception)]
    assert not errors, f"{len(errors)} of 50 stale requests failed, e.g. {errors[0]!r}"
    not_stale = [x for x in results if x.status != 200 or xcache(x) != "STALE"]
    assert not not_stale, f"{len(not_stale)} of 50 answers were not 200 STALE " \
        f"({tally(results)}), e.g. {not_stale[0]}"
    assert all(x.body == r1.body for x in results), "a STALE answer differs from the stored body"
    lat = [x.elapsed for x in results]
    p50, p99, worst = cw.percentile(lat, 50), cw.percentile(lat, 99), max(lat)

    # The refresh lands ~2 s later: then the key is a HIT with the new body.
    hit = None
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        r = d.get(path)
        if xcache(r) == "HIT":
            hit = r
            break
        assert xcache(r) == "STALE", f"while the refresh runs: {r}"
        time.sleep(0.05)
    landed = time.monotonic() - t_burst
    n_refresh = o.count(path) - before
    env.note(f"STALE p50 {ms(p50)} p99 {ms(p99)} max {ms(worst)} (50 concurrent); "
             f"refreshes {n_refresh}; HIT again {landed:.2f}s after the burst")
    assert hit is not None, f"no HIT within 6 s of the burst: the refresh never landed " \
        f"(origin saw {n_refresh} refreshes)"
    assert hit.body != r1.body, f"HIT after the refresh still has the first body: {hit}"
    assert n_refresh == 1, f"origin saw {n_refresh} refreshes for 50 stale hits, want 1"
    assert landed >= 1.5, f"the refresh landed {landed:.2f}s after the burst, before the " \
        f"2 s origin delay: the STALE answers did not wait for nothing"
    # Not waiting for the 2 s refresh: every answer well under half of it.
    assert worst < 1.0, f"slowest STALE answer {ms(worst)}: it waited for the 2 s refresh"


# 4. --------------------------------------------------------------------------------------
def test_refresh_ahead_keeps_key_hit(env):
    """A key read 50 times a second with a 2 s TTL is refreshed before it expires: after
    the first MISS, every answer for 10 s is a HIT. refresh_ahead = 0.5 asks for the refresh
    1 s before expiry, so a refresher delayed by a loaded machine still has 1 s to land it
    (the default 0.1 leaves 200 ms: a timing bound, not a behaviour)."""
    o = env.origin()
    d = env.daemon(o, workers=2, route={"refresh_ahead": 0.5})
    path = f"/hot?cc={q('max-age=2')}"
    c = Client(d.port)
    counts = {}
    bad = []
    seconds, rate = 10.0, 50
    try:
        first = c.get(path)
        assert first.status == 200 and xcache(first) == "MISS", f"first GET: {first}"
        t0 = time.monotonic()
        n = int(seconds * rate)
        for i in range(n):
            wait = t0 + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            r = c.get(path)
            k = xcache(r) if r.status == 200 else f"{r.status} {xcache(r)}"
            counts[k] = counts.get(k, 0) + 1
            if k != "HIT" and len(bad) < 5:
                bad.append((round(time.monotonic() - t0, 2), r))
        took = time.monotonic() - t0
    finally:
        c.close()
    total = sum(counts.values())
    hits = counts.get("HIT", 0)
    refreshes = o.count(path) - 1
    env.note(f"{hits}/{total} HIT ({100.0 * hits / total:.1f} %) over {took:.1f}s at "
             f"{rate}/s; {counts}; origin refreshes {refreshes}")
    assert hits == total, f"{total - hits} of {total} answers after the first MISS were not " \
        f"HIT: {counts}; first ones (s after start, answer): {bad}"
    # A refresh each 1..2 s over 10 s (more with Date truncation), never one per hit (500).
    assert 3 <= refreshes <= 25, f"origin saw {refreshes} refreshes in {took:.0f}s"


# 5. --------------------------------------------------------------------------------------
def test_stale_if_error(env):
    """An origin failure with a stale copy inside stale-if-error answers the copy (200,
    X-Cache: STALE-ERROR); past the window, a short clear error. For the origin answering
    503, hanging past the origin timeout, and refusing connections."""
    o = env.origin()
    d = env.daemon(o, workers=2, route={"sie": "60s"}, origin_cfg={"timeout": "1s"})
    modes = ("503", "hang", "refused")
    # The origin's Age: 5 makes each copy 4 s stale on arrival: inside the route's 60 s
    # stale-if-error, past the response's own stale-if-error=1. Nothing sleeps.
    age = q("Age:5")
    inside = {m: f"/sie-{m}?hdr={age}&cc={q('max-age=1')}" for m in modes}
    past = {m: f"/sie-past-{m}?hdr={age}&cc={q('max-age=1, stale-if-error=1')}" for m in modes}
    stored = {}
    for p in list(inside.values()) + list(past.values()):
        r = d.get(p)
        assert r.status == 200 and xcache(r) == "MISS", f"priming {p}: {r}"
        stored[p] = r.body

    seen = []

    def check(mode, expect_past):
        r = d.get(inside[mode], timeout=10)
        seen.append(f"{mode}: {r.status} {xcache(r)} in {ms(r.elapsed)}")
        assert r.status == 200 and xcache(r) == "STALE-ERROR", \
            f"origin {mode}, stale copy inside stale-if-error=60s: want 200 STALE-ERROR, got {r}"
        assert r.body == stored[inside[mode]], f"origin {mode}: STALE-ERROR body differs: {r}"
        r = d.get(past[mode], timeout=10)
        seen.append(f"{mode} past window: {r.status} {xcache(r)} {r.body[:40]!r}")
        assert r.status in expect_past, \
            f"origin {mode}, stale copy past stale-if-error=1: want {expect_past}, got {r}"
        assert xcache(r) != "STALE-ERROR" and r.body != stored[past[mode]], \
            f"origin {mode}: a copy past its stale-if-error window was served: {r}"
        assert 0 < len(r.body) <= 200 and b"origin" in r.body.lower(), \
            f"origin {mode}: the error body should be short and say what failed: {r.body!r}"
        return r

    o.mode("503")
    check("503", (502, 503, 504))
    o.mode("hang")
    r = check("hang", (502, 504))
    assert r.elapsed < 3.0, f"origin hanging with timeout 1s: the error took {r.elapsed:.1f}s"
    o.mode("normal")
    o.stop()
    check("refused", (502, 503))
    env.note("; ".join(seen))


# 6. --------------------------------------------------------------------------------------
def test_adaptive_ttl_diverges(env):
    """adaptive = true, ttl 2s in [1s, 30s]: a key that changes every 2 s keeps a TTL of at
    most ~2 s, one that never changes grows its TTL toward max_ttl. The TTL in force is read
    from the answers: Age + Cache-Status ttl (remaining freshness) on HIT and REVALIDATED,
    both in whole seconds, so it is known to within 2 s; the origin's request counts
    confirm it."""
    o = env.origin()
    min_ttl, max_ttl, ttl = 1, 30, 2
    d = env.daemon(o, workers=2, route={
        "adaptive": True, "min_ttl": f"{min_ttl}s", "max_ttl": f"{max_ttl}s",
        "ttl": f"{ttl}s", "swr": "0s",
        # Keeps an entry whose refresh lags on a loaded machine out of the refresher's sweep
        # of entries past every window (that would restart its learning); served only on
        # origin errors, which this test has none of.
        "sie": "1m"})
    keys = {"a": "/a?change_ms=2000", "b": "/b?etag=fixed"}
    seen = {k: [] for k in keys}  # (seconds since start, lifetime estimate)
    remaining = {k: [] for k in keys}
    debug_ttl = {k: [] for k in keys}
    counts = {k: {} for k in keys}
    c = Client(d.port)
    seconds, period = 20.0, 0.05
    try:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            wait = t0 + i * period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            k = "a" if i % 2 == 0 else "b"
            i += 1
            r = c.get(keys[k])
            assert r.status == 200, f"GET {keys[k]}: {r}"
            x = xcache(r)
            counts[k][x] = counts[k].get(x, 0) + 1
            for name in ("x-cache-ttl", "x-cachewarp-ttl", "x-ttl"):
                if r.header(name):
                    debug_ttl[k].append(r.header(name))
            rem = cs_param(r, "ttl")
            age = r.header("age")
            if x in ("HIT", "REVALIDATED") and rem is not None and age and age.isdigit():
                remaining[k].append(rem)
                seen[k].append((time.monotonic() - t0, int(age) + rem))
        took = time.monotonic() - t0
    finally:
        c.close()
    n_origin = {k: o.count(p) for k, p in keys.items()}
    life = {k: [v for _, v in seen[k]] for k in keys}
    top = {k: max(life[k]) if life[k] else None for k in keys}
    late_b = [v for t, v in seen["b"] if t >= seconds / 2]
    over_a = [(round(t, 1), v) for t, v in seen["a"] if v > ttl]
    env.note(f"{took:.0f}s; TTL estimate (Age + ttl, s) a max {top['a']} "
             f"(over {ttl}s at {over_a[:3]}) b max {top['b']} "
             f"(b in the second half: {min(late_b) if late_b else None}..{max(late_b) if late_b else None}); "
             f"max ttl= a {max(remaining['a'], default=None)} b {max(remaining['b'], default=None)}; "
             f"origin requests a {n_origin['a']} b {n_origin['b']}; answers a {counts['a']} "
             f"b {counts['b']}"
             + (f"; debug ttl a {debug_ttl['a'][-3:]} b {debug_ttl['b'][-3:]}"
                if debug_ttl["a"] or debug_ttl["b"] else ""))

    assert life["a"] and life["b"], f"no HIT with Cache-Status ttl= for a key: {counts}"
    assert all(-1 <= v <= max_ttl for k in keys for v in life[k]), \
        f"a TTL outside [{min_ttl}, {max_ttl}] s: {life}"
    # Until a first change is on record an unchanged check doubles the TTL (the documented
    # prior), so key a may reach 2 x ttl once early; once learnt it stays at or under ttl.
    late_a = [(round(t, 1), v) for t, v in seen["a"] if t >= seconds / 2]
    assert top["a"] <= 2 * ttl, f"key a changes every 2 s but its TTL reached {top['a']} s " \
        f"(want <= {2 * ttl} s): {[(round(t, 1), v) for t, v in seen['a'] if v > ttl][:10]}"
    # Learnt, key a's TTL falls below the route's ttl (the fixed TTL it would have without
    # adaptive) to min_ttl: a 2 s change period allows ~0.1 s at a 5 % stale target. Read
    # from answers in whole seconds, a 1 s TTL shows as 1 (2 at a second's edge), so most of
    # the second half shows min_ttl; a moment of a longer TTL (a check that saw "unchanged"
    # while the machine was loaded) is allowed, a TTL that never came down is not.
    at_min = [v for _, v in late_a if v <= min_ttl]
    assert late_a and len(at_min) >= 0.8 * len(late_a), \
        f"key a changes every 2 s but in the second half its TTL was over min_ttl " \
        f"{min_ttl} s in {len(late_a) - len(at_min)} of {len(late_a)} answers (route ttl " \
        f"{ttl} s: adaptive TTL not learnt?): {[x for x in late_a if x[1] > min_ttl][:10]}"
    # And the origin saw it: about one fetch per min_ttl, where the route's fixed ttl would
    # make one per ttl (half as many).
    assert n_origin["a"] >= 0.7 * took / min_ttl, \
        f"key a fetched {n_origin['a']} times in {took:.0f}s: its TTL did not come down to " \
        f"min_ttl ({min_ttl}s); the route's ttl ({ttl}s) would give about {took / ttl:.0f}"
    assert top["b"] > top["a"], f"key b never changes but its TTL ({top['b']} s) did not grow " \
        f"above key a's ({top['a']} s): adaptive TTL not applied? {seen['b'][-10:]}"
    assert top["b"] >= 4 * ttl, f"key b never changes: its TTL should double per unchanged " \
        f"check toward {max_ttl} s, reached only {top['b']} s in {took:.0f}s"
    assert max(remaining["b"]) <= max_ttl, f"key b's remaining ttl over max_ttl: {remaining['b']}"
    # The origin sees the same: key a at most about once per min_ttl, key b a few times.
    assert n_origin["a"] <= took / min_ttl + 3, \
        f"key a fetched {n_origin['a']} times in {took:.0f}s: more often than once per " \
        f"min_ttl ({min_ttl}s). If the TTL in force is {min_ttl}s, the freshness left on " \
        f"arrival is shorter: the initial age counts the origin's 1-second Date"
    assert n_origin["b"] < n_origin["a"], \
        f"key b was fetched {n_origin['b']} times, key a {n_origin['a']}: b's TTL should be longer"


# 7. --------------------------------------------------------------------------------------
def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


def test_refresher_idle_costs_no_cpu(env):
    """With nothing to refresh, the refresher sleeps: over 3 s idle it may use at most 2
    clock ticks (20 ms) of CPU. A busy-polling loop would use far more."""
    o = env.origin()
    d = env.daemon(o, workers=1)
    assert d.get(f"/idle?cc={q('max-age=600')}").status == 200
    cw.wait_for(lambda: len(d.named("cw-refresher")) == 1, 5, what="the refresher")
    pid = d.named("cw-refresher")[0]
    time.sleep(0.5)
    before = cpu_ticks(pid)
    time.sleep(3.0)
    used = cpu_ticks(pid) - before
    env.note(f"refresher CPU over 3 s idle: {used} ticks")
    assert used <= 2, f"the idle refresher used {used} clock ticks in 3 s"


# 8. --------------------------------------------------------------------------------------
def test_swr_refresh_sends_the_stored_variant(env):
    """A background refresh of a Vary'd entry sends the origin the request the entry was
    filled for: the Vary field (Accept-Language) and the route's key header (X-Tenant) with
    the values the origin was sent then, byte for byte (two spaces inside the value: the key
    string folds them to one, so a refresher that read the key back would send another
    value), and the same Host. Each variant is refreshed with its own values and keeps its
    own body: the refresh of one never lands in the other."""
    o = env.origin()
    d = env.daemon(o, workers=2, route={"key_headers": ["X-Tenant"]})
    path = f"/variant?vary=Accept-Language&cc={q('max-age=1, stale-while-revalidate=30')}"
    fr = {"Accept-Language": "fr-CH,  fr;q=0.9", "X-Tenant": "t1"}
    en = {"Accept-Language": "en", "X-Tenant": "t1"}

    r_fr = d.get(path, headers=fr)
    assert r_fr.status == 200 and xcache(r_fr) == "MISS", f"first fr GET: {r_fr}"
    sent_fr = o.stats()["last_headers"]
    assert sent_fr.get("accept-language") == fr["Accept-Language"], sent_fr
    r_en = d.get(path, headers=en)
    assert r_en.status == 200 and xcache(r_en) == "MISS", f"first en GET: {r_en}"
    assert r_en.body != r_fr.body, "the origin gave both variants one body: the test proves nothing"
    assert o.count(path) == 2

    # Hits on fr as it nears expiry and goes stale: refreshed in the background (ahead of
    # expiry, or inside stale-while-revalidate), never fetched in the foreground, and never
    # answered with en's body.
    def refreshed_fr():
        r = d.get(path, headers=fr)
        assert r.status == 200 and xcache(r) in ("HIT", "STALE"), f"fr: {r}"
        assert r.body != r_en.body, f"fr answered with en's body: {r}"
        return o.count(path) >= 3
    cw.wait_for(refreshed_fr, 6, interval=0.05, what="the background refresh of fr")
    seen = o.stats()["last_headers"]
    env.note(f"refresh of fr sent accept-language={seen.get('accept-language')!r} "
             f"x-tenant={seen.get('x-tenant')!r} host={seen.get('host')!r}")
    assert seen.get("accept-language") == fr["Accept-Language"], \
        f"the refresh sent Accept-Language {seen.get('accept-language')!r}, the fill " \
        f"{fr['Accept-Language']!r}: {seen}"
    assert seen.get("x-tenant") == "t1", f"the refresh lost the route's key header: {seen}"
    assert seen.get("host") == sent_fr.get("host"), f"refresh Host {seen.get('host')!r}, " \
        f"fill Host {sent_fr.get('host')!r}"

    # The refresh landed in fr: a HIT that is not en's body; en is untouched.
    def hit_fr():
        r = d.get(path, headers=fr)
        return r if xcache(r) == "HIT" else None
    r = cw.wait_for(hit_fr, 5, interval=0.05, what="fr a HIT after its refresh")
    assert r.body != r_en.body, f"fr's refresh stored en's body: {r}"
    r = d.get(path, headers=en)
    assert r.body == r_en.body, f"en changed with fr's refresh: {r} (was {r_en.body})"

    # en, stale too by now, is refreshed with its own values.
    if xcache(r) == "STALE":
        cw.wait_for(lambda: o.count(path) >= 4, 5, what="the background refresh of en")
        seen = o.stats()["last_headers"]
        assert seen.get("accept-language") == "en" and seen.get("x-tenant") == "t1", seen
    assert o.count(path) <= 4, f"origin saw {o.count(path)} requests, want at most 4"
