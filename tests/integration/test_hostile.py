"""Hostile and broken input, through the running daemon.

The promise under test: "Bad input — a malformed request, a hostile origin response, a
broken config, a full cache, a dead Redis — gets a clear error or a safe fallback, and
nothing already cached is lost or corrupted."

Origin side: a scripted raw-socket origin (cw.RawOrigin) answers a cacheable GET with a
broken status line, oversized or folded headers, a truncated or mis-chunked body, a body
over the caps, silence, a reset, conflicting framing, or NUL/CR bytes in a field. For each:
the client gets a clear answer (502/504 with a short body, or the response passed on when
it is a valid one; an answer that breaks off after some of its body streamed out is cut short:
the connection closes before its framing ends), the bad response is not stored (a second request reaches the origin
again), the daemon keeps serving (same worker processes, a new URL is fetched), and a
different URL cached before is still a HIT with its original body. With a stale copy inside
stale-if-error, the stale copy answers instead of the error.

Client side: raw requests to the proxy (no version, long target, header without a colon,
many headers, bad Host, absolute-form, CL+TE smuggling) get a clear 4xx, reach the origin
only when they are valid, and leave the cache intact.
"""

import email.utils
import http.client
import re
import socket
import struct
import time

import cw

TF = cw.TIME_FACTOR
GOOD_BODY = b"the good body \x00\x01\xfe\xff " * 16  # binary on purpose: compared byte for byte


# ---------------------------------------------------------------------------------------
# helpers


def http_date(t=None):
    return email.utils.formatdate(time.time() if t is None else t, usegmt=True)


def head(status_line, headers):
    """A raw response head: status line, header lines, blank line (no Content-Length added)."""
    out = status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return out.encode("latin-1")


def ok(body, cc="max-age=600", extra=()):
    """A valid, cacheable 200 with Content-Length; the connection closes after it."""
    return head("HTTP/1.1 200 OK", [
        ("Date", http_date()), ("Cache-Control", cc), ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(body))), ("Connection", "close")] + list(extra)) + body


def base_headers(cc="max-age=600"):
    return [("Date", http_date()), ("Cache-Control", cc), ("Content-Type", "text/plain")]


def reset(sock):
    """Closes with RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Site:
    """A RawOrigin whose answers are scripted per target: site[target] = bytes or callable.
    `accept_action`, when set, is applied to every accepted connection before its request is
    read (a reset right after accept, for instance)."""

    def __init__(self, env):
        self.script = {}
        self.accept_action = None
        self.ro = cw.RawOrigin(env, self._respond, on_accept=self._on_accept)
        self.port = self.ro.port

    def _on_accept(self, sock):
        act = self.accept_action
        if act is None:
            return False
        act(sock)
        return True

    def _respond(self, method, target, headers):
        out = self.script.get(target)
        if out is None:
            return head("HTTP/1.1 404 Not Found", [("Content-Length", "0"), ("Connection", "close")])
        return out

    def __setitem__(self, target, out):
        self.script[target] = out

    def count(self, target):
        return self.ro.count(target)

    def send_then(self, data, wait):
        """An answer that sends data, then stays silent for `wait` seconds (or until the
        origin stops) before closing."""

        def act(sock):
            sock.sendall(data)
            self.ro.stopped.wait(wait)

        return act


def xc(r):
    return r.header("x-cache")


def cs_params(r):
    parts = [p.strip() for p in r.header("cache-status", "").split(";")]
    out = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        out[k] = v if eq else True
    return out


def get(d, path, timeout=10.0, **kw):
    """d.get(path), or the exception it raised (asserted on by the caller)."""
    try:
        return d.get(path, timeout=timeout, **kw)
    except Exception as e:  # noqa: BLE001 - a dropped connection is a result to report
        return e


def raw_get(d, path, timeout=10.0):
    """A GET sent and read raw (no limit on the number of fields): a cw.Response."""
    t0 = time.monotonic()
    out = cw.raw_request(d.port, cw.request_bytes(d.port, path), timeout=timeout)
    assert out, f"GET {path}: connection closed without an answer"
    status, hdrs, body = cw.parse_response(out)
    return cw.Response(status, hdrs, body, time.monotonic() - t0)


def assert_clear_error(r, statuses, what):
    """A clear error: one of statuses, X-Cache: ERROR, a short non-empty text body, a
    Cache-Status that says why."""
    assert not isinstance(r, Exception), f"{what}: no answer at all ({r!r}), want {statuses}"
    assert r.status in statuses, f"{what}: expected {statuses}, got {r}"
    assert xc(r) == "ERROR", f"{what}: X-Cache should be ERROR: {r}"
    assert 0 < len(r.body) <= 200, f"{what}: error body should be short and non-empty: {r}"
    assert r.header("content-type", "").startswith("text/plain"), f"{what}: {r}"
    assert "detail" in cs_params(r), f"{what}: Cache-Status without detail: {r}"


class Harness:
    """One origin (Site), one daemon (one worker, so that a crash shows as a new pid), and
    /good cached before anything hostile happens."""

    def __init__(self, env, route=None, origin_cfg=None, overrides=None, workers=1):
        self.site = Site(env)
        self.site["/good"] = ok(GOOD_BODY)
        self.d = env.daemon(self.site.ro, workers=workers, route=route, origin_cfg=origin_cfg,
                            overrides=overrides)
        self.workers = sorted(cw.wait_for(
            lambda: self.d.workers() if len(self.d.workers()) == workers else None, 5,
            what=f"{workers} workers"))
        r = self.d.get("/good")
        assert r.status == 200 and xc(r) == "MISS" and r.body == GOOD_BODY, f"prime /good: {r}"
        r = self.d.get("/good")
        assert r.status == 200 and xc(r) == "HIT" and r.body == GOOD_BODY, f"/good HIT: {r}"
        self.normal = 0
        self.failures = []

    def case(self, what, fn, *args):
        """Runs one case; a failed assertion is kept (and reported by finish()) so that one
        broken case does not hide the others."""
        try:
            fn(*args)
        except AssertionError as e:
            self.failures.append(f"[{what}] {e}")

    def finish(self):
        if self.failures:
            raise AssertionError(f"{len(self.failures)} case(s) failed:\n" +
                                 "\n".join(self.failures))

    def assert_intact(self, what):
        """The daemon still runs with the same workers, /good is still a HIT with its body,
        and a new URL is fetched and served."""
        d = self.d
        assert d.is_running(), f"after {what}: the supervisor exited"
        now = sorted(d.workers())
        if now != self.workers:
            was = self.workers
            self.workers = sorted(cw.wait_for(
                lambda: d.workers() if len(d.workers()) == len(was) else None, 5,
                what="the workers to be back"))
            raise AssertionError(f"after {what}: workers changed {was} -> {now} (a worker "
                                 f"crashed: see the daemon log)")
        before = self.site.count("/good")
        r = get(d, "/good")
        assert not isinstance(r, Exception) and r.status == 200 and xc(r) == "HIT", \
            f"after {what}: /good is no longer a HIT: {r!r}"
        assert r.body == GOOD_BODY, f"after {what}: /good body corrupted: {r.body[:80]!r}"
        assert self.site.count("/good") == before, f"after {what}: the /good HIT reached the origin"
        self.normal += 1
        p = f"/normal{self.normal}"
        self.site[p] = ok(b"normal %d" % self.normal)
        r = get(d, p)
        assert not isinstance(r, Exception) and r.status == 200 and \
            r.body == b"normal %d" % self.normal, f"after {what}: a normal request failed: {r!r}"

    def bad_twice(self, path, out, check, what):
        """The origin answers `path` with `out`: both requests are checked, both reach the
        origin (nothing stored), and the cache is intact afterwards. Failures are kept."""
        self.case(what, self._bad_twice, path, out, check, what)

    def _bad_twice(self, path, out, check, what):
        self.site[path] = out
        before = self.site.count(path)
        for i in (1, 2):
            check(get(self.d, path), f"{what} (request {i})")
        n = self.site.count(path) - before
        assert n == 2, f"{what}: origin saw {n} requests for {path}, want 2 (the bad answer " \
                       f"must not be stored)"
        self.assert_intact(what)


def _fail(msg):
    raise AssertionError(msg)


def expect_502(r, what):
    assert_clear_error(r, (502,), what)


def expect_cut_short(sent):
    """For an answer that breaks off after some of its body left the origin: the body streams
    to the client as it arrives (docs/ARCHITECTURE.md, 6a), so the status line has gone out
    and the break can only show as the connection closing before the body's framing ends
    (RFC 9112 §8: the client records the message as incomplete), never as a body that looks
    whole. What did arrive is exactly the start of what the origin sent."""

    def check(r, what):
        assert isinstance(r, http.client.IncompleteRead), \
            f"{what}: want an answer cut short (IncompleteRead), got {r!r}"
        assert sent.startswith(bytes(r.partial)), \
            f"{what}: the part received {bytes(r.partial)[:40]!r} is not the start of {sent[:40]!r}"

    return check


# =======================================================================================
# origin side


def test_hostile_invalid_status_line(env):
    h = Harness(env)
    body = b"should never be seen"
    cases = [
        ("/st-abc", b"HTTP/1.1 abc OK\r\nContent-Length: 20\r\nCache-Control: max-age=600\r\n"
                    b"Connection: close\r\n\r\n" + body, "status 'abc'"),
        ("/st-garbage", b"garbage\r\n\r\n", "status line 'garbage'"),
        ("/st-2digit", b"HTTP/1.1 20 OK\r\nContent-Length: 20\r\nCache-Control: max-age=600\r\n"
                       b"Connection: close\r\n\r\n" + body, "two-digit status"),
        ("/st-empty", b"", "no answer at all (empty reply)"),
    ]
    for path, out, what in cases:
        h.bad_twice(path, out, expect_502, what)
    h.finish()


def test_hostile_header_limits(env):
    h = Harness(env)
    # Over 64 KiB of header block in fewer than 100 fields.
    big = [(f"X-Big-{i}", "a" * 2000) for i in range(40)]
    h.bad_twice("/hl-bytes", head("HTTP/1.1 200 OK", base_headers() + big +
                                  [("Content-Length", "2"), ("Connection", "close")]) + b"ok",
                expect_502, "header block over 64 KiB")
    # 101 fields (5 fixed + 96).
    many = base_headers() + [("Content-Length", "2"), ("Connection", "close")]
    many += [(f"X-H-{i}", str(i)) for i in range(101 - len(many))]
    assert len(many) == 101
    h.bad_twice("/hl-count", head("HTTP/1.1 200 OK", many) + b"ok", expect_502,
                "101 header fields")
    # Exactly 100 fields is within the limit: passed on whole (and, when stored, served
    # whole from the cache). Read raw: http.client itself refuses more than 100 fields.
    hundred = many[:-1]
    h.site["/hl-100"] = head("HTTP/1.1 200 OK", hundred) + b"ok"

    def hundred_fields():
        for i in (1, 2):
            r = raw_get(h.d, "/hl-100")
            assert r.status == 200 and r.body == b"ok", f"request {i}: {r!r}"
            missing = [k for k, _ in hundred if k.startswith("X-H-") and r.header(k) is None]
            assert not missing, f"request {i} ({xc(r)}): lost {missing}"
        h.assert_intact("100 header fields")

    h.case("100 header fields", hundred_fields)
    # One field value over CW_LIMIT_HEADER_VALUE_BYTES (8 KiB) in a block under 64 KiB:
    # refused (502, not stored), or passed on whole — never silently dropped, and never a
    # stored entry that cannot be served.
    long_v = "v" * 10000
    h.site["/hl-value"] = head("HTTP/1.1 200 OK", base_headers() + [
        ("X-Long", long_v), ("Content-Length", "2"), ("Connection", "close")]) + b"ok"

    def long_value_once(i):
        r = raw_get(h.d, "/hl-value")
        what = f"request {i}"
        if r.status == 502:
            return assert_clear_error(r, (502,), what)
        assert r.status == 200 and r.body == b"ok", f"{what}: {r}"
        assert r.header("x-long") == long_v, \
            f"{what} ({xc(r)}): the {len(long_v)}-byte field was silently dropped " \
            f"(got {len(r.header('x-long') or '')} bytes): {r}"

    def long_value():
        errs = []
        for i in (1, 2):
            try:
                long_value_once(i)
            except AssertionError as e:
                errs.append(str(e))
        assert not errs, "; ".join(errs)
        h.assert_intact("one 10000-byte field value")

    h.case("one 10000-byte field value", long_value)
    h.finish()


def test_hostile_obs_fold_and_field_syntax(env):
    h = Harness(env)

    def fold_check(r, what):
        # RFC 9112 §5.2: a proxy rejects obs-fold (502) or replaces it with SP.
        assert not isinstance(r, Exception), f"{what}: {r!r}"
        if r.status == 200:
            assert r.header("x-folded") == "first second", f"{what}: fold not replaced: {r}"
        else:
            assert_clear_error(r, (502,), what)

    h.bad_twice("/fold", head("HTTP/1.1 200 OK", base_headers() + [
        ("X-Folded", "first\r\n second"), ("Content-Length", "2"), ("Connection", "close")])
        + b"ok", fold_check, "obs-fold continuation line")
    # Whitespace before the first field line (RFC 9112 §2.2).
    h.bad_twice("/fold-first", b"HTTP/1.1 200 OK\r\n X-Lead: 1\r\nContent-Length: 2\r\n"
                b"Cache-Control: max-age=600\r\nConnection: close\r\n\r\nok", expect_502,
                "whitespace line right after the status line")
    # Two different Content-Length values (RFC 9112 §6.3 (5): a proxy MUST answer 502).
    h.bad_twice("/two-cl", head("HTTP/1.1 200 OK", base_headers() + [
        ("Content-Length", "2"), ("Content-Length", "5"), ("Connection", "close")]) + b"hello",
        expect_502, "two different Content-Length values")
    h.finish()


def test_hostile_truncated_bodies(env):
    h = Harness(env)
    h.bad_twice("/trunc", head("HTTP/1.1 200 OK", base_headers() + [
        ("Content-Length", "1000"), ("Connection", "close")]) + b"x" * 10,
        expect_cut_short(b"x" * 10), "body shorter than Content-Length, then close")
    chunked = head("HTTP/1.1 200 OK", base_headers() + [("Transfer-Encoding", "chunked"),
                                                        ("Connection", "close")])
    h.bad_twice("/chunk-cut", chunked + b"10\r\n0123456789abcdef\r\n20\r\n0123",
                expect_cut_short(b"0123456789abcdef0123"),
                "chunked body cut in the middle of a chunk")
    h.bad_twice("/chunk-nolast", chunked + b"4\r\nabcd\r\n", expect_cut_short(b"abcd"),
                "chunked body without its last chunk")
    h.bad_twice("/chunk-bad", chunked + b"zz\r\nabcd\r\n0\r\n\r\n", expect_502,
                "chunk size that is not hex")
    h.bad_twice("/chunk-huge", chunked + b"ffffffffffffffffffff\r\nabcd\r\n0\r\n\r\n",
                expect_502, "chunk size that overflows 64 bits")
    h.finish()


def test_hostile_body_over_max_object_served_not_stored(env):
    h = Harness(env, overrides={"cache": {"path": f"{env.dir}/l1.mdb", "size": "256M",
                                          "max_object": "1M"}})
    body = bytes(range(256)) * (2 * 4096 + 3)  # about 2 MiB
    h.site["/large"] = ok(body)

    def large():
        for i in (1, 2):
            r = get(h.d, "/large", timeout=20)
            assert not isinstance(r, Exception), f"request {i}: {r!r}"
            assert r.status == 200 and xc(r) == "MISS", f"request {i}: want 200 MISS: {r}"
            assert r.body == body, f"request {i}: body differs ({len(r.body)} bytes)"
            p = cs_params(r)
            assert "stored" not in p and p.get("detail") == "too-large", \
                f"request {i}: Cache-Status should say detail=too-large, unstored: {r}"
        assert h.site.count("/large") == 2, f"origin saw {h.site.count('/large')}, want 2"
        h.assert_intact("object over max_object")

    h.case("object over max_object (1M), under the 64 MiB fetch cap", large)

    # Past what a buffered fetch held (64 MiB, answered 502 before answers streamed): it
    # streams through whole, unstored, like any answer over max_object.
    huge = b"z" * ((64 << 20) + 4096)

    def check_huge(r, what):
        assert not isinstance(r, Exception), f"{what}: {r!r}"
        assert r.status == 200 and xc(r) == "MISS" and r.body == huge, f"{what}: {r}"
        assert cs_params(r).get("detail") == "too-large", f"{what}: {r}"

    h.bad_twice("/huge", ok(huge), check_huge, "body over 64 MiB")
    h.finish()


def test_hostile_origin_silence_times_out(env):
    # The timeout is the longest silence, to the head and then between bytes. Silence before
    # any body byte is a clean 504; after some, the answer that has started is cut short.
    h = Harness(env, origin_cfg={"timeout": "1s"})
    cut = {"/head-then-silence": b"partial", "/chunk-then-silence": b"abcd"}
    cases = {
        "/silent": h.site.send_then(b"", wait=10),  # reads the request, never answers
        "/head-then-silence": h.site.send_then(head("HTTP/1.1 200 OK", base_headers() + [
            ("Content-Length", "100")]) + b"partial", wait=10),
        "/chunk-then-silence": h.site.send_then(head("HTTP/1.1 200 OK", base_headers() + [
            ("Transfer-Encoding", "chunked")]) + b"4\r\nabcd\r\n", wait=10),
    }
    for p, out in cases.items():
        h.site[p] = out
    paths = list(cases)
    # The three at once, twice (the second round proves nothing was stored).
    for rnd in (1, 2):
        rs = cw.concurrent(lambda i: get(h.d, paths[i], timeout=10), len(paths), len(paths))
        for p, r in zip(paths, rs):
            what = f"{p} (request {rnd})"

            def check(r=r, what=what, p=p):
                if p in cut:
                    expect_cut_short(cut[p])(r, what)
                    return
                assert_clear_error(r, (504,), what)
                assert r.elapsed < 3.0 * TF, f"{what}: 504 took {r.elapsed:.2f}s, timeout 1s"

            h.case(what, check)
    for p in paths:
        h.case(p, lambda p=p: None if h.site.count(p) == 2 else
               _fail(f"origin saw {h.site.count(p)} requests, want 2"))
    h.case("origin silence", h.assert_intact, "origin silence")
    h.finish()


def test_hostile_connection_reset_and_close(env):
    h = Harness(env)
    ro = h.site.ro

    def at_accept(action, what):
        h.site.accept_action = action
        try:
            before = ro.accepts
            for i in (1, 2):
                expect_502(get(h.d, "/reset"), f"request {i}")
            assert ro.accepts - before >= 2, \
                f"{ro.accepts - before} connections for 2 requests (something was stored?)"
        finally:
            h.site.accept_action = None
        h.assert_intact(what)

    h.case("RST right after accept", at_accept, reset, "RST right after accept")
    h.case("close right after accept", at_accept, lambda s: s.close(), "close right after accept")
    # RST after the request was read, before any answer.
    h.bad_twice("/reset-after-request", reset, expect_502, "RST after reading the request")

    # RST in the middle of the body.
    def mid_body(sock):
        sock.sendall(head("HTTP/1.1 200 OK", base_headers() + [("Content-Length", "100")]) + b"part")
        time.sleep(0.05)
        reset(sock)

    h.bad_twice("/reset-mid-body", mid_body, expect_cut_short(b"part"),
                "RST in the middle of the body")
    h.finish()


def test_hostile_content_length_and_transfer_encoding(env):
    """RFC 9112 §6.3: with both, chunked framing wins and the message "ought to be handled as
    an error" (a smuggling or splitting attempt); nginx and Varnish refuse it (502/503). A
    proxy that forwards it anyway MUST drop the Content-Length. Either way it is not stored."""
    h = Harness(env)
    chunks = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    out = head("HTTP/1.1 200 OK", base_headers() + [
        ("Content-Length", "3"), ("Transfer-Encoding", "chunked"), ("Connection", "close")]) + chunks
    h.site["/cl-te"] = out
    req = cw.request_bytes(h.d.port, "/cl-te")

    def cl_te():
        for i in (1, 2):
            what = f"request {i}"
            raw = cw.raw_request(h.d.port, req, timeout=10)
            status, hdrs, rest = cw.parse_response(raw)
            if status == 502:
                assert hdrs.get("x-cache") == "ERROR", f"{what}: {raw[:400]!r}"
                continue
            assert status == 200, f"{what}: neither 502 nor 200: {raw[:400]!r}"
            assert rest == b"hello world", f"{what}: body is not the chunked one: {raw[:400]!r}"
            assert hdrs.get("content-length") == "11", f"{what}: framing: {raw[:400]!r}"
            assert raw.split(b"\r\n\r\n", 1)[1] == b"hello world", f"{what}: extra bytes: {raw!r}"
        n = h.site.count("/cl-te")
        assert n == 2, f"origin saw {n} requests, want 2 (a response with conflicting " \
                       f"framing was stored and served as a HIT)"
        h.assert_intact("Content-Length and Transfer-Encoding")

    h.case("Content-Length and Transfer-Encoding", cl_te)
    h.finish()


def test_hostile_nul_and_cr_in_field_values(env):
    h = Harness(env)
    # RFC 9110 §5.5: NUL in a field value: reject (or replace with SP).
    h.bad_twice("/nul", head("HTTP/1.1 200 OK", base_headers() + [
        ("X-Nul", "a\x00b"), ("Content-Length", "2"), ("Connection", "close")]) + b"ok",
        expect_502, "NUL in a field value")
    h.bad_twice("/nul-name", head("HTTP/1.1 200 OK", base_headers() + [
        ("X-N\x00ul", "ab"), ("Content-Length", "2"), ("Connection", "close")]) + b"ok",
        expect_502, "NUL in a field name")
    # A bare CR in a value (RFC 9112 §2.2): invalid (502), or replaced by SP; never a second
    # field for the client (response splitting), never a bare CR on the wire, and never a
    # stored entry that later answers something else.
    h.site["/cr"] = head("HTTP/1.1 200 OK", base_headers() + [
        ("X-Cr", "a\rX-Injected: 1"), ("Content-Length", "2"), ("Connection", "close")]) + b"ok"
    req = cw.request_bytes(h.d.port, "/cr")

    def bare_cr():
        errs = []
        for i in (1, 2):
            try:
                one_cr(i)
            except AssertionError as e:
                errs.append(str(e))
        n = h.site.count("/cr")
        if n != 2:
            errs.append(f"origin saw {n} requests, want 2 (the response was stored)")
        assert not errs, "; ".join(errs)
        h.assert_intact("bare CR in a field value")

    def one_cr(i):
        if True:
            what = f"request {i}"
            raw = cw.raw_request(h.d.port, req, timeout=10)
            head_part = raw.split(b"\r\n\r\n", 1)[0]
            assert b"\r" not in head_part.replace(b"\r\n", b""), f"{what}: bare CR sent: {raw!r}"
            status, hdrs, rest = cw.parse_response(raw)
            assert "x-injected" not in hdrs, f"{what}: the CR split the field: {raw!r}"
            if status == 200:
                assert rest == b"ok" and hdrs.get("x-cr") == "a X-Injected: 1", \
                    f"{what}: 200 without the field (CR replaced by SP): {raw[:400]!r}"
            else:
                assert status == 502, f"{what}: want 502 (or 200, CR replaced): {raw[:400]!r}"

    h.case("bare CR in a field value", bare_cr)

    # Whitespace between a field name and its colon (RFC 9112 §5.1): a proxy removes it or
    # answers 502.
    def sp_colon():
        h.site["/sp-colon"] = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nX-Sp : v\r\n" \
                              b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
        errs = []
        for i in (1, 2):
            raw = cw.raw_request(h.d.port, cw.request_bytes(h.d.port, "/sp-colon"), timeout=10)
            status, hdrs, rest = cw.parse_response(raw)
            if b"X-Sp :" in raw:
                errs.append(f"request {i}: passed on with the space: {raw!r}")
            if status == 200:
                if hdrs.get("x-sp") != "v":
                    errs.append(f"request {i}: 200 without the field (silently dropped): "
                                f"{raw[:400]!r}")
            elif status != 502:
                errs.append(f"request {i}: want 502 or 200 with 'X-Sp: v': {raw[:400]!r}")
        assert not errs, "; ".join(errs)
        h.assert_intact("whitespace before a field colon")

    h.case("whitespace before a field colon", sp_colon)
    h.finish()


def test_hostile_stale_copy_served_on_bad_response(env):
    """RFC 5861 §4 with the route's sie: a stale copy answers instead of the error, and
    survives the bad response (the next request gets it again)."""
    h = Harness(env, route={"sie": "60s"})
    bad = {
        "truncated": head("HTTP/1.1 200 OK", base_headers("max-age=60") + [
            ("Content-Length", "1000"), ("Connection", "close")]) + b"x" * 10,
        "status-abc": b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        "garbage": b"garbage\r\n\r\n",
        "chunk-bad": head("HTTP/1.1 200 OK", base_headers("max-age=60") + [
            ("Transfer-Encoding", "chunked"), ("Connection", "close")]) + b"zz\r\nab\r\n0\r\n\r\n",
        "chunk-cut": head("HTTP/1.1 200 OK", base_headers("max-age=60") + [
            ("Transfer-Encoding", "chunked"), ("Connection", "close")]) + b"10\r\nabc",
        "obs-fold": head("HTTP/1.1 200 OK", base_headers("max-age=60") + [
            ("X-F", "a\r\n b"), ("Content-Length", "2"), ("Connection", "close")]) + b"ok",
        "too-many-fields": head("HTTP/1.1 200 OK", base_headers("max-age=60") + [
            (f"X-H-{i}", "1") for i in range(110)] + [("Content-Length", "2")]) + b"ok",
        "nul": head("HTTP/1.1 200 OK", base_headers("max-age=60") + [
            ("X-Nul", "a\x00b"), ("Content-Length", "2"), ("Connection", "close")]) + b"ok",
        "reset": reset,
        "empty": b"",
    }

    def one(name, out):
        p = f"/sie-{name}"
        stale_body = f"stale copy of {name}".encode()
        h.site[p] = ok(stale_body, cc="max-age=1", extra=[("Age", "5")])  # stale on arrival
        r = get(h.d, p)
        assert not isinstance(r, Exception) and r.status == 200 and r.body == stale_body, \
            f"priming: {r!r}"
        h.site[p] = out
        for i in (1, 2):
            r = get(h.d, p)
            assert not isinstance(r, Exception), f"request {i}: {r!r}"
            assert r.status == 200 and xc(r) == "STALE-ERROR", \
                f"request {i}: expected 200 STALE-ERROR, got {r}"
            assert r.body == stale_body, f"request {i}: body {r.body!r}"
        assert h.site.count(p) == 3, f"origin saw {h.site.count(p)}, want 3"

    for name, out in bad.items():
        h.case(f"{name} with a stale copy inside stale-if-error", one, name, out)
    h.case("bad responses with stale copies", h.assert_intact, "bad responses with stale copies")
    h.finish()


# =======================================================================================
# client side


def raw(h, data, what, timeout=5.0):
    """Sends raw bytes to the proxy; returns (status or None, headers, body, raw bytes).
    What arrived before a reset counts (libmicrohttpd answers 414/431 and then closes with
    unread request bytes, which resets the connection)."""
    out = b""
    with socket.create_connection((cw.LOOPBACK, h.d.port), timeout=timeout) as s:
        try:
            s.sendall(data)
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        except (ConnectionResetError, BrokenPipeError):
            pass
        except socket.timeout:
            raise AssertionError(f"{what}: no answer and no close within {timeout}s: {out[:200]!r}")
    if not out:
        return None, {}, b"", out
    status, hdrs, body = cw.parse_response(out)
    return status, hdrs, body, out


def expect_4xx(h, data, what, statuses=None):
    status, hdrs, body, out = raw(h, data, what)
    assert status is not None, f"{what}: connection closed without an answer"
    ok_ = status in statuses if statuses else 400 <= status <= 499
    assert ok_, f"{what}: expected {statuses or '4xx'}, got {out[:300]!r}"
    return status, hdrs, body


def test_hostile_client_requests(env):
    h = Harness(env)
    port = h.d.port
    host = f"Host: 127.0.0.1:{port}\r\n"
    seen_before = len(h.site.ro.requests)

    def no_version():
        # HTTP/0.9 has no status line to answer with: a 4xx/505 or a plain close are both
        # clear; a hang or a crash are not.
        status, _, _, out = raw(h, b"GET /good\r\n\r\n", "no version")
        assert status is None or 400 <= status <= 505, f"{out[:300]!r}"

    h.case("request line without a version", no_version)
    cases = [
        (b"GET /good HTTP/1.1\r\n" + host.encode() + b"NoColonHere\r\nConnection: close\r\n\r\n",
         "header line without a colon", (400,)),
        (("GET /" + "a" * 9000 + " HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n").encode(),
         "request target of 9000 bytes (over CW_LIMIT_URL_BYTES = 8192)", (414, 400)),
        (("GET /" + "a" * 40000 + " HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n").encode(),
         "request target of 40000 bytes", (414, 400)),
        (("GET /good HTTP/1.1\r\n" + host + "".join(f"X-Pad-{i}: {'p' * 600}\r\n" for i in range(100))
          + "Connection: close\r\n\r\n").encode(), "60 KB of request headers", (431, 400, 413)),
        (b"GET /good HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n", "Host 'a b'", (400,)),
        (b"GET /good HTTP/1.1\r\nHost: evil/../\r\nConnection: close\r\n\r\n", "Host 'evil/../'",
         (400,)),
        (b"GET /good HTTP/1.1\r\nHost: a\x01b\r\nConnection: close\r\n\r\n",
         "Host with a control byte", (400,)),
        (("GET /good HTTP/1.1\r\nHost: " + "h" * 300 + "\r\nConnection: close\r\n\r\n").encode(),
         "Host of 300 bytes", (400,)),
        (b"GET /good HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 without Host", (400,)),
        (b"GET /good HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
         "two Host fields", (400,)),
    ]
    for data, what, statuses in cases:
        h.case(what, expect_4xx, h, data, what, statuses)

    def none_forwarded():
        fwd = [t for _, t, _ in h.site.ro.requests[seen_before:]]
        assert not fwd, f"malformed requests reached the origin: {[t[:60] for t in fwd]}"
        h.assert_intact("malformed requests")

    h.case("nothing malformed forwarded", none_forwarded)

    # 200 short header fields: a valid request, answered (from the cache) or refused with 431.
    def many_fields():
        data = ("GET /good HTTP/1.1\r\n" + host + "".join(f"X-F{i}: {i}\r\n" for i in range(200))
                + "Connection: close\r\n\r\n").encode()
        status, hdrs, body, out = raw(h, data, "200 header fields")
        assert status in (200, 431, 400), f"{out[:300]!r}"
        if status == 200:
            assert body == GOOD_BODY and hdrs.get("x-cache") == "HIT", f"{out[:300]!r}"
        h.assert_intact("200 header fields")

    h.case("200 request header fields", many_fields)

    # Absolute-form target naming another host: RFC 9112 §3.2.2 makes its authority the
    # request's host, so the origin is asked for that host, and only an answer the origin gave
    # for that host is ever stored under it (never one made for the Host field's host).
    def absolute_form():
        h.site["/abs"] = ok(b"absolute form body")
        before = len(h.site.ro.requests)
        data = ("GET http://other.example/abs HTTP/1.1\r\n" + host +
                "Connection: close\r\n\r\n").encode()
        status, hdrs, body, out = raw(h, data, "absolute-form target")
        assert status == 200, f"{out[:300]!r}"
        sent = [hd for _, t, hd in h.site.ro.requests[before:] if t.endswith("/abs")]
        assert sent and all(hd.get("host") == "other.example" for hd in sent), \
            f"the origin was not asked for the target's host: {sent}"
        r = get(h.d, "/abs", headers={"Host": "127.0.0.1"})
        assert not isinstance(r, Exception), r
        assert xc(r) != "HIT", f"the target's host's answer served for another host: {r}"
        h.assert_intact("absolute-form target")

    h.case("absolute-form target", absolute_form)

    # Request smuggling: Content-Length and Transfer-Encoding together (RFC 9112 §6.1: 400,
    # or chunked framing and then close the connection). Either way, the "smuggled" request
    # behind the chunked body is never answered nor forwarded.
    def smuggling():
        h.site["/smuggled"] = ok(b"smuggled")
        h.site["/s"] = head("HTTP/1.1 200 OK", [("Content-Length", "2"),
                                                ("Connection", "close")]) + b"ok"
        before = len(h.site.ro.requests)
        smuggle = ("POST /s HTTP/1.1\r\n" + host + "Content-Length: 35\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                   "GET /smuggled HTTP/1.1\r\n" + host + "\r\n").encode()
        out = b""
        with socket.create_connection((cw.LOOPBACK, port), timeout=3) as s:
            s.sendall(smuggle)
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    out += b
            except (socket.timeout, ConnectionResetError):
                pass
        answers = re.findall(rb"HTTP/1\.[01] (\d{3})", out)
        assert answers, f"no answer: {out[:300]!r}"
        assert len(answers) == 1, f"the smuggled request was answered too: {out[:600]!r}"
        assert int(answers[0]) in (400, 200), f"{out[:300]!r}"
        assert h.site.count("/smuggled") == 0, "the smuggled request reached the origin"
        for m, t, hd in h.site.ro.requests[before:]:
            assert not ("content-length" in hd and "transfer-encoding" in hd), \
                f"CL and TE passed on to the origin together: {m} {t} {hd}"
        h.assert_intact("CL+TE request smuggling")

    h.case("CL+TE request smuggling", smuggling)
    h.finish()
