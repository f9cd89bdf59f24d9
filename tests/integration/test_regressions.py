"""Regressions found by review: coalescing on a first Vary, shutdown with waiters and under
keep-alive load, invalidation of Vary variants, an unusable 304. Each test failed before its
fix (the shutdown ones under ASan, or with libmicrohttpd aborting)."""

import os
import signal
import subprocess
import threading
import time
import urllib.parse

import cw


def q(v):
    return urllib.parse.quote(v, safe="")


def bg(fn):
    out = {}
    def run():
        t0 = time.monotonic()
        try: out["r"] = fn()
        except Exception as e: out["e"] = e
        out["took"] = time.monotonic() - t0
    th = threading.Thread(target=run, daemon=True); th.start()
    return th, out

def test_review_first_vary_fill_wakes_waiters(env):
    o = env.origin()
    d = env.daemon(o, workers=1, route={"lock_timeout": "5s"})
    path = f"/vs?delay_ms=300&vary=Accept-Language&cc={q('max-age=60')}"
    h = {"Accept-Language": "en"}
    tha, a = bg(lambda: d.get(path, headers=h, timeout=20))
    cw.wait_for(lambda: o.count(path) == 1, 2, what="A at origin")
    thb, b = bg(lambda: d.get(path, headers=h, timeout=20))
    tha.join(20); thb.join(20)
    env.note(f"A {a.get('took'):.2f}s {a.get('r')!r}")
    env.note(f"B {b.get('took'):.2f}s {b.get('r')!r}")
    env.note(f"origin count {o.count(path)}")
    # Woken by the fill, not by lock_timeout (5 s): the bound is half of it.
    assert b["took"] < 2.5, f"waiter took {b['took']:.2f}s: woken by lock_timeout, not the fill"
    assert o.count(path) == 1, f"origin saw {o.count(path)} requests, want 1"
    assert "collapsed" in b["r"].header("cache-status", ""), f"B did not wait on A: {b['r']}"

def test_review_waiter_without_vary(env):
    """B asks for the key while A's fetch (no Vary) runs: B waits on A's lease and is
    answered from A's fill (one origin request, a collapsed HIT with A's body), woken by
    the fill rather than by lock_timeout."""
    o = env.origin()
    d = env.daemon(o, workers=1, route={"lock_timeout": "5s"}, stats=True)
    path = f"/nv?delay_ms=300&cc={q('max-age=60')}"
    tha, a = bg(lambda: d.get(path, timeout=20))
    cw.wait_for(lambda: o.count(path) == 1, 2, what="A at origin")
    thb, b = bg(lambda: d.get(path, timeout=20))
    tha.join(20); thb.join(20)
    env.note(f"B {b.get('took'):.2f}s {b.get('r')!r}")
    assert "r" in a and "r" in b, f"A {a!r} B {b!r}"
    assert o.count(path) == 1, f"origin saw {o.count(path)} requests: B fetched on its own"
    rb = b["r"]
    assert rb.status == 200 and rb.header("x-cache") == "HIT" and \
        "collapsed" in rb.header("cache-status", ""), f"B was not a collapsed HIT: {rb}"
    assert rb.body == a["r"].body, "B's body differs from A's fill"
    assert d.metric("cachewarp_coalesced_requests_total") == 1, "B was not counted as coalesced"
    assert b["took"] < 2.5, f"B took {b['took']:.2f}s: woken by lock_timeout, not the fill"

def test_review_shutdown_with_a_waiter(env):
    o = env.origin()
    d = env.daemon(o, workers=1, route={"lock_timeout": "30s"}, overrides={"shutdown_grace": "1s"},
                   stats=True)
    path = f"/sd?delay_ms=8000&cc={q('max-age=60')}"
    tha, a = bg(lambda: d.get(path, timeout=20))
    cw.wait_for(lambda: o.count(path) == 1, 2, what="A at origin")
    thb, b = bg(lambda: d.get(path, timeout=20))
    d.wait_metric("cachewarp_coalesced_requests_total", lambda v: v == 1, 5)  # B waits on A
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait(10)
    env.note(f"daemon rc={rc} in {time.monotonic()-t0:.2f}s")
    tha.join(20); thb.join(20)
    env.note(f"A {a.get('took')} {a.get('r')!r} {a.get('e')!r}")
    env.note(f"B {b.get('took')} {b.get('r')!r} {b.get('e')!r}")
    log = open(d.log_path, errors="replace").read()
    assert rc == 0, f"cachewarpd exited {rc}:\n{log[-2000:]}"
    assert "Fatal error" not in log and "AddressSanitizer" not in log, log[-3000:]
    assert "r" in b and b["r"].status == 503, f"the waiter should get 503: {b}"

def test_review_shutdown_under_keepalive_load(env):
    import http.client

    o = env.origin()
    d = env.daemon(o, workers=1, overrides={"shutdown_grace": "300ms"})
    stop = threading.Event()
    stats = {"ok": 0, "err": 0}
    def client(i):
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection(cw.LOOPBACK, d.port, timeout=5)
                while not stop.is_set():
                    c.request("GET", f"/ka{i}?delay_ms=1", headers={"Cache-Control": "no-store"})
                    r = c.getresponse(); r.read(); stats["ok"] += 1
            except Exception:
                stats["err"] += 1
                time.sleep(0.01)
    ths = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
    for t in ths: t.start()
    # Under load: every client has had answers on its keep-alive connection.
    cw.wait_for(lambda: stats["ok"] >= 200, 10, what="200 keep-alive answers before SIGTERM")
    d.signal(signal.SIGTERM)
    rc = d.wait(10)
    stop.set()
    for t in ths: t.join(5)
    env.note(f"rc={rc} {stats}")
    log = open(d.log_path, errors="replace").read()
    assert rc == 0, f"cachewarpd exited {rc}:\n{log[-2000:]}"
    assert "ERROR: AddressSanitizer" not in log and "Fatal error" not in log, log[-3000:]

def test_review_post_invalidates_vary_variants(env):
    o = env.origin()
    d = env.daemon(o, workers=1)
    p = f"/iv?vary=Accept-Language&cc={q('max-age=600')}"
    en, fr = {"Accept-Language": "en"}, {"Accept-Language": "fr"}
    r1 = d.get(p, headers=en); r2 = d.get(p, headers=fr)
    r3 = d.get(p, headers=fr)
    env.note(f"before: {r1.header('x-cache')} {r2.header('x-cache')} {r3.header('x-cache')}")
    rp = d.request(p, method="POST", body=b"x")
    env.note(f"POST {rp.status} {rp.header('x-cache')}")
    a = d.get(p, headers=en)
    b = d.get(p, headers=fr)
    env.note(f"after POST: en {a.header('x-cache')} {a.body!r}; fr {b.header('x-cache')} {b.body!r}")
    assert b.header("x-cache") != "HIT", "fr variant survived the POST invalidation"

def test_review_head_pass_content_length(env):
    o = env.origin()
    d = env.daemon(o, workers=1)
    for path, hdrs in (("/hp?size=1000", {"Cache-Control": "no-store"}), ("/hp2?size=1000", {})):
        raw = cw.raw_request(d.port, cw.request_bytes(d.port, path, method="HEAD", headers=hdrs))
        head = raw.decode("latin-1").lower()
        assert "content-length: 1000" in head, f"HEAD {path} {hdrs}: {head}"

def test_review_unusable_304_is_refetched(env):
    """A stale entry is revalidated and the origin's 304 says no-store, so it cannot freshen
    the entry: the proxy refetches without validators and answers the full 200. (The route
    keys on k only and forwards only k, so the origin's answer is set by X-Origin-Args; the
    origin's Age makes r1 stale on arrival.)"""
    o = env.origin()
    d = env.daemon(o, workers=1, route={"query": ["k"]})
    p = "/r3?k=1"
    r1 = d.get(p, headers={"X-Origin-Args": f"etag=abc&hdr={q('Age:5')}&cc={q('max-age=1')}"})
    assert r1.status == 200 and r1.header("x-cache") == "MISS", r1
    r2 = d.get(p, headers={"X-Origin-Args": f"etag=abc&cc={q('no-store')}"})
    env.note(f"r2 {r2!r}")
    st = o.stats()
    assert r2.status == 200 and r2.body, r2
    assert o.count(p) == 3, f"origin saw {o.count(p) - 1} requests for r2, want 2 " \
        f"(the conditional GET answered 304, then the refetch): {st}"
    assert st["conditional"] == 1, f"want exactly one conditional request: {st}"
    last = st["last_headers"]
    assert "if-none-match" not in last and "if-modified-since" not in last, \
        f"the refetch after an unusable 304 must carry no validators: {last}"
    assert b'"n":3' in r2.body, f"r2 is not the refetched body: {r2}"


def test_review_repeated_vary_field_is_joined(env):
    """A Vary-nominated field sent on two lines keys the variant by both values joined (as
    an origin that combines them answers), so a client sending only the first value does
    not get that answer."""
    o = env.origin()
    d = env.daemon(o, workers=1)
    path = f"/jv?vary=Accept-Language&cc={q('max-age=600')}"
    host = f"{cw.LOOPBACK}:{d.port}"
    prime = d.get(path, headers={"Accept-Language": "de"})  # records the Vary
    assert prime.status == 200, prime
    two = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Language: en\r\n"
           f"Accept-Language: fr\r\nConnection: close\r\n\r\n").encode()
    raw = cw.raw_request(d.port, two).decode("latin-1")
    assert raw.startswith("HTTP/1.1 200"), raw[:200]
    one = d.get(path, headers={"Accept-Language": "en"})
    assert one.header("x-cache") == "MISS", \
        f"a client sending only 'en' got the answer stored for 'en, fr': {one}"

def test_review_lease_takeover_kept_by_token(env):
    """Leases belong to the request that took them, not to its process (issue 11). One
    worker; the route's lock_timeout (1.2 s) is shorter than A's origin delay (2 s). B asks
    for the same key after A's lease expired, takes the lease over and fetches (0.9 s). A
    ends first with an answer it may not store: its release must not drop B's lease. C then
    asks while B's fetch runs: it must wait for B's fill (a collapsed HIT with B's body),
    not fetch, so the origin sees A and B only. The route keys on and forwards only k, so
    the three requests share one key and A and B set their answers by X-Origin-Args.
    Before the fix A's release (by pid) deleted B's lease and left a hit-for-miss record,
    so C fetched a third time."""
    o = env.origin()
    d = env.daemon(o, workers=1, route={"lock_timeout": "1200ms", "query": ["k"]})
    p = "/lt?k=1"
    ha = {"X-Origin-Args": f"delay_ms=2000&cc={q('no-store')}"}
    hb = {"X-Origin-Args": f"delay_ms=900&cc={q('max-age=60')}"}
    tha, a = bg(lambda: d.get(p, headers=ha, timeout=20))
    cw.wait_for(lambda: o.count(p) == 1, 2, what="A at origin")
    time.sleep(1.5)  # A's lease (1.2 s) has expired; its fetch runs until ~2.0 s
    thb, b = bg(lambda: d.get(p, headers=hb, timeout=20))
    cw.wait_for(lambda: o.count(p) == 2, 2, what="B at origin")
    tha.join(20)
    # C's window: A answered (~2.0 s), B's fetch runs until ~2.4 s, its lease lasts to ~2.7 s.
    assert "r" in a and thb.is_alive(), f"timing: A {a!r}, B still fetching {thb.is_alive()}"
    thc, c = bg(lambda: d.get(p, timeout=20))
    thb.join(20); thc.join(20)
    env.note(f"A {a.get('took'):.2f}s {a.get('r')!r}")
    env.note(f"B {b.get('took'):.2f}s {b.get('r')!r}")
    env.note(f"C {c.get('took'):.2f}s {c.get('r')!r}")
    assert "r" in b and "r" in c, f"B {b!r} C {c!r}"
    assert a["r"].status == 200 and b["r"].status == 200, f"A {a['r']!r} B {b['r']!r}"
    assert o.count(p) == 2, f"origin saw {o.count(p)} requests for the key, want 2 (A and B)"
    rc = c["r"]
    assert rc.status == 200 and "collapsed" in rc.header("cache-status", ""), \
        f"C did not wait for B's fill: {rc!r} {rc.header('cache-status')}"
    assert rc.body == b["r"].body and b'"n":2' in rc.body, f"C's body is not B's: {rc.body!r}"


def proc_state(pid):
    """The state letter of /proc/<pid>/stat ('T' stopped), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_review_hits_never_wait_on_write_lock(env):
    """Hits never wait on the LMDB write lock (issue 11). Two workers; a helper process
    (cw-test-lockhold) opens the cache file, begins a write txn and stops itself with
    SIGSTOP, as a process stopped inside a write would. While it holds the lock, misses (each
    needs a lease: a write) keep arriving, and a stale-while-revalidate key asks for refreshes
    (a write before the fix); warm keys must still be answered at once by both workers: every
    hit under 500 ms, the median under 50 ms (bounds for a loaded 2-core machine). After
    SIGCONT the helper ends its txn, the misses complete and everything goes on. Before the
    fix a miss or a refresh request took the write txn on the MHD thread, which waited on the
    lock in futex_wait: hits in that worker stalled until the helper went."""
    tf = cw.TIME_FACTOR
    o = env.origin()
    d = env.daemon(o, workers=2, route={"lock_timeout": "20s"})
    warm = [f"/wl/hit{i}?cc={q('max-age=300')}" for i in range(8)]
    swr = f"/wl/swr?cc={q('max-age=1, stale-while-revalidate=300')}"
    for p in warm + [swr]:
        r = d.get(p)
        assert r.status == 200 and r.header("x-cache") == "MISS", f"warming {p}: {r}"
    for p in warm:
        r = d.get(p)
        assert r.header("x-cache") == "HIT", f"warm key is not a HIT: {r}"
    time.sleep(1.2)  # swr is stale now: its hits ask for a background refresh
    holder = subprocess.Popen([cw.binary("cw-test-lockhold"), os.path.join(env.dir, "l1.mdb")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    misses = []
    lat, stalls, wrong = [], [], []
    try:
        line = holder.stdout.readline().decode()
        assert line.startswith("held"), f"lock holder: {line!r} {holder.stderr.read()!r}"
        cw.wait_for(lambda: proc_state(holder.pid) == "T", 5, what="the lock holder stopped")
        n_miss = 0
        def miss():
            nonlocal n_miss
            n_miss += 1
            misses.append(bg(lambda i=n_miss: d.get(f"/wl/miss{i}?cc={q('max-age=60')}",
                                                     timeout=60 * tf)))
        for _ in range(6):
            miss()
        time.sleep(0.2)
        t_end = time.monotonic() + 2.0 * tf
        next_miss = time.monotonic() + 0.1
        i = 0
        while time.monotonic() < t_end:
            p = swr if i % 4 == 0 else warm[i % len(warm)]
            if time.monotonic() >= next_miss:  # a new miss every 100 ms
                miss()
                next_miss += 0.1
            i += 1
            t0 = time.monotonic()
            try:
                r = d.get(p, timeout=3 * tf)
            except Exception as e:  # noqa: BLE001 - a stall is what this test looks for
                stalls.append((p, repr(e)))
                lat.append(time.monotonic() - t0)
                continue
            lat.append(time.monotonic() - t0)
            if r.status != 200 or r.header("x-cache") not in ("HIT", "STALE"):
                wrong.append(r)
        held_misses = sum(1 for th, out in misses if "r" in out)
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
        try:
            holder.wait(10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(5)
    for th, out in misses:
        th.join(60 * tf)
    lat.sort()
    median, worst = lat[len(lat) // 2], lat[-1]
    env.note(f"{len(lat)} hits while the lock was held: median {median * 1000:.1f} ms, max "
             f"{worst * 1000:.1f} ms; {len(stalls)} timed out; {held_misses} of {len(misses)} "
             f"misses answered while held")
    assert holder.returncode == 0, f"lock holder exited {holder.returncode}"
    assert not stalls, f"{len(stalls)} hits timed out while the lock was held, e.g. {stalls[0]}"
    assert not wrong, f"{len(wrong)} answers were not HIT or STALE, e.g. {wrong[0]}"
    assert worst < 0.5 * tf, f"slowest hit {worst * 1000:.0f} ms while the lock was held"
    assert median < 0.05 * tf, f"median hit {median * 1000:.1f} ms while the lock was held"
    # Once the lock is free the misses complete, and the cache works as before.
    failed = [out for th, out in misses if "r" not in out or out["r"].status != 200]
    assert not failed, f"{len(failed)} misses failed after the lock was freed, e.g. {failed[0]}"
    p = f"/wl/after?cc={q('max-age=60')}"
    r1, r2 = d.get(p), d.get(p)
    assert r1.header("x-cache") == "MISS" and r2.header("x-cache") == "HIT", f"after: {r1} {r2}"
    cw.wait_for(lambda: o.count(swr) >= 2, 10 * tf, what="the stale key's refresh")
