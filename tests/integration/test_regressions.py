"""Regressions found by review: coalescing on a first Vary, shutdown with waiters and under
keep-alive load, invalidation of Vary variants, an unusable 304. Each test failed before its
fix (the shutdown ones under ASan, or with libmicrohttpd aborting)."""

import signal
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
    assert b["took"] < 1.0, f"waiter took {b['took']:.2f}s"
    assert o.count(path) == 1, f"origin saw {o.count(path)} requests, want 1"

def test_review_waiter_without_vary(env):
    o = env.origin()
    d = env.daemon(o, workers=1, route={"lock_timeout": "5s"})
    path = f"/nv?delay_ms=300&cc={q('max-age=60')}"
    tha, a = bg(lambda: d.get(path, timeout=20))
    cw.wait_for(lambda: o.count(path) == 1, 2, what="A at origin")
    thb, b = bg(lambda: d.get(path, timeout=20))
    tha.join(20); thb.join(20)
    env.note(f"B {b.get('took'):.2f}s {b.get('r')!r}")
    assert b["took"] < 1.0

def test_review_shutdown_with_a_waiter(env):
    o = env.origin()
    d = env.daemon(o, workers=1, route={"lock_timeout": "30s"}, overrides={"shutdown_grace": "1s"})
    path = f"/sd?delay_ms=8000&cc={q('max-age=60')}"
    tha, a = bg(lambda: d.get(path, timeout=20))
    cw.wait_for(lambda: o.count(path) == 1, 2, what="A at origin")
    thb, b = bg(lambda: d.get(path, timeout=20))
    time.sleep(0.3)
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
    time.sleep(1.0)
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
    o = env.origin()
    d = env.daemon(o, workers=1, route={"query": ["k"]})
    r1 = d.get(f"/r3?k=1&etag=abc&cc={q('max-age=1')}")
    time.sleep(1.3)
    r2 = d.get(f"/r3?k=1&etag=abc&cc={q('no-store')}")
    env.note(f"r1 {r1!r}")
    env.note(f"r2 {r2!r}")
    assert r2.status == 200, r2


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
