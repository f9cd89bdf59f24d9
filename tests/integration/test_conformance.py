"""HTTP caching conformance, through the running proxy: RFC 9111 (shared cache), RFC 5861
(stale-while-revalidate, stale-if-error) and RFC 9211 (Cache-Status).

docs/CONFORMANCE.md lists every requirement with the test here that proves it. Each test
starts its own origin and cachewarpd; time only passes where it must: a response can be
made stale on arrival with an origin `Age` larger than its `max-age`, which spares a sleep.
Most tests use cw-test-origin (query parameters shape its answers); the few that need bytes
it cannot send (no Date, a truncated body, Connection-nominated response fields) use
cw.RawOrigin, a tiny scripted HTTP/1.1 server.
"""

import email.utils
import http.client
import os
import re
import time
import urllib.parse

import cw


# ---------------------------------------------------------------------------------------
# helpers


def url(path, *pairs, **params):
    """path?query for cw-test-origin: keyword and (name, value) pairs, percent-encoded."""
    items = list(pairs) + list(params.items())
    if not items:
        return path
    return path + "?" + urllib.parse.urlencode(items, quote_via=urllib.parse.quote, safe="")


def hdr(name, value):
    return ("hdr", f"{name}:{value}")


def oa(*pairs, headers=None, **params):
    """cw-test-origin parameters in its X-Origin-Args header, for a route that forwards only
    the query parameters it keys on (so the others never reach the origin in the query)."""
    items = list(pairs) + list(params.items())
    h = dict(headers or {})
    h["X-Origin-Args"] = urllib.parse.urlencode(items, quote_via=urllib.parse.quote, safe="")
    return h


def xc(r):
    return r.header("x-cache")


def cs(r):
    return r.header("cache-status", "")


def cs_params(r):
    """Cache-Status parameters of the CacheWarp member: {name: value or True}."""
    parts = [p.strip() for p in cs(r).split(";")]
    assert parts and parts[0] == "CacheWarp", f"Cache-Status is not a CacheWarp member: {r}"
    out = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        out[k] = v if eq else True
    return out


def ttl(r):
    return int(cs_params(r)["ttl"])


def http_date(t):
    return email.utils.formatdate(t, usegmt=True)


def start(env, workers=1, route=None, origin_cfg=None):
    o = env.origin()
    d = env.daemon(o, workers=workers, route=route, origin_cfg=origin_cfg)
    return o, d


def expect(r, status, xcache, what):
    assert r.status == status and xc(r) == xcache, \
        f"{what}: expected {status} {xcache}, got {r}"


RawOrigin = cw.RawOrigin  # a tiny scripted HTTP/1.1 server, shared with other tests


def raw_response(status_line, headers, body=b""):
    head = "HTTP/1.1 " + status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


# =======================================================================================
# RFC 9111 §3: storing responses


def test_store_only_get_and_head(env):
    o, d = start(env)
    p = url("/m", cc="max-age=60")
    for i in range(2):
        r = d.request(p, method="POST", body=b"x=1")
        expect(r, 200, "PASS", f"POST {i}")
        assert cs_params(r).get("fwd") == "method", f"POST Cache-Status: {r}"
    expect(d.get(p), 200, "MISS", "GET after POSTs (nothing stored by POST)")
    expect(d.get(p), 200, "HIT", "second GET")
    assert o.method_count("POST") == 2 and o.count(p) == 3, o.stats()


def test_store_status_codes(env):
    o, d = start(env)
    # Heuristically cacheable statuses are stored without explicit freshness (route ttl).
    for status in (200, 203, 404, 410, 501):
        p = url("/st", status=status)
        d.get(p)
        r = d.get(p)
        expect(r, status, "HIT", f"status {status} (heuristically cacheable)")
        assert o.count(p) == 1, f"status {status}: origin saw {o.count(p)}"
    # Others only with explicit freshness.
    for status in (302, 500, 503):
        p = url("/st", status=status)
        d.get(p)
        r = d.get(p)
        assert r.status == status and xc(r) != "HIT", f"status {status} without freshness: {r}"
        assert o.count(p) == 2, f"status {status}: origin saw {o.count(p)}, want 2"
    p = url("/st", status=302, cc="max-age=60")
    d.get(p)
    expect(d.get(p), 302, "HIT", "302 with max-age")


def test_store_response_no_store(env):
    o, d = start(env)
    for cc in ("no-store", "no-store, max-age=60", "max-age=60, public, no-store"):
        p = url("/ns", cc=cc)
        r1, r2 = d.get(p), d.get(p)
        expect(r1, 200, "MISS", cc)
        expect(r2, 200, "MISS", cc)
        assert "stored" not in cs_params(r1) and cs_params(r1).get("detail") == "no-store", r1
        assert o.count(p) == 2, f"{cc}: origin saw {o.count(p)}, want 2"


def test_store_response_private(env):
    o, d = start(env)
    for cc in ("private", "private, max-age=60", "public, private, s-maxage=60"):
        p = url("/pv", cc=cc)
        r1, r2 = d.get(p), d.get(p)
        assert xc(r2) == "MISS" and cs_params(r1).get("detail") == "private", f"{cc}: {r1} {r2}"
        assert o.count(p) == 2, f"{cc}: origin saw {o.count(p)}, want 2"


def test_store_private_field_stripped(env):
    o, d = start(env)
    p = url("/pf", hdr("X-Secret", "s1"), hdr("X-Public", "p1"),
            cc='max-age=60, private="X-Secret"')
    r1 = d.get(p)
    expect(r1, 200, "MISS", "first GET")
    assert "stored" in cs_params(r1), r1
    r2 = d.get(p)
    expect(r2, 200, "HIT", 'private="X-Secret" response is stored')
    assert r2.header("x-secret") is None, f"private field served from the shared cache: {r2}"
    assert r2.header("x-public") == "p1", f"other fields must be kept: {r2}"
    assert o.count(p) == 1


def test_store_no_cache_field_stripped(env):
    o, d = start(env)
    p = url("/ncf", hdr("X-Token", "t1"), hdr("X-Public", "p1"),
            cc='max-age=60, no-cache="X-Token"')
    d.get(p)
    r2 = d.get(p)
    expect(r2, 200, "HIT", 'no-cache="X-Token" response is stored')
    assert r2.header("x-token") is None, f"no-cache field served without revalidation: {r2}"
    assert r2.header("x-public") == "p1", r2
    assert o.count(p) == 1


def test_store_response_no_cache_revalidates(env):
    o, d = start(env)
    p = url("/nc", cc="no-cache", etag="nc1")
    r1 = d.get(p)
    expect(r1, 200, "MISS", "first GET")
    for i in range(2):
        r = d.get(p)
        expect(r, 200, "REVALIDATED", f"no-cache use {i}")
        assert r.body == r1.body, r
    assert o.count(p) == 3 and o.stats()["conditional"] == 2, o.stats()
    assert o.stats()["last_headers"].get("if-none-match") == '"nc1"', o.stats()["last_headers"]
    # Without a validator every use is a full fetch.
    p = url("/nc2", cc="no-cache")
    d.get(p)
    r = d.get(p)
    assert xc(r) == "MISS" and o.count(p) == 2, r


def test_store_authorization_not_shared(env):
    o, d = start(env)
    auth = {"Authorization": "Bearer abc"}
    for cc in ("max-age=60", "private, max-age=60"):
        p = url("/au", cc=cc)
        r1, r2 = d.get(p, headers=auth), d.get(p, headers=auth)
        assert xc(r2) == "MISS", f"{cc}: {r2}"
        assert o.count(p) == 2, f"{cc}: an answer to an authorised request was stored"
    r1 = d.get(url("/au", cc="max-age=60"), headers=auth)
    assert cs_params(r1).get("detail") == "authorization", r1


def test_store_authorization_allowed(env):
    o, d = start(env)
    auth = {"Authorization": "Bearer abc"}
    for cc in ("public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"):
        p = url("/aa", cc=cc)
        d.get(p, headers=auth)
        r = d.get(p, headers=auth)
        expect(r, 200, "HIT", f"Authorization with {cc}")
        assert o.count(p) == 1, f"{cc}: origin saw {o.count(p)}"


def test_store_must_understand(env):
    o, d = start(env)
    p = url("/mu", cc="must-understand, no-store, max-age=60")
    d.get(p)
    expect(d.get(p), 200, "HIT", "must-understand overrides no-store for an understood status")
    p = url("/mu", status=299, cc="must-understand, no-store, max-age=60")
    d.get(p)
    r = d.get(p)
    assert r.status == 299 and xc(r) != "HIT" and o.count(p) == 2, \
        f"must-understand with a status the cache does not understand was stored: {r}"


def test_store_set_cookie_not_shared(env):
    o, d = start(env)
    p = url("/ck", setcookie="sid=1", cc="max-age=60")
    r1, r2 = d.get(p), d.get(p)
    assert r1.header("set-cookie") == "sid=1", f"the cookie belongs to this client: {r1}"
    assert xc(r2) == "MISS" and o.count(p) == 2, f"Set-Cookie response shared: {r2}"
    assert cs_params(r1).get("detail") == "set-cookie", r1


def test_store_strip_set_cookie_route_option(env):
    o, d = start(env, route={"strip_set_cookie": True})
    p = url("/ck", setcookie="sid=1", cc="max-age=60")
    d.get(p)
    r2 = d.get(p)
    expect(r2, 200, "HIT", "strip_set_cookie stores the response")
    assert r2.header("set-cookie") is None, f"stored cookie served to another client: {r2}"
    assert o.count(p) == 1


def test_store_vary_star_never_stored(env):
    o, d = start(env)
    p = url("/vs", vary="*", cc="max-age=60")
    r1, r2 = d.get(p), d.get(p)
    assert xc(r2) == "MISS" and o.count(p) == 2, f"Vary: * stored: {r2}"
    assert cs_params(r1).get("detail") == "vary-star", r1


def test_store_incomplete_response_never_stored(env):
    ro = RawOrigin(env, lambda m, t, h: raw_response(
        "200 OK", [("Content-Length", "1000"), ("Cache-Control", "max-age=60"),
                   ("Date", http_date(time.time())), ("Connection", "close")], b"x" * 10))
    d = env.daemon(ro, workers=1)
    for i in range(2):
        try:
            r = d.get("/trunc")
        except (http.client.HTTPException, ConnectionError) as e:
            # The proxy may drop the connection (a short body, or a reset) instead of
            # answering an error: that is not passing the truncated body off as complete.
            # Anything else (a timeout, a bug in the test) fails the test.
            env.note(f"request {i}: connection dropped ({e!r})")
            continue
        assert not (r.status == 200 and len(r.body) < 1000), \
            f"truncated body served as complete ({i}): {r}"
        assert xc(r) != "HIT", f"truncated body stored: {r}"
    assert ro.count("/trunc") == 2, f"origin saw {ro.count('/trunc')} requests, want 2"


def test_vary_variants_per_secondary_key(env):
    o, d = start(env)
    p = url("/va", vary="Accept-Language", cc="max-age=60")
    en, fr = {"Accept-Language": "en"}, {"Accept-Language": "fr"}
    r_en = d.get(p, headers=en)
    expect(r_en, 200, "MISS", "en")
    r_fr = d.get(p, headers=fr)
    expect(r_fr, 200, "MISS", "fr is another variant")
    r = d.get(p, headers=en)
    expect(r, 200, "HIT", "en again")
    assert r.body == r_en.body, r
    r = d.get(p, headers=fr)
    expect(r, 200, "HIT", "fr again")
    assert r.body == r_fr.body, r
    expect(d.get(p), 200, "MISS", "no Accept-Language is a variant of its own")
    assert o.count(p) == 3


def test_cache_status_fwd_uri_miss_and_vary_miss(env):
    o, d = start(env)
    p = url("/vm", vary="Accept-Language", cc="max-age=60")
    r = d.get(p, headers={"Accept-Language": "en"})
    first = cs_params(r).get("fwd")
    r2 = d.get(p, headers={"Accept-Language": "fr"})
    second = cs_params(r2).get("fwd")
    assert (first, second) == ("uri-miss", "vary-miss"), \
        f"nothing stored yet -> uri-miss, then another variant -> vary-miss; got {first}, " \
        f"{second}: {r} / {r2}"


def test_vary_changed_replaces_variants(env):
    # Only k is in the key, so the origin's Vary can change under the same key.
    o, d = start(env, route={"query": ["k"]})
    r1 = d.get(url("/vc", k="1"), headers=oa(hdr("X-Gen", "1"), vary="Accept-Language",
                                              cc="max-age=60", headers={"Accept-Language": "en"}))
    expect(r1, 200, "MISS", "first variant")
    r2 = d.get(url("/vc", k="1"), headers=oa(hdr("X-Gen", "2"), vary="X-Foo", cc="max-age=60",
                                              headers={"Accept-Language": "de"}))
    expect(r2, 200, "MISS", "new variant, origin now varies on X-Foo")
    r3 = d.get(url("/vc", k="1"), headers={"Accept-Language": "en"})
    expect(r3, 200, "HIT", "lookup under the new Vary")
    assert r3.header("x-gen") == "2", f"a variant stored under the old Vary was served: {r3}"


# =======================================================================================
# RFC 9111 §4.2: freshness


def test_fresh_s_maxage_over_max_age(env):
    o, d = start(env)
    # Age 30 makes max-age=5 stale on arrival; s-maxage=60 wins for a shared cache.
    p = url("/sm", hdr("Age", "30"), cc="max-age=5, s-maxage=60")
    d.get(p)
    r = d.get(p)
    expect(r, 200, "HIT", "s-maxage over max-age")
    assert 27 <= ttl(r) <= 30, f"ttl should be s-maxage - age: {r}"


def test_fresh_max_age_over_expires(env):
    o, d = start(env)
    p = url("/me", cc="max-age=60", expires=http_date(time.time() - 3600))
    d.get(p)
    r = d.get(p)
    expect(r, 200, "HIT", "max-age over a past Expires")
    assert 57 <= ttl(r) <= 60, r


def test_fresh_expires_without_max_age(env):
    o, d = start(env)
    p = url("/ex", expires=http_date(time.time() + 60))
    d.get(p)
    r = d.get(p)
    expect(r, 200, "HIT", "future Expires")
    assert 55 <= ttl(r) <= 61, r
    p = url("/ex", expires=http_date(time.time() - 3600))
    d.get(p)
    r = d.get(p)
    assert xc(r) != "HIT" and o.count(p) == 2, f"past Expires served as fresh: {r}"


def test_fresh_invalid_expires_is_stale(env):
    o, d = start(env)
    for e in ("0", "-1", "not a date"):
        p = url("/ie", expires=e)
        d.get(p)
        r = d.get(p)
        assert xc(r) != "HIT" and o.count(p) == 2, f"Expires: {e} served as fresh: {r}"


def test_fresh_age_includes_origin_age(env):
    o, d = start(env)
    p = url("/ag", hdr("Age", "30"), cc="max-age=60")
    d.get(p)
    r = d.get(p)
    expect(r, 200, "HIT", "Age 30 of 60")
    assert 30 <= int(r.header("age")) <= 32, f"Age must include the origin's Age: {r}"
    assert 27 <= ttl(r) <= 30, r
    p = url("/ag", hdr("Age", "100"), cc="max-age=60")
    d.get(p)
    r = d.get(p)
    assert xc(r) != "HIT" and o.count(p) == 2, f"older than max-age on arrival, yet HIT: {r}"


def test_fresh_age_from_origin_date(env):
    # Apparent age (§4.2.3): response_time - Date.
    date = http_date(time.time() - 30)
    ro = RawOrigin(env, lambda m, t, h: raw_response(
        "200 OK", [("Date", date), ("Cache-Control", "max-age=60"), ("Content-Length", "2"),
                   ("Connection", "close")], b"ok"))
    d = env.daemon(ro, workers=1)
    d.get("/dt")
    r = d.get("/dt")
    expect(r, 200, "HIT", "Date 30 s ago, max-age 60")
    assert 29 <= int(r.header("age")) <= 32, f"Age must count from the origin's Date: {r}"


def test_fresh_miss_forwards_origin_age(env):
    o, d = start(env)
    r = d.get(url("/am", hdr("Age", "30"), cc="max-age=60"))
    expect(r, 200, "MISS", "first GET")
    assert int(r.header("age", "0")) >= 30, \
        f"a forwarded response 30 s old was sent with a smaller Age: {r}"
    # Without an origin Age the MISS says Age: 0 (one Age field, not none, not two).
    r = d.get(url("/am0", cc="max-age=60"))
    expect(r, 200, "MISS", "first GET, no origin Age")
    assert r.header("age") == "0", f"a MISS without an origin Age must say Age: 0: {r}"


def test_age_on_every_cached_answer(env):
    """RFC 9111 §5.1: Age on every answer served from the cache, counting the stored
    response's age (here the origin's Age of 20 s): HIT, STALE, STALE-ERROR, REVALIDATED
    (the 304 freshens the entry; its own Age is 20 again)."""
    o, d = start(env)

    def age(r):
        a = r.header("age")
        assert a is not None and a.isdigit(), f"{xc(r)} answer without a numeric Age: {r}"
        return int(a)

    p = url("/agh", hdr("Age", "20"), cc="max-age=60")
    d.get(p)
    r = d.get(p)
    expect(r, 200, "HIT", "HIT")
    assert 20 <= age(r) <= 22, f"HIT Age must count the stored response's age: {r}"
    p = url("/ags", hdr("Age", "20"), cc="max-age=10, stale-while-revalidate=60")
    d.get(p)
    r = d.get(p)
    expect(r, 200, "STALE", "STALE")
    assert 20 <= age(r) <= 22, f"STALE Age: {r}"
    # stale-if-error keeps the stale entry out of the refresher's sweep of entries past
    # every window (it could run between the two requests); it plays no part in the answer.
    p = url("/agr", hdr("Age", "20"), etag="g1", cc="max-age=10, stale-if-error=600")
    d.get(p)
    r = d.get(p)
    expect(r, 200, "REVALIDATED", "REVALIDATED")
    assert 20 <= age(r) <= 22, f"REVALIDATED Age: {r}"
    p = url("/age", hdr("Age", "20"), cc="max-age=10, stale-if-error=60")
    d.get(p)
    o.mode("503")
    r = d.get(p)
    expect(r, 200, "STALE-ERROR", "STALE-ERROR")
    assert 20 <= age(r) <= 22, f"STALE-ERROR Age: {r}"


def test_fresh_heuristic_last_modified(env):
    o, d = start(env, route={"ttl": "5s", "max_ttl": "10m"})
    p = url("/hl", lm=http_date(time.time() - 1000))
    d.get(p)
    r = d.get(p)
    expect(r, 200, "HIT", "heuristic")
    assert 95 <= ttl(r) <= 100, f"10 % of (Date - Last-Modified) = 100 s expected: {r}"


def test_fresh_heuristic_capped_by_max_ttl(env):
    o, d = start(env, route={"ttl": "5s", "max_ttl": "50s"})
    p = url("/hc", lm=http_date(time.time() - 365 * 86400))
    d.get(p)
    r = d.get(p)
    expect(r, 200, "HIT", "heuristic")
    assert 45 <= ttl(r) <= 50, f"heuristic must be capped by max_ttl = 50 s: {r}"


# =======================================================================================
# RFC 9111 §5.2.1: request directives


def test_req_max_age(env):
    o, d = start(env)
    p = url("/rma", hdr("Age", "10"), cc="max-age=60", etag="a1")
    d.get(p)
    expect(d.get(p, headers={"Cache-Control": "max-age=100"}), 200, "HIT", "max-age=100, age 10")
    r = d.get(p, headers={"Cache-Control": "max-age=5"})
    expect(r, 200, "REVALIDATED", "max-age=5, age 10")
    assert o.stats()["conditional"] == 1 and o.count(p) == 2, o.stats()
    r = d.get(p, headers={"Cache-Control": "max-age=0"})
    assert xc(r) in ("REVALIDATED", "MISS") and o.count(p) == 3, r


def test_req_max_stale(env):
    o, d = start(env)
    p = url("/rms", hdr("Age", "10"), cc="max-age=5")  # 5 s stale on arrival
    d.get(p)
    r = d.get(p, headers={"Cache-Control": "max-stale=60"})
    expect(r, 200, "STALE", "max-stale=60, 5 s stale")
    assert cs_params(r).get("detail") == "max-stale" and ttl(r) <= -4, r
    expect(d.get(p, headers={"Cache-Control": "max-stale"}), 200, "STALE", "max-stale (any)")
    assert o.count(p) == 1
    r = d.get(p, headers={"Cache-Control": "max-stale=1"})
    assert xc(r) != "STALE" and o.count(p) == 2, f"max-stale=1 accepted 5 s of staleness: {r}"


def test_req_min_fresh(env):
    o, d = start(env)
    p = url("/rmf", hdr("Age", "30"), cc="max-age=60")
    d.get(p)
    expect(d.get(p, headers={"Cache-Control": "min-fresh=10"}), 200, "HIT", "min-fresh=10")
    r = d.get(p, headers={"Cache-Control": "min-fresh=45"})
    assert xc(r) != "HIT" and o.count(p) == 2, f"min-fresh=45 with 30 s left: {r}"


def test_req_no_cache_and_pragma(env):
    o, d = start(env)
    p = url("/rnc", cc="max-age=600", etag="n1")
    d.get(p)
    expect(d.get(p, headers={"Cache-Control": "no-cache"}), 200, "REVALIDATED", "no-cache")
    expect(d.get(p, headers={"Pragma": "no-cache"}), 200, "REVALIDATED", "Pragma: no-cache")
    assert o.stats()["conditional"] == 2 and o.count(p) == 3, o.stats()
    # §5.4: Pragma is ignored when the request has Cache-Control.
    expect(d.get(p, headers={"Pragma": "no-cache", "Cache-Control": "max-age=600"}), 200, "HIT",
           "Pragma with Cache-Control")
    assert o.count(p) == 3


def test_req_ignore_client_no_cache_route_option(env):
    o, d = start(env, route={"ignore_client_no_cache": True})
    p = url("/ign", cc="max-age=600")
    d.get(p)
    expect(d.get(p, headers={"Cache-Control": "no-cache"}), 200, "HIT", "no-cache ignored")
    expect(d.get(p, headers={"Pragma": "no-cache"}), 200, "HIT", "Pragma ignored")
    assert o.count(p) == 1
    # max-age=0 is not ignored: the entry is older than 0 s, so the request goes to the
    # origin (a full fetch here: the entry has no validator).
    r = d.get(p, headers={"Cache-Control": "max-age=0"})
    assert xc(r) in ("REVALIDATED", "MISS") and o.count(p) == 2, \
        f"max-age=0 with ignore_client_no_cache must still go to the origin: {r}"


def test_req_no_store(env):
    o, d = start(env)
    p = url("/rns", cc="max-age=600")
    r = d.get(p, headers={"Cache-Control": "no-store"})
    expect(r, 200, "PASS", "request no-store")
    expect(d.get(p), 200, "MISS", "nothing was stored for the no-store request")
    expect(d.get(p), 200, "HIT", "stored by the plain request")
    assert o.count(p) == 2


def test_req_only_if_cached(env):
    o, d = start(env)
    p = url("/oic", cc="max-age=600")
    oic = {"Cache-Control": "only-if-cached"}
    r = d.get(p, headers=oic)
    assert r.status == 504 and o.count(p) == 0, f"only-if-cached miss must be 504: {r}"
    assert xc(r) == "ERROR", f"an only-if-cached miss is CacheWarp's own error answer: {r}"
    d.get(p)
    expect(d.get(p, headers=oic), 200, "HIT", "only-if-cached on a stored response")
    p = url("/oic", hdr("Age", "10"), cc="max-age=5")
    d.get(p)
    r = d.get(p, headers=oic)
    assert r.status == 504 and o.count(p) == 1, f"only-if-cached on a stale entry: {r}"


# =======================================================================================
# RFC 9111 §4.3: validation


def test_validate_stale_etag_304_updates_headers(env):
    o, d = start(env, route={"query": ["k"]})
    r1 = d.get(url("/vr", k="1"), headers=oa(hdr("X-Rev", "1"), etag="e1", cc="max-age=0"))
    expect(r1, 200, "MISS", "store, stale at once")
    r2 = d.get(url("/vr", k="1"), headers=oa(hdr("X-Rev", "2"), etag="e1", cc="max-age=60"))
    expect(r2, 200, "REVALIDATED", "stale entry validated")
    seen = o.stats()["last_headers"]
    assert seen.get("if-none-match") == '"e1"', f"origin did not get the stored ETag: {seen}"
    assert r2.body == r1.body, "304 must keep the stored body"
    assert r2.header("x-rev") == "2", f"304's header fields must update the stored ones: {r2}"
    p = cs_params(r2)
    assert p.get("fwd") == "stale" and p.get("fwd-status") == "304", r2
    r3 = d.get(url("/vr", k="1"))
    expect(r3, 200, "HIT", "fresh after the 304")
    assert r3.header("x-rev") == "2" and "max-age=60" in r3.header("cache-control", ""), r3
    assert r3.body == r1.body
    assert o.stats()["conditional"] == 1


def test_validate_stale_last_modified(env):
    o, d = start(env)
    lm = http_date(time.time() - 7200)
    p = url("/vl", lm=lm, cc="max-age=0")
    r1 = d.get(p)
    r2 = d.get(p)
    expect(r2, 200, "REVALIDATED", "Last-Modified validation")
    assert o.stats()["last_headers"].get("if-modified-since") == lm, o.stats()["last_headers"]
    assert r2.body == r1.body


def test_validate_full_response_replaces(env):
    o, d = start(env, route={"query": ["k"]})
    r1 = d.get(url("/vf", k="1"), headers=oa(etag="e1", cc="max-age=0"))
    r2 = d.get(url("/vf", k="1"), headers=oa(hdr("X-New", "1"), etag="e2", cc="max-age=60"))
    assert r2.status == 200 and xc(r2) == "MISS", r2
    p = cs_params(r2)
    assert p.get("fwd") == "stale" and p.get("fwd-status") == "200" and "stored" in p, r2
    assert r1.header("etag") == '"e1"' and r2.header("etag") == '"e2"', (r1, r2)
    r3 = d.get(url("/vf", k="1"))
    expect(r3, 200, "HIT", "new response stored")
    assert r3.header("etag") == '"e2"' and r3.header("x-new") == "1", r3


def test_client_if_none_match_from_cache(env):
    o, d = start(env)
    p = url("/cin", etag="e1", cc="max-age=600")
    r1 = d.get(p)
    for inm in ('"e1"', 'W/"e1"', '"zz", "e1"', "*"):
        r = d.get(p, headers={"If-None-Match": inm})
        assert r.status == 304 and xc(r) == "HIT" and r.body == b"", f"INM {inm}: {r}"
        assert r.header("etag") == '"e1"', f"304 must carry the ETag: {r}"
    r = d.get(p, headers={"If-None-Match": '"zz"'})
    assert r.status == 200 and r.body == r1.body, r
    pw = url("/cinw", etag='W/"w1"', cc="max-age=600")
    d.get(pw)
    r = d.get(pw, headers={"If-None-Match": '"w1"'})
    assert r.status == 304, f"If-None-Match uses the weak comparison: {r}"
    assert o.count(p) == 1 and o.count(pw) == 1


def test_client_if_modified_since_from_cache(env):
    o, d = start(env)
    t = time.time() - 7200
    lm = http_date(t)
    p = url("/cims", lm=lm, etag="m1", cc="max-age=600")
    r1 = d.get(p)
    r = d.get(p, headers={"If-Modified-Since": lm})
    assert r.status == 304 and xc(r) == "HIT", r
    r = d.get(p, headers={"If-Modified-Since": http_date(t - 86400)})
    assert r.status == 200 and r.body == r1.body, r
    # If-None-Match takes precedence over If-Modified-Since.
    r = d.get(p, headers={"If-Modified-Since": lm, "If-None-Match": '"other"'})
    assert r.status == 200, r
    assert o.count(p) == 1


def test_client_if_match_strong(env):
    o, d = start(env)
    p = url("/cim", etag="e1", cc="max-age=600")
    d.get(p)
    assert d.get(p, headers={"If-Match": '"e1"'}).status == 200
    assert d.get(p, headers={"If-Match": "*"}).status == 200
    r = d.get(p, headers={"If-Match": '"zz"'})
    assert r.status == 412 and r.body == b"" and xc(r) == "HIT", r
    pw = url("/cimw", etag='W/"w1"', cc="max-age=600")
    d.get(pw)
    r = d.get(pw, headers={"If-Match": 'W/"w1"'})
    assert r.status == 412, f"If-Match uses the strong comparison (a weak tag never matches): {r}"
    assert o.count(p) == 1 and o.count(pw) == 1


def test_client_conditional_on_miss(env):
    o, d = start(env)
    # The cache strips the client's preconditions to fetch the whole response, so it must
    # evaluate them itself before answering (RFC 9110 §13.2.1).
    r = d.get(url("/ccm", etag="c1", cc="max-age=600"), headers={"If-None-Match": '"c1"'})
    assert r.status == 304, f"matching If-None-Match on a miss: {r}"
    r = d.get(url("/ccm2", etag="c1", cc="max-age=600"), headers={"If-Match": '"zz"'})
    assert r.status == 412, f"failing If-Match on a miss: {r}"


# =======================================================================================
# RFC 9111 §4.4: invalidation


def test_invalidate_unsafe_methods(env):
    o, d = start(env)
    for m in ("POST", "PUT", "DELETE", "PATCH"):
        p = url(f"/inv-{m.lower()}", cc="max-age=600")
        d.get(p)
        expect(d.get(p), 200, "HIT", f"before {m}")
        expect(d.request(p, method=m, body=b"x"), 200, "PASS", m)
        expect(d.get(p), 200, "MISS", f"after {m}")


def test_invalidate_location_and_content_location(env):
    o, d = start(env)
    host = f"127.0.0.1:{d.port}"
    for t in ("/t1", "/t2", "/t3"):
        d.get(t)
        expect(d.get(t), 200, "HIT", t)
    r = d.request(url("/post", hdr("Location", "/t1"),
                      hdr("Content-Location", f"http://{host}/t2")), method="POST", body=b"x")
    expect(r, 200, "PASS", "POST")
    d.request(url("/post2", hdr("Location", "http://other.example/t3")), method="POST", body=b"x")
    expect(d.get("/t1"), 200, "MISS", "Location (same origin) invalidated")
    expect(d.get("/t2"), 200, "MISS", "Content-Location (same origin) invalidated")
    expect(d.get("/t3"), 200, "HIT", "Location on another host must not invalidate")


def test_invalidate_not_on_error(env):
    o, d = start(env, route={"query": ["k"]})
    p = url("/ie", k="1")
    d.get(p)
    for status in (404, 500):
        r = d.request(url("/ie", k="1", status=status), method="POST", body=b"x")
        assert r.status == status, r
        expect(d.get(p), 200, "HIT", f"after a POST answered {status}")
    d.request(url("/ie", k="1"), method="POST", body=b"x")
    expect(d.get(p), 200, "MISS", "after a POST answered 200")


# =======================================================================================
# HEAD, ranges (RFC 9110 §9.3.2, §14; RFC 9111 §3.3, §3.4, §4)


def test_head_served_from_stored_get(env):
    o, d = start(env)
    p = url("/hd", cc="max-age=600")
    g = d.get(p)
    r = d.request(p, method="HEAD")
    expect(r, 200, "HIT", "HEAD after GET")
    assert r.body == b"" and r.header("content-length") == str(len(g.body)), r
    p = url("/hd2", cc="max-age=600")
    expect(d.request(p, method="HEAD"), 200, "MISS", "HEAD on a miss")
    g = d.get(p)
    expect(g, 200, "HIT", "GET after a HEAD miss")
    assert len(g.body) > 0 and o.method_count("HEAD") == 0 and o.count(p) == 1


def test_range_single_from_cache(env):
    o, d = start(env)
    p = url("/rg", size=100, cc="max-age=600")
    full = d.get(p)
    r = d.get(p, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and xc(r) == "HIT", r
    assert r.body == full.body[10:20] and r.header("content-range") == "bytes 10-19/100", r
    r = d.get(p, headers={"Range": "bytes=-5"})
    assert r.status == 206 and r.body == full.body[-5:], r
    assert r.header("content-range") == "bytes 95-99/100", r
    assert o.count(p) == 1


def test_range_unsatisfiable_416(env):
    o, d = start(env)
    p = url("/rg", size=100, cc="max-age=600")
    d.get(p)
    r = d.get(p, headers={"Range": "bytes=200-300"})
    assert r.status == 416 and r.header("content-range") == "bytes */100", r
    assert xc(r) == "HIT" and o.count(p) == 1, f"416 must be made from the stored entry: {r}"


def test_range_multiple_whole_200(env):
    o, d = start(env)
    p = url("/rg", size=100, cc="max-age=600")
    full = d.get(p)
    r = d.get(p, headers={"Range": "bytes=0-1,50-51"})
    assert r.status == 200 and r.body == full.body, r


def test_range_miss_fetches_whole(env):
    o, d = start(env)
    p = url("/rgm", size=100, cc="max-age=600")
    r = d.get(p, headers={"Range": "bytes=0-9"})
    assert "range" not in o.stats()["last_headers"], "Range forwarded: the cache stores whole"
    assert (r.status == 206 and r.body == b"x" * 10) or (r.status == 200 and len(r.body) == 100), r
    r = d.get(p)
    expect(r, 200, "HIT", "whole representation stored")
    assert len(r.body) == 100


# =======================================================================================
# hop-by-hop fields, Date (RFC 9110 §7.6.1, §6.6.1; RFC 9111 §3.1)


def test_hop_by_hop_response_fields(env):
    ro = RawOrigin(env, lambda m, t, h: raw_response(
        "200 OK", [("Date", http_date(time.time())), ("Cache-Control", "max-age=600"),
                   ("Connection", "close, X-Hop"), ("X-Hop", "secret"),
                   ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic realm=x"),
                   ("X-End", "kept"), ("Content-Length", "2")], b"ok"))
    d = env.daemon(ro, workers=1)
    for want in ("MISS", "HIT"):
        r = d.get("/hop")
        expect(r, 200, want, "hop-by-hop")
        for h in ("x-hop", "keep-alive", "proxy-authenticate"):
            assert r.header(h) is None, f"{want}: hop-by-hop {h} forwarded: {r}"
        assert "x-hop" not in r.header("connection", "").lower(), r
        assert r.header("x-end") == "kept", r
    assert ro.count("/hop") == 1


def test_hop_by_hop_request_fields(env):
    o, d = start(env)
    p = url("/hopq", cc="no-store")
    d.get(p, headers={"Connection": "X-Secret", "X-Secret": "1", "Keep-Alive": "5",
                      "TE": "trailers", "Proxy-Authorization": "Basic eDp5", "X-End": "kept"})
    seen = o.stats()["last_headers"]
    assert seen.get("x-end") == "kept", seen
    for h in ("x-secret", "keep-alive", "te", "proxy-authorization"):
        assert h not in seen, f"hop-by-hop {h} reached the origin: {seen}"


def test_date_added_when_origin_omits(env):
    ro = RawOrigin(env, lambda m, t, h: raw_response(
        "200 OK", [("Cache-Control", "max-age=600"), ("Content-Length", "2"),
                   ("Connection", "close")], b"ok"))
    d = env.daemon(ro, workers=1)
    for want in ("MISS", "HIT"):
        r = d.get("/nd")
        expect(r, 200, want, "no Date from origin")
        date = r.header("date")
        assert date and date.count(",") == 1, f"{want}: want one Date: {r}"
        t = email.utils.parsedate_to_datetime(date).timestamp()
        assert abs(t - time.time()) < 5, f"{want}: Date {date} is not now"


# =======================================================================================
# RFC 9211: Cache-Status


def test_cache_status_hit_and_miss(env):
    o, d = start(env)
    p = url("/cs", cc="max-age=60")
    r1 = d.get(p)
    assert cs(r1) == "CacheWarp; fwd=uri-miss; fwd-status=200; stored", r1
    r2 = d.get(p)
    assert re.fullmatch(r"CacheWarp; hit; ttl=\d+", cs(r2)), r2
    assert 58 <= ttl(r2) <= 60 and r2.header("age", "").isdigit(), r2
    r = d.get(url("/cs", cc="no-store"))
    assert cs(r) == "CacheWarp; fwd=uri-miss; fwd-status=200; detail=no-store", r


def test_cache_status_fwd_request(env):
    o, d = start(env)
    p = url("/csr", cc="max-age=600")
    r1 = d.get(p, headers={"Cache-Control": "no-store"})
    d.get(p)
    r2 = d.get(p, headers={"Cache-Control": "no-cache"})
    got = (cs_params(r1).get("fwd"), cs_params(r2).get("fwd"))
    assert got == ("request", "request"), \
        f"request no-store, and request no-cache on a fresh entry, want fwd=request; got " \
        f"{got}: {r1} / {r2}"


def test_no_transform_body_unchanged(env):
    o, d = start(env)
    p = url("/nt", size=5000, cc="max-age=600, no-transform")
    r1, r2 = d.get(p), d.get(p, headers={"Accept-Encoding": "gzip"})
    expect(r2, 200, "HIT", "no-transform")
    assert r2.body == r1.body and len(r2.body) == 5000, r2
    assert r2.header("content-type") == r1.header("content-type") == "application/octet-stream"
    assert r2.header("content-encoding") is None, r2


def test_cache_status_collapsed(env):
    o, d = start(env, workers=2)
    p = url("/col", hdr("Age", "20"), delay_ms=400, cc="max-age=600")
    rs = cw.concurrent(lambda i: d.get(p), 6, 6)
    bad = [r for r in rs if isinstance(r, Exception)]
    assert not bad, bad
    assert o.count(p) == 1, f"origin saw {o.count(p)}"
    misses = [r for r in rs if xc(r) == "MISS"]
    assert len(misses) == 1 and "collapsed" not in cs_params(misses[0]), rs
    hits = [r for r in rs if xc(r) == "HIT"]
    assert len(hits) == 5, rs
    assert any("collapsed" in cs_params(r) for r in hits), [cs(r) for r in hits]
    # Coalesced answers come from the cache too: Age counts the stored response's age.
    for r in hits:
        assert r.header("age", "").isdigit() and 20 <= int(r.header("age")) <= 22, \
            f"coalesced HIT without the stored response's Age: {r}"


# =======================================================================================
# cache key


def test_key_host_case_and_default_port(env):
    o, d = start(env)
    p = url("/hk", cc="max-age=600")
    expect(d.get(p, headers={"Host": "Example.TEST"}), 200, "MISS", "first")
    expect(d.get(p, headers={"Host": "example.test"}), 200, "HIT", "host case")
    expect(d.get(p, headers={"Host": "example.test:80"}), 200, "HIT", "default port")
    expect(d.get(p, headers={"Host": "example.test:8080"}), 200, "MISS", "other port")
    expect(d.get(p, headers={"Host": "other.test"}), 200, "MISS", "other host")


def test_key_query_keep(env):
    o, d = start(env)
    expect(d.get("/q?a=1&b=2"), 200, "MISS", "first")
    expect(d.get("/q?b=2&a=1"), 200, "MISS", "keep: order matters")
    expect(d.get("/q?a=1&b=2"), 200, "HIT", "same query")


def test_key_query_sort(env):
    o, d = start(env, route={"query": "sort"})
    expect(d.get("/q?a=1&b=2"), 200, "MISS", "first")
    expect(d.get("/q?b=2&a=1"), 200, "HIT", "sorted")
    expect(d.get("/q?a=1&b=3"), 200, "MISS", "other value")


def test_key_query_ignore(env):
    o, d = start(env, route={"query": "ignore"})
    expect(d.get("/q?a=1"), 200, "MISS", "first")
    expect(d.get("/q?a=2"), 200, "HIT", "query ignored")
    expect(d.get("/q"), 200, "HIT", "no query")


def test_key_query_list(env):
    o, d = start(env, route={"query": ["a"]})
    expect(d.get("/q?a=1&utm=x"), 200, "MISS", "first")
    expect(d.get("/q?utm=y&a=1"), 200, "HIT", "only a counts")
    expect(d.get("/q?a=2"), 200, "MISS", "other a")


def test_key_headers_route_option(env):
    o, d = start(env, route={"key_headers": ["X-Tenant"]})
    p = url("/kh", cc="max-age=600")
    a, b = {"X-Tenant": "a"}, {"X-Tenant": "b"}
    ra = d.get(p, headers=a)
    expect(ra, 200, "MISS", "tenant a")
    expect(d.get(p, headers=b), 200, "MISS", "tenant b")
    expect(d.get(p, headers=a), 200, "HIT", "tenant a again")
    expect(d.get(p, headers=b), 200, "HIT", "tenant b again")
    assert o.count(p) == 2


# =======================================================================================
# RFC 5861


def test_swr_serves_stale_and_refreshes_once(env):
    o = env.origin()
    d = env.daemon(o, workers=1, stats=True)
    # 4 s stale on arrival, within a 30 s stale-while-revalidate window; the origin takes
    # 2 s, so the stale answers below all come while the one refresh runs, and each comes
    # well under those 2 s (it did not wait for the origin).
    p = url("/swr", hdr("Age", "5"), delay_ms=2000, cc="max-age=1, stale-while-revalidate=30")
    r1 = d.get(p)
    expect(r1, 200, "MISS", "first")
    for i in range(5):
        r = d.get(p)
        expect(r, 200, "STALE", f"stale {i}")
        assert r.elapsed < 1.0, f"stale answer {i} waited for the 2 s origin: {r}"
        assert re.fullmatch(r"CacheWarp; fwd=stale; ttl=-\d+; detail=stale-while-revalidate",
                            cs(r)), r
        assert ttl(r) <= -3 and int(r.header("age")) >= 5, r
    # The refresher counts the refresh when it is done; nothing asks after the 5 hits, so
    # the origin count is final then.
    d.wait_metric("cachewarp_refreshes_total", lambda v: v >= 1, 10)
    assert o.count(p) == 2, f"{o.count(p) - 1} refreshes for 5 stale hits, want 1"
    assert d.metric("cachewarp_refreshes_total") == 1, "more than one refresh was counted"


def test_swr_past_window_goes_to_origin(env):
    o, d = start(env)
    p = url("/swp", hdr("Age", "10"), cc="max-age=1, stale-while-revalidate=2")
    d.get(p)
    r = d.get(p)
    expect(r, 200, "MISS", "stale past the swr window")
    assert cs_params(r).get("fwd") == "stale" and o.count(p) == 2, r


def test_swr_route_default(env):
    o, d = start(env, route={"swr": "30s"})
    p = url("/swd", hdr("Age", "5"), cc="max-age=1")
    d.get(p)
    expect(d.get(p), 200, "STALE", "route swr applies when the origin says nothing")


def test_sie_serves_stale_on_503(env):
    o, d = start(env)
    p = url("/sie", hdr("Age", "5"), cc="max-age=1, stale-if-error=60")
    r1 = d.get(p)
    o.mode("503")
    r = d.get(p)
    expect(r, 200, "STALE-ERROR", "origin 503")
    assert r.body == r1.body, r
    assert re.fullmatch(r"CacheWarp; fwd=stale; fwd-status=503; ttl=-\d+; detail=stale-if-error",
                        cs(r)), r


def test_sie_on_timeout_close_and_refused(env):
    o, d = start(env, origin_cfg={"timeout": "1s"})
    p = url("/sie", hdr("Age", "5"), cc="max-age=1, stale-if-error=60")
    r1 = d.get(p)
    o.mode("hang")
    r = d.get(p)
    expect(r, 200, "STALE-ERROR", "origin timeout")
    assert r.body == r1.body and cs_params(r).get("detail") == "stale-if-error", r
    o.mode("close")
    expect(d.get(p), 200, "STALE-ERROR", "origin drops the connection")
    o.stop()
    expect(d.get(p), 200, "STALE-ERROR", "origin refuses connections")


def test_sie_past_window_is_error(env):
    o, d = start(env)
    p = url("/siep", hdr("Age", "10"), cc="max-age=1, stale-if-error=2")
    d.get(p)
    o.mode("503")
    r = d.get(p)
    assert r.status == 503 and xc(r) != "STALE-ERROR", f"stale past stale-if-error: {r}"
    o.stop()
    r = d.get(p)
    assert r.status in (502, 504) and xc(r) == "ERROR", f"origin down, no usable stale: {r}"


def test_sie_request_directive_limits_staleness(env):
    o, d = start(env)
    p = url("/sier", hdr("Age", "10"), cc="max-age=1, stale-if-error=60")  # 9 s stale
    d.get(p)
    o.mode("503")
    r = d.get(p, headers={"Cache-Control": "stale-if-error=2"})
    assert xc(r) != "STALE-ERROR", f"request stale-if-error=2 but 9 s stale was served: {r}"


def test_stale_forbidden_by_must_revalidate(env):
    o, d = start(env)
    for cc in ("max-age=1, must-revalidate, stale-if-error=60",
               "max-age=1, proxy-revalidate, stale-if-error=60",
               "s-maxage=1, stale-if-error=60, stale-while-revalidate=60"):
        p = url("/mr", hdr("Age", "5"), cc=cc)
        d.get(p)
        r = d.get(p, headers={"Cache-Control": "max-stale=60"})
        assert xc(r) not in ("STALE", "HIT"), f"{cc}: stale served to max-stale: {r}"
        o.mode("503")
        r = d.get(p)
        assert r.status == 503 and xc(r) != "STALE-ERROR", f"{cc}: stale served on error: {r}"
        o.mode("normal")


def test_xcache_error_without_stale(env):
    o, d = start(env)
    o.stop()
    r = d.get("/down")
    assert r.status == 502 and xc(r) == "ERROR", r
    assert cs_params(r).get("fwd") == "uri-miss", r


# =======================================================================================
# RFC 9213: targeted cache-control fields (cache.targeted_cache_control)


def targets_cfg(env, name, targets):
    """The test config's cache group (cw.config_text's values, a file of its own) with a
    target list."""
    return {"cache": {"path": os.path.join(env.dir, f"{name}.mdb"), "size": "64M",
                      "max_object": "8M", "targeted_cache_control": targets}}


def test_targeted_overrides_cc_to_store(env):
    """CDN-Cache-Control: max-age=60 beside Cache-Control: no-store (and an expired Expires):
    stored for 60 s, while clients still get the origin's Cache-Control, and the targeted
    field passes on (RFC 9213 §2.2, §3)."""
    o, d = start(env)
    for name in ("CDN-Cache-Control", "CacheWarp-Cache-Control"):
        for cc in ("no-store", "private", "no-cache", "max-age=0, must-revalidate"):
            p = url("/tgs", hdr(name, "max-age=60"), expires="0", cc=cc)
            r1 = d.get(p)
            expect(r1, 200, "MISS", f"{name} over {cc}")
            assert "stored" in cs_params(r1), f"{name}: max-age=60 over {cc} not stored: {r1}"
            r2 = d.get(p)
            expect(r2, 200, "HIT", f"{name} over {cc}, second GET")
            assert 57 <= ttl(r2) <= 60, f"lifetime must come from {name}: {r2}"
            assert r2.header("cache-control") == cc, f"clients get the origin's CC: {r2}"
            assert r2.header("expires") == "0", f"clients get the origin's Expires: {r2}"
            assert r2.header(name.lower()) == "max-age=60", f"{name} is passed on: {r2}"
            assert o.count(p) == 1, f"{name} over {cc}: origin saw {o.count(p)}"


def test_targeted_overrides_cc_to_refuse(env):
    """Cache-Control: max-age=600 with no-store / private / no-cache / max-age=0 in the
    targeted field: the field wins (RFC 9213 §2.2)."""
    o, d = start(env)
    for tcc, detail in (("no-store", "no-store"), ("private", "private"),
                        ("private, max-age=60", "private")):
        p = url("/tgr", hdr("CDN-Cache-Control", tcc), cc="public, max-age=600")
        r1, r2 = d.get(p), d.get(p)
        expect(r2, 200, "MISS", f"target {tcc}")
        assert cs_params(r1).get("detail") == detail, f"target {tcc}: {r1}"
        assert o.count(p) == 2, f"target {tcc}: origin saw {o.count(p)}"
    # no-cache and max-age=0: stored, and the next use is validated with the origin.
    for tcc in ("no-cache", "max-age=0"):
        p = url("/tgv", hdr("CDN-Cache-Control", tcc), etag="tg1", cc="max-age=600")
        r1 = d.get(p)
        assert "stored" in cs_params(r1), f"target {tcc}: {r1}"
        r2 = d.get(p)
        expect(r2, 200, "REVALIDATED", f"target {tcc}, second GET")
        assert o.count(p) == 2, f"target {tcc}: origin saw {o.count(p)}"


def test_targeted_first_present_wins(env):
    o, d = start(env)
    # Both on the default list: CacheWarp-Cache-Control first, whatever the line order.
    p = url("/tgf", hdr("CDN-Cache-Control", "max-age=60"),
            hdr("CacheWarp-Cache-Control", "no-store"), cc="max-age=60")
    d.get(p)
    r = d.get(p)
    assert xc(r) == "MISS" and cs_params(r).get("detail") == "no-store", r
    p = url("/tgf2", hdr("CDN-Cache-Control", "no-store"),
            hdr("CacheWarp-Cache-Control", "max-age=60"), cc="no-store")
    d.get(p)
    expect(d.get(p), 200, "HIT", "CacheWarp-Cache-Control before CDN-Cache-Control")
    # A targeted field not on the list changes nothing (§2.2).
    p = url("/tgf3", hdr("Other-Cache-Control", "max-age=60"), cc="no-store")
    d.get(p)
    r = d.get(p)
    assert xc(r) == "MISS" and o.count(p) == 2, r


def test_targeted_invalid_ignored(env):
    """An empty or unparsable targeted field is as if absent (RFC 9213 §2.1): the next one
    on the list, else Cache-Control, decides."""
    o, d = start(env)
    for bad in ("max-age=60,", "Max-Age=60", 'max-age="60', "max-age=60 public"):
        p = url("/tgi", hdr("CDN-Cache-Control", bad), cc="no-store")
        d.get(p)
        r = d.get(p)
        assert xc(r) == "MISS" and cs_params(r).get("detail") == "no-store", f"{bad!r}: {r}"
        p = url("/tgi2", hdr("CacheWarp-Cache-Control", bad),
                hdr("CDN-Cache-Control", "max-age=60"), cc="no-store")
        d.get(p)
        expect(d.get(p), 200, "HIT", f"invalid {bad!r} falls back to CDN-Cache-Control")


def test_targeted_list_setting(env):
    o = env.origin()
    # [] = off: CDN-Cache-Control is an ordinary header.
    d = env.daemon(o, workers=1, name="off", overrides=targets_cfg(env, "off", []))
    p = url("/tgl", hdr("CDN-Cache-Control", "max-age=60"), cc="no-store")
    d.get(p)
    r = d.get(p)
    assert xc(r) == "MISS" and cs_params(r).get("detail") == "no-store", r
    d.stop()
    # A list of our own: only its field counts.
    d = env.daemon(o, workers=1, name="own", overrides=targets_cfg(env, "own", ["Edge-Cache-Control"]))
    p = url("/tgl2", hdr("Edge-Cache-Control", "max-age=60"), cc="no-store")
    d.get(p)
    expect(d.get(p), 200, "HIT", "Edge-Cache-Control on the list")
    p = url("/tgl3", hdr("CDN-Cache-Control", "max-age=60"), cc="no-store")
    d.get(p)
    r = d.get(p)
    assert xc(r) == "MISS", f"CDN-Cache-Control is not on this list: {r}"


def test_fresh_age_list_uses_first_value(env):
    """RFC 9111 §5.1: an Age list value or several Age lines use the first value; an invalid
    first value means no usable Age."""
    o, d = start(env)
    for pairs in ((hdr("Age", "30, 5"),), (hdr("Age", "30"), hdr("Age", "5"))):
        p = url("/agl", *pairs, cc="max-age=60")
        d.get(p)
        r = d.get(p)
        expect(r, 200, "HIT", f"{pairs}")
        assert 30 <= int(r.header("age")) <= 32, f"Age must be the first value, 30: {r}"
    for pairs in ((hdr("Age", "abc, 30"),), (hdr("Age", "-1"), hdr("Age", "30"))):
        p = url("/agl", *pairs, cc="max-age=60")
        d.get(p)
        r = d.get(p)
        expect(r, 200, "HIT", f"{pairs}")
        assert int(r.header("age")) <= 2, f"an invalid first Age must not be replaced: {r}"
    p = url("/agl", hdr("Age", "100, 5"), cc="max-age=60")
    d.get(p)
    r = d.get(p)
    assert xc(r) != "HIT" and o.count(p) == 2, f"Age 100 (first value) > max-age 60: {r}"
