"""Request smuggling, cache poisoning and forwarding attacks, on raw sockets, against a
2-worker daemon in front of a lenient, recording origin (lenient_origin.LenientOrigin).

The promise under test: CacheWarp reads every request strictly before anything is
forwarded, rebuilds the origin request from what it understood, normalises paths, sets the
forwarding headers itself, and refuses cache poisoning. The origin here parses the way many
real origins do (bare LF, `name : value`, first Content-Length, "chunked" anywhere), so any
ambiguity the proxy lets through shows up in what the origin recorded.

For every rejected request: the status (400; 501 for a transfer coding it does not
implement), the connection closed right after the answer, nothing of the request at the
origin. After each smuggling attempt: 10 clean keep-alive clients each get the answer for
their own path, and nothing is cached under a victim URL.

Every wait is bounded and synchronised on an event (an answer, EOF, an origin-side count, a
/metrics value); bounds scale with CW_TIME_FACTOR.
"""

import re
import select
import socket
import threading
import time
import uuid

import cw
from lenient_origin import LenientOrigin

TF = cw.TIME_FACTOR
ANSWER_WITHIN = 3.0 * TF   # a rejected request is answered within this
CLOSE_WITHIN = 1.5 * TF    # and its connection closed within this after the answer
SECRET = b"/secret/alice-account"
CR_BODY = b"0\r\n\r\nGET /secret/alice-account HTTP/1.1\r\nX: y"


# ---------------------------------------------------------------------------------------
# helpers


class Checks:
    """Collects failed cases so that one broken case does not hide the others."""

    def __init__(self):
        self.failures = []

    def case(self, what, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except AssertionError as e:
            self.failures.append(f"[{what}] {e}")
        except OSError as e:
            self.failures.append(f"[{what}] socket error: {e!r}")
        return None

    def finish(self):
        if self.failures:
            raise AssertionError(f"{len(self.failures)} case(s) failed:\n" +
                                 "\n".join(self.failures))


def tag():
    return uuid.uuid4().hex[:10]


def host_line(d):
    return f"Host: {cw.LOOPBACK}:{d.port}\r\n".encode()


class Reply:
    """What came back on one connection: raw bytes, whether the server closed (EOF or
    reset), when the first answer was complete and how long the whole exchange took."""

    def __init__(self, raw, closed, answered_after, elapsed):
        self.raw = raw
        self.closed = closed
        self.answered_after = answered_after
        self.elapsed = elapsed

    @property
    def statuses(self):
        return [int(s) for s in re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3})", self.raw)]

    @property
    def status(self):
        s = self.statuses
        return s[0] if s else None

    def __repr__(self):
        return (f"<Reply statuses={self.statuses} closed={self.closed} "
                f"answered_after={self.answered_after} raw={self.raw[:300]!r}>")


def first_answer_len(buf):
    """Length of the first complete answer in buf (Content-Length framing), or None."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    if m is None:
        return None
    n = len(head) + 4 + int(m.group(1))
    return n if len(buf) >= n else None


def exchange(port, data, answer_within=None, close_within=None):
    """Sends data on a fresh connection; reads until the server closes, or until
    close_within seconds after the first whole answer, or answer_within seconds without one."""
    answer_within = ANSWER_WITHIN if answer_within is None else answer_within
    close_within = CLOSE_WITHIN if close_within is None else close_within
    t0 = time.monotonic()
    buf = b""
    closed = False
    answered = None
    s = socket.create_connection((cw.LOOPBACK, port), timeout=answer_within)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading it all
        while True:
            now = time.monotonic()
            deadline = (t0 + answer_within) if answered is None else (answered + close_within)
            if now >= deadline:
                break
            s.settimeout(deadline - now)
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not b:
                closed = True
                break
            buf += b
            if answered is None and first_answer_len(buf) is not None:
                answered = time.monotonic()
    finally:
        s.close()
    return Reply(buf, closed, None if answered is None else answered - t0, time.monotonic() - t0)


def rejected(d, o, data, statuses, what, markers=()):
    """data gets one answer with a status in statuses, the connection is closed after it,
    and nothing reached the origin (its raw bytes unchanged, none of markers in them)."""
    before = o.raw_len()
    r = exchange(d.port, data)
    errs = []
    if r.status is None:
        errs.append(f"no answer within {ANSWER_WITHIN}s (closed={r.closed}): {r.raw[:200]!r}")
    elif r.status not in statuses:
        errs.append(f"status {r.status}, want {statuses}: {r.raw[:300]!r}")
    if len(r.statuses) > 1:
        errs.append(f"{len(r.statuses)} answers on one connection {r.statuses} (a smuggled "
                    f"request was answered): {r.raw[:600]!r}")
    if not r.closed:
        errs.append(f"connection still open {CLOSE_WITHIN}s after the answer")
    got = o.raw_bytes()
    if len(got) != before:
        errs.append(f"the origin received {len(got) - before} bytes of it: "
                    f"{got[before:before + 400]!r}")
    for m in markers:
        if m in got:
            errs.append(f"{m!r} reached the origin")
    assert not errs, f"{what}: " + "; ".join(errs)
    return r


class KeepAlive:
    """One client connection used for several requests (keep-alive)."""

    def __init__(self, port, timeout=5.0 * TF):
        self.port = port
        self.s = socket.create_connection((cw.LOOPBACK, port), timeout=timeout)
        self.buf = b""

    def _more(self):
        b = self.s.recv(65536)
        if not b:
            raise ConnectionError(f"closed by the server (buffer {self.buf[:200]!r})")
        self.buf += b

    def ask(self, path, headers=None, method="GET", host=None):
        host = host or f"{cw.LOOPBACK}:{self.port}"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        t0 = time.monotonic()
        self.s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status, hdrs, _ = cw.parse_response(head + b"\r\n\r\n")
        body = b""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(self.buf) < n:
                self._more()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in self.buf:
                    self._more()
                line, _, self.buf = self.buf.partition(b"\r\n")
                n = int(line.split(b";")[0], 16)
                while len(self.buf) < n + 2:
                    self._more()
                body += self.buf[:n]
                self.buf = self.buf[n + 2:]
                if n == 0:
                    break
        return cw.Response(status, hdrs, body, time.monotonic() - t0)

    def close(self):
        self.s.close()


def names(r, path):
    """True when r is the origin's answer for path (its body says so)."""
    return r.body.startswith(f"you asked for {path};".encode())


def clean_clients(d, label, n=10):
    """n clients at once, each on its own keep-alive connection asking twice for its own
    path: every answer must name the client's own path. Returns the paths."""
    paths = [f"/clean-{label}/{i}" for i in range(n)]
    errs = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def client(i):
        try:
            c = KeepAlive(d.port)
        except OSError as e:
            with lock:
                errs.append(f"client {i}: connect: {e!r}")
            return
        try:
            start.wait(5 * TF)
            for k in range(2):
                r = c.ask(paths[i])
                if r.status != 200 or not names(r, paths[i]):
                    with lock:
                        errs.append(f"client {i} request {k + 1} for {paths[i]} got {r}")
        except (OSError, threading.BrokenBarrierError) as e:
            with lock:
                errs.append(f"client {i}: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20 * TF)
    assert not any(t.is_alive() for t in threads), "a clean client hung"
    assert not errs, f"{len(errs)} clean client answers wrong: " + "; ".join(errs[:5])
    return paths


def after_smuggling(ck, d, o, label, victims=()):
    """The aftermath checks of a smuggling attempt: clean clients get their own answers,
    victim URLs hold the origin's answer for them, nothing secret reached the origin."""
    paths = ck.case(f"{label}: 10 clean keep-alive clients", clean_clients, d, label) or []

    def victim(p):
        r = cw.request(d.port, p, timeout=5 * TF)
        assert r.status == 200 and names(r, p), f"a fresh GET of victim {p} got {r}"

    for p in list(victims) + paths:
        ck.case(f"{label}: victim {p}", victim, p)

    def nothing_secret():
        raw = o.raw_bytes()
        assert SECRET not in raw, f"the smuggled {SECRET!r} reached the origin"
        bad = [r["target"] for r in o.requests() if "secret" in r["target"]]
        assert not bad, f"the origin parsed smuggled requests {bad}"

    ck.case(f"{label}: origin never saw the smuggled request", nothing_secret)


def smuggle_then_victim(ck, d, o, data, statuses, label, markers=(SECRET,)):
    """One smuggling attempt, then a victim request on another connection, then the
    aftermath checks."""
    ck.case(label, rejected, d, o, data, statuses, label, markers=markers)
    v = f"/victim-{label}"
    ck.case(f"{label}: victim right after", lambda: _victim_now(d, v))
    after_smuggling(ck, d, o, label, victims=[v])


def _victim_now(d, path):
    r = cw.request(d.port, path, timeout=5 * TF)
    assert r.status == 200 and names(r, path), f"victim {path} got {r}"


def start(env, route=None, origin_cfg=None, overrides=None, stats=False):
    """A lenient origin and a 2-worker daemon in front of it: (origin, daemon, stats port)."""
    o = LenientOrigin(env)
    overrides = dict(overrides or {})
    sport = None
    if stats:
        sport = cw.free_port()
        overrides["stats"] = {"listen": f"{cw.LOOPBACK}:{sport}", "interval": "1s"}
    d = env.daemon(o, workers=2, route=route, origin_cfg=origin_cfg, overrides=overrides)
    if stats:
        cw.wait_for(lambda: cw.port_accepts(sport), 10 * TF, what=f"stats on {sport}")
    return o, d, sport


def metric_total(port, name):
    """Sum of every series of family name on /metrics."""
    r = cw.request(port, "/metrics", timeout=5 * TF)
    assert r.status == 200, f"/metrics: {r}"
    total = 0.0
    for line in r.body.decode("utf-8", "replace").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            total += float(m.group(3))
    return total


def xc(r):
    return r.header("x-cache")


def get(d, path, headers=None):
    return cw.request(d.port, path, headers=headers, timeout=5 * TF)


def last_request(o, target):
    reqs = [r for r in o.requests() if r["target"] == target]
    seen = [r["target"] for r in o.requests()][-8:]
    assert reqs, f"the origin never received {target} (its last targets: {seen})"
    return reqs[-1]


# =======================================================================================
# 1-6: framing and field syntax


def test_security_te_space_before_colon(env):
    """`Transfer-Encoding : chunked` (RFC 9112 §5.1: whitespace before the colon is a 400),
    with a smuggled GET /secret/alice-account in the "chunked" body: once plain, once with a
    poisoning prefix (X-Forwarded-Host: evil and an unterminated field that would swallow the
    next client's request line)."""
    o, d, _ = start(env)
    h = host_line(d)
    ck = Checks()
    plain = (b"POST /te-sp-plain HTTP/1.1\r\n" + h + b"Transfer-Encoding : chunked\r\n\r\n"
             b"0\r\n\r\nGET /secret/alice-account HTTP/1.1\r\n" + h + b"\r\n")
    smuggle_then_victim(ck, d, o, plain, (400,), "te-sp-plain")
    poison = (b"POST /te-sp-xfh HTTP/1.1\r\n" + h + b"Transfer-Encoding : chunked\r\n\r\n"
              b"0\r\n\r\nGET /secret/alice-account HTTP/1.1\r\n" + h +
              b"X-Forwarded-Host: evil\r\nX-Ignore: ")
    smuggle_then_victim(ck, d, o, poison, (400,), "te-sp-xfh", markers=(SECRET, b"evil"))
    ck.finish()


def test_security_two_content_lengths(env):
    """Two Content-Length fields, 0 and 40 (either order), the 40 bytes a smuggled request
    line and the start of a field: 400, nothing forwarded."""
    o, d, _ = start(env)
    h = host_line(d)
    ck = Checks()
    smuggled = b"GET /secret/alice-account HTTP/1.1\r\nX: a"
    assert len(smuggled) == 40
    for order in (("0", "40"), ("40", "0")):
        label = f"cl-{order[0]}-{order[1]}"
        data = (f"POST /{label} HTTP/1.1\r\n".encode() + h +
                f"Content-Length: {order[0]}\r\nContent-Length: {order[1]}\r\n\r\n".encode() +
                smuggled)
        smuggle_then_victim(ck, d, o, data, (400,), label)
    ck.finish()


def test_security_space_before_colon_cl_and_host(env):
    """`Content-Length : 30` (with a smuggled request in the 30 bytes) and `Host : evil`
    (alone, and beside a valid Host): 400 each."""
    o, d, _ = start(env)
    h = host_line(d)
    ck = Checks()
    body = b"GET /secret/alice-account HTT"  # 29 bytes + "\n"
    body = body + b"\n"
    assert len(body) == 30
    smuggle_then_victim(ck, d, o, b"POST /cl-sp HTTP/1.1\r\n" + h + b"Content-Length : 30\r\n\r\n"
                        + body, (400,), "cl-sp")
    ck.case("Host : evil alone", rejected, d, o,
            b"GET /host-sp HTTP/1.1\r\nHost : evil\r\n\r\n", (400,), "Host : evil alone",
            markers=(b"evil",))
    ck.case("Host : evil beside Host", rejected, d, o,
            b"GET /host-sp2 HTTP/1.1\r\n" + h + b"Host : evil\r\n\r\n", (400,),
            "Host : evil beside a valid Host", markers=(b"evil",))
    ck.finish()


def test_security_bare_cr_nul_and_control_bytes(env):
    """A bare CR inside a field value (that a CR-splitting parser reads as a
    Transfer-Encoding field), a NUL in a value, a control byte in a field name: 400."""
    o, d, _ = start(env)
    h = host_line(d)
    ck = Checks()
    smuggle_then_victim(
        ck, d, o,
        b"POST /bare-cr HTTP/1.1\r\n" + h + b"X-C: a\rTransfer-Encoding: chunked\r\n"
        + f"Content-Length: {len(CR_BODY)}\r\n\r\n".encode() + CR_BODY,
        (400,), "bare-cr")
    ck.case("NUL in a value", rejected, d, o,
            b"GET /nul-value HTTP/1.1\r\n" + h + b"X-N: a\x00b\r\n\r\n", (400,), "NUL in a value",
            markers=(b"/nul-value",))
    ck.case("control byte in a name", rejected, d, o,
            b"GET /ctl-name HTTP/1.1\r\n" + h + b"X\x01Y: v\r\n\r\n", (400,),
            "\\x01 in a field name", markers=(b"/ctl-name",))
    ck.finish()


def test_security_obs_fold(env):
    """obs-fold in a request (RFC 9112 §5.2: a server rejects it with 400): a folded value,
    and a fold that a lenient parser may join into a Content-Length."""
    o, d, _ = start(env)
    h = host_line(d)
    ck = Checks()
    ck.case("X-A: one / two", rejected, d, o,
            b"GET /fold-1 HTTP/1.1\r\n" + h + b"X-A: one\r\n two\r\n\r\n", (400,),
            "folded X-A", markers=(b"/fold-1",))
    smuggled = b"GET /secret/alice-account HTTP/1.1\r\nX: a"
    smuggle_then_victim(ck, d, o, b"POST /fold-2 HTTP/1.1\r\n" + h +
                        b"C: 5\r\n ontent-Length: 40\r\n\r\n" + smuggled, (400,), "fold-cl")
    ck.finish()


def test_security_transfer_codings(env):
    """Transfer codings CacheWarp does not implement are a prompt 501 (not a hang waiting
    for a body it cannot frame); chunked twice, or Transfer-Encoding with Content-Length,
    are a 400. Each with a body that a lenient origin would read as chunked."""
    o, d, _ = start(env)
    h = host_line(d)
    ck = Checks()
    body = b"5\r\nhello\r\n0\r\n\r\nGET /secret/alice-account HTTP/1.1\r\n" + h + b"\r\n"
    cases = [("xchunked", (501,)), ("chunked, identity", (501,)), ("gzip, chunked", (501,)),
             ("identity", (501,)), ("chunked, chunked", (400,))]
    for i, (te, want) in enumerate(cases):
        label = f"te-{i}"
        data = (f"POST /{label} HTTP/1.1\r\n".encode() + h +
                f"Transfer-Encoding: {te}\r\n\r\n".encode() + body)
        ck.case(f"Transfer-Encoding: {te}", rejected, d, o, data, want,
                f"Transfer-Encoding: {te}", markers=(SECRET, f"/{label}".encode()))
    te_cl = (b"POST /te-cl HTTP/1.1\r\n" + h + b"Content-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n" + body)
    ck.case("TE with CL", rejected, d, o, te_cl, (400,), "Transfer-Encoding with Content-Length",
            markers=(SECRET, b"/te-cl"))
    after_smuggling(ck, d, o, "te")
    ck.finish()


# =======================================================================================
# 7: paths


def test_security_dot_segments(env):
    """Dot segments are removed (RFC 3986 §5.2.4) before routing and keying, and the origin
    gets the normalised path under its prefix."""
    o = LenientOrigin(env)
    d = env.daemon(o, workers=2, route={"match": "/public/"},
                   origin_cfg={"url": f"http://{cw.LOOPBACK}:{o.port}/api"})
    h = host_line(d)
    ck = Checks()

    def req(target):
        return (f"GET {target} HTTP/1.1\r\n".encode() + h + b"Connection: close\r\n\r\n")

    ck.case("/public/../admin", rejected, d, o, req("/public/../admin"), (404,),
            "/public/../admin (normalised /admin: no route)", markers=(b"admin",))
    ck.case("/public/../../../etc/passwd", rejected, d, o, req("/public/../../../etc/passwd"),
            (400,), "/public/../../../etc/passwd (above the root)", markers=(b"passwd",))
    ck.case("/public/%2e%2e/admin", rejected, d, o, req("/public/%2e%2e/admin"), (404,),
            "/public/%2e%2e/admin (like ..: no route)", markers=(b"admin",))

    def a_dot_dot_b():
        r = exchange(d.port, req("/public/a/../b"))
        assert r.status == 200, f"/public/a/../b: {r}"
        assert o.count() >= 1, "nothing reached the origin"
        t = o.requests()[-1]["target"]
        assert t == "/api/public/b", f"origin received {t!r}, want '/api/public/b'"
        before = o.count()
        r2 = get(d, "/public/b")
        assert r2.status == 200 and xc(r2) == "HIT", f"/public/b after /public/a/../b: {r2}"
        assert o.count() == before, "/public/b reached the origin: not the same key"

    ck.case("/public/a/../b", a_dot_dot_b)
    ck.finish()


# =======================================================================================
# 8-10: what the origin is asked, and what the answer is stored under


def test_security_connection_nominated_fields(env):
    """Fields named in Connection are hop-by-hop (RFC 9110 §7.6.1), but must not change the
    cache key behind the origin's back: an answer made without Accept-Language is never a
    HIT for a client asking in fr; and Connection: Host cannot take Host away."""
    o, d, _ = start(env)
    ck = Checks()
    p = "/lang?vary=Accept-Language"

    def accept_language(p, send):
        r = send(p)
        assert r.status == 200, r
        got = LenientOrigin.headers_named(last_request(o, p), "Accept-Language")
        errs = []
        if got:
            errs.append(f"the origin received Accept-Language {got} although the client named "
                        f"it in Connection")
        r = get(d, p, headers={"Accept-Language": "fr"})
        if b"al=fr;" not in r.body:
            errs.append(f"a later Accept-Language: fr client got an answer not made for fr "
                        f"({xc(r)}): {r.body!r}")
        assert not errs, "; ".join(errs)

    def one_field(p):
        c = KeepAlive(d.port)
        try:
            return c.ask(p, headers={"Accept-Language": "fr", "Connection": "Accept-Language"})
        finally:
            c.close()

    def two_fields(p):
        # Connection: close and Connection: Accept-Language are one list (RFC 9110 §5.3).
        raw = cw.raw_request(d.port, cw.request_bytes(d.port, p, headers={
            "Accept-Language": "fr", "Connection": "Accept-Language"}), timeout=5 * TF)
        status, hdrs, body = cw.parse_response(raw)
        return cw.Response(status, hdrs, body, 0.0)

    ck.case("Connection: Accept-Language", accept_language, p, one_field)
    ck.case("Connection: close + Connection: Accept-Language", accept_language,
            "/lang2?vary=Accept-Language", two_fields)

    def host():
        path = "/conn-host"
        data = (f"GET {path} HTTP/1.1\r\nHost: conn-host.example\r\n"
                f"Connection: Host, close\r\n\r\n").encode()
        c = cw.raw_request(d.port, data, timeout=5 * TF)
        assert cw.parse_response(c)[0] == 200, c[:300]
        got = LenientOrigin.headers_named(last_request(o, path), "Host")
        assert got == ["conn-host.example"], f"origin received Host {got}, want the client's"
        r = get(d, path, headers={"Host": "conn-host.example"})
        assert xc(r) == "HIT" and b"host=conn-host.example;" in r.body, f"repeat: {r}"
        r = get(d, path, headers={"Host": "other-host.example"})
        assert b"host=other-host.example;" in r.body, \
            f"another Host was served conn-host.example's answer: {r}"

    ck.case("Connection: Host", host)
    ck.finish()


EVIL = {
    "X-Forwarded-Host": "evil",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "1",
    "Forwarded": "for=1.2.3.4;host=evil",
    "X-Forwarded-For": "6.6.6.6",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-HTTP-Method-Override": "DELETE",
}


def test_security_forwarding_headers_set_by_proxy(env):
    """The forwarding headers the origin sees are the proxy's, not the client's: XFH = the
    request's Host, proto http, the listen port, one Forwarded, XFF appended; the URL and
    method override fields are dropped; and no later client gets `evil` from the cache."""
    o, d, _ = start(env)
    ck = Checks()
    path = "/fwd"
    host = "fwd.example"

    def forwarded():
        r = get(d, path, headers=dict(EVIL, Host=host))
        assert r.status == 200, r
        q = last_request(o, path)
        hv = lambda n: LenientOrigin.headers_named(q, n)  # noqa: E731
        errs = []
        if q["method"] != "GET":
            errs.append(f"method {q['method']}")
        if hv("X-Forwarded-Host") != [host]:
            errs.append(f"X-Forwarded-Host {hv('X-Forwarded-Host')}, want [{host!r}]")
        if hv("X-Forwarded-Proto") != ["http"]:
            errs.append(f"X-Forwarded-Proto {hv('X-Forwarded-Proto')}, want ['http']")
        if hv("X-Forwarded-Port") != [str(d.port)]:
            errs.append(f"X-Forwarded-Port {hv('X-Forwarded-Port')}, want ['{d.port}']")
        fw = hv("Forwarded")
        if len(fw) != 1:
            errs.append(f"{len(fw)} Forwarded fields {fw}, want 1")
        else:
            v = fw[0].lower().replace('"', "")
            for want in ("for=127.0.0.1", f"host={host}", "proto=http"):
                if want not in v:
                    errs.append(f"Forwarded {fw[0]!r} lacks {want}")
            if "evil" in v:
                errs.append(f"Forwarded {fw[0]!r} keeps the client's host=evil")
        for n in ("X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override"):
            if hv(n):
                errs.append(f"{n} passed on: {hv(n)}")
        xff = ",".join(hv("X-Forwarded-For"))
        if not xff.replace(" ", "").endswith("127.0.0.1"):
            errs.append(f"X-Forwarded-For {hv('X-Forwarded-For')} does not end in 127.0.0.1")
        assert not errs, "; ".join(errs)

    ck.case("forwarding headers", forwarded)

    def clean_hit():
        r = get(d, path, headers={"Host": host})
        assert r.status == 200 and xc(r) == "HIT", f"clean client: {r}"
        assert b"evil" not in r.body, f"a clean client's HIT carries evil: {r.body!r}"

    ck.case("clean client HIT", clean_hit)
    ck.finish()


def test_security_forwarding_ipv6_client(env):
    """A client on [::1]: Forwarded quotes and brackets its address (RFC 7239 §6) and
    X-Forwarded-For appends it bare, after what the client sent."""
    o = LenientOrigin(env)
    d = env.daemon(o, workers=1, host="::1")
    r = cw.request(d.port, "/fwd6", headers={"Host": "v6.example", "X-Forwarded-For": "10.0.0.1"},
                   timeout=5 * TF, host="::1")
    assert r.status == 200, r
    q = last_request(o, "/fwd6")
    assert LenientOrigin.headers_named(q, "Forwarded") == [
        'for="[::1]";host="v6.example";proto=http'], q
    assert LenientOrigin.headers_named(q, "X-Forwarded-For") == ["10.0.0.1, ::1"], q


def test_security_forwarding_trusted_route(env):
    """A route with trust_forwarded covering the client passes its forwarding headers on
    as sent."""
    o, d, _ = start(env, route={"trust_forwarded": ["127.0.0.0/8"]})
    r = get(d, "/trusted", headers=dict(EVIL, Host="fwd.example"))
    assert r.status == 200, r
    q = last_request(o, "/trusted")
    got = {n: LenientOrigin.headers_named(q, n)
           for n in ("X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port")}
    assert got == {"X-Forwarded-Host": ["evil"], "X-Forwarded-Proto": ["https"],
                   "X-Forwarded-Port": ["1"]}, f"trusted client's headers not as sent: {got}"


def test_security_forwarding_keyed_header(env):
    """X-Forwarded-Host listed in key_headers is forwarded as sent and keyed: two values,
    two entries, each a HIT on repeat with its own answer."""
    o, d, _ = start(env, route={"key_headers": ["X-Forwarded-Host"]})
    path = "/keyed"
    for v in ("a.example", "b.example"):
        r = get(d, path, headers={"X-Forwarded-Host": v})
        assert r.status == 200 and xc(r) == "MISS", f"first {v}: {r}"
        assert f"xfh={v};".encode() in r.body, f"X-Forwarded-Host {v} not forwarded: {r.body!r}"
    for v in ("a.example", "b.example"):
        r = get(d, path, headers={"X-Forwarded-Host": v})
        assert xc(r) == "HIT" and f"xfh={v};".encode() in r.body, f"repeat {v}: {r}"
    assert o.count(path) == 2, f"origin saw {o.count(path)} requests, want 2"


def test_security_strip_headers(env):
    """strip_headers: the origin never receives a listed field (any case); others pass."""
    o, d, _ = start(env, route={"strip_headers": ["X-Debug"]})
    r = get(d, "/strip", headers={"X-Debug": "1", "x-debug": "2", "X-Keep": "k"})
    assert r.status == 200, r
    q = last_request(o, "/strip")
    assert not LenientOrigin.headers_named(q, "X-Debug"), f"X-Debug passed on: {q['headers']}"
    assert LenientOrigin.headers_named(q, "X-Keep") == ["k"], f"X-Keep lost: {q['headers']}"
    assert b"x-debug" not in o.raw_bytes().lower(), "X-Debug bytes reached the origin"


def test_security_query_kept_parameters(env):
    """With query = [ "page" ], the origin is asked with the kept parameters only, so an
    unkeyed parameter cannot leak into an answer stored for everyone."""
    o, d, _ = start(env, route={"query": ["page"]})
    r = get(d, "/list?page=1&utm_content=M4RK3R")
    assert r.status == 200, r
    ck = Checks()

    def origin_target():
        t = o.requests()[-1]["target"]
        assert t == "/list?page=1", f"origin received {t!r}, want '/list?page=1'"

    ck.case("origin target", origin_target)

    def later():
        r2 = get(d, "/list?page=1")
        assert r2.status == 200, r2
        assert b"M4RK3R" not in r2.body, \
            f"a plain ?page=1 client got M4RK3R ({xc(r2)}): {r2.body!r}"

    ck.case("later plain ?page=1", later)
    ck.finish()


# =======================================================================================
# 11: cookies


def cookie_path(label):
    return f"/ck-{label}?cc=none"


def test_security_cookie_heuristic_not_shared(env):
    """An answer with only heuristic freshness to a request with a Cookie is not served to
    another cookie (default cookies = "pass"); explicit max-age=600 still is cached."""
    o, d, _ = start(env)
    ck = Checks()
    p = cookie_path("pass")

    def heuristic():
        a = get(d, p, headers={"Cookie": "s=alice"})
        assert a.status == 200 and b"cookie=s=alice;" in a.body, a
        b = get(d, p, headers={"Cookie": "s=bob"})
        assert b"cookie=s=bob;" in b.body, f"bob got ({xc(b)}): {b.body!r}"
        assert o.count(p) == 2, f"origin asked {o.count(p)} times, want 2"

    ck.case("heuristic + Cookie", heuristic)

    def explicit():
        q = "/ck-public?cc=max-age%3D600"
        a = get(d, q, headers={"Cookie": "s=alice"})
        assert a.status == 200, a
        r = get(d, q, headers={"Cookie": "s=alice"})
        assert xc(r) == "HIT", f"explicit max-age=600 to a Cookie request not cached: {r}"
        r = get(d, q)
        assert xc(r) == "HIT", f"explicit max-age=600 not served to a cookieless client: {r}"
        assert o.count(q) == 1, f"origin asked {o.count(q)} times, want 1"

    ck.case("explicit max-age + Cookie", explicit)
    ck.finish()


def test_security_cookies_ignore(env):
    """cookies = "ignore": the old behaviour, the second cookie gets a HIT."""
    o, d, _ = start(env, route={"cookies": "ignore"})
    p = cookie_path("ignore")
    assert get(d, p, headers={"Cookie": "s=alice"}).status == 200
    r = get(d, p, headers={"Cookie": "s=bob"})
    assert xc(r) == "HIT" and b"cookie=s=alice;" in r.body, r
    assert o.count(p) == 1


def test_security_cookies_key(env):
    """cookies = "key": each Cookie value has its own entry, a HIT on repeat."""
    o, d, _ = start(env, route={"cookies": "key"})
    p = cookie_path("key")
    for who in ("alice", "bob"):
        r = get(d, p, headers={"Cookie": f"s={who}"})
        assert r.status == 200 and xc(r) == "MISS" and f"cookie=s={who};".encode() in r.body, r
    for who in ("alice", "bob"):
        r = get(d, p, headers={"Cookie": f"s={who}"})
        assert xc(r) == "HIT" and f"cookie=s={who};".encode() in r.body, f"repeat {who}: {r}"
    assert o.count(p) == 2, f"origin asked {o.count(p)} times, want 2"


# =======================================================================================
# 12: client-forced revalidation


def test_security_client_revalidation_coalesces(env):
    """50 clients at once sending Cache-Control: no-cache (then Pragma: no-cache) for a fresh
    key make at most 5 origin requests between them (revalidations coalesce); each gets a 200
    with the right body."""
    o, d, _ = start(env)
    p = "/co?etag=v1&delay_ms=300"
    r = get(d, p)
    assert r.status == 200 and names(r, p), r
    assert xc(get(d, p)) == "HIT"
    ck = Checks()
    for hdr in ({"Cache-Control": "no-cache"}, {"Pragma": "no-cache"}):
        def one(hdr=hdr):
            before = o.count(p)
            socks = cw.connect_many(d.port, 50)
            batch = cw.send_all(socks, [cw.request_bytes(d.port, p, headers=hdr)] * 50)
            res = cw.collect(batch, timeout=10 * TF)
            bad = [x for x in res if isinstance(x, Exception) or x.status != 200 or
                   not names(x, p)]
            n = o.count(p) - before
            errs = []
            if bad:
                errs.append(f"{len(bad)} clients without the right 200, first {bad[0]!r}")
            if n > 5:
                errs.append(f"the origin saw {n} requests, want at most 5")
            env.note(f"50 x {hdr}: {n} origin requests")
            assert not errs, "; ".join(errs)
        ck.case(f"50 x {hdr}", one)
    ck.finish()


# =======================================================================================
# 13-14: request targets


def test_security_absolute_form(env):
    """RFC 9112 §3.2.2: with an absolute-form target the authority is the host, whatever
    Host says: answered and stored for the authority's host only."""
    o, d, _ = start(env)
    auth = f"abs.example:{d.port}"
    data = (f"GET http://{auth}/abs-x HTTP/1.1\r\nHost: other.example\r\n"
            f"Connection: close\r\n\r\n").encode()
    raw = cw.raw_request(d.port, data, timeout=5 * TF)
    status, _, body = cw.parse_response(raw)
    assert status == 200, f"absolute-form: {raw[:300]!r}"
    q = last_request(o, "/abs-x")
    hosts = LenientOrigin.headers_named(q, "Host")
    assert hosts == [auth], f"origin received Host {hosts}, want [{auth!r}]"
    r = get(d, "/abs-x", headers={"Host": auth})
    assert xc(r) == "HIT", f"not stored under the authority's host: {r}"
    r = get(d, "/abs-x", headers={"Host": "other.example"})
    assert xc(r) != "HIT" and b"host=other.example;" in r.body, \
        f"stored under the Host field's host: {r}"


def test_security_space_in_target(env):
    """`GET /a b HTTP/1.1` is a 400 from the proxy, not an origin error in the metrics."""
    o, d, sport = start(env, stats=True)
    assert get(d, "/warm").status == 200
    before = cw.wait_for(lambda: metric_total(sport, "cachewarp_origin_requests_total") or None,
                         10 * TF, what="the warm-up origin request counted")
    ck = Checks()
    ck.case("space in target", rejected, d, o,
            b"GET /a b HTTP/1.1\r\n" + host_line(d) + b"\r\n", (400,), "GET /a b",
            markers=(b"/a b", b"/a%20b"))
    assert get(d, "/after-space").status == 200
    now = cw.wait_for(lambda: (lambda v: v if v >= before + 1 else None)(
        metric_total(sport, "cachewarp_origin_requests_total")), 10 * TF,
        what="the next origin request counted")

    def metrics():
        assert now == before + 1, \
            f"cachewarp_origin_requests_total went {before} -> {now}, want +1 (the valid " \
            f"request only): the bad target was counted at the origin"

    ck.case("metrics", metrics)
    ck.finish()


# =======================================================================================
# 15-16: timeouts and eviction


def test_security_header_trickle(env):
    """client_header_timeout bounds the whole request head: a client trickling it one byte
    every 0.25 s is answered 408 or closed between 1.5 s and 6 s after its first byte, while
    another client is served at once."""
    o, d, _ = start(env, overrides={"client_header_timeout": "2s"})
    assert get(d, "/warm").status == 200
    head = (b"GET /trickle HTTP/1.1\r\n" + host_line(d) +
            b"X-Pad: " + b"p" * 200 + b"\r\n\r\n")
    s = socket.create_connection((cw.LOOPBACK, d.port), timeout=5)
    got = b""
    ended = None
    normal = []
    t0 = time.monotonic()
    try:
        s.settimeout(0)
        i = 0
        deadline = t0 + 8.0 * TF
        while time.monotonic() < deadline and i < len(head):
            try:
                s.send(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                ended = time.monotonic() - t0
                break
            i += 1
            if i == 8:  # mid-trickle: another client is served at once
                r = get(d, "/normal")
                normal.append(r)
            nxt = time.monotonic() + 0.25
            done = False
            while True:
                left = nxt - time.monotonic()
                if left <= 0:
                    break
                rd, _, _ = select.select([s], [], [], left)
                if rd:
                    try:
                        b = s.recv(65536)
                    except ConnectionResetError:
                        b = b""
                    if not b:
                        ended = time.monotonic() - t0
                        done = True
                        break
                    got += b
            if done:
                break
    finally:
        s.close()
    assert normal and normal[0].status == 200 and normal[0].elapsed < 1.0 * TF, \
        f"the normal request during the trickle: {normal}"
    assert ended is not None, \
        f"the trickling client was neither answered nor closed within {8 * TF}s " \
        f"(sent {i} bytes): {got[:200]!r}"
    assert 1.5 <= ended <= 6.0 * TF, f"closed {ended:.2f}s after the first byte, want 1.5..6 s"
    assert got.startswith(b"HTTP/1.1 408"), f"answer to the trickle: {got[:200]!r}"
    assert o.count("/trickle") == 0, "the trickled request reached the origin"
    env.note(f"trickle closed after {ended:.2f}s; normal request {normal[0].elapsed * 1000:.0f} ms")


def test_security_body_stall(env):
    """client_body_timeout bounds the silence between two reads of a request body: a POST
    that promises 100 bytes, sends 10 and stalls is closed after about the timeout (MHD counts
    in whole seconds), and nothing reaches the origin."""
    o, d, _ = start(env, overrides={"client_body_timeout": "1s"})
    head = (b"POST /stall HTTP/1.1\r\n" + host_line(d) + b"Content-Length: 100\r\n\r\n")
    s = socket.create_connection((cw.LOOPBACK, d.port), timeout=5)
    try:
        s.sendall(head + b"x" * 10)
        t0 = time.monotonic()
        s.settimeout(8.0 * TF)
        try:
            while s.recv(65536):
                pass
        except (socket.timeout, ConnectionResetError):
            pass
        ended = time.monotonic() - t0
    finally:
        s.close()
    assert 0.5 <= ended <= 4.0 * TF, f"a stalled body was closed after {ended:.2f}s, want ~1 s"
    assert o.count("/stall") == 0, "the stalled request reached the origin"
    # Keep-alive connections go back to the longer idle timeout after the body.
    r = get(d, "/after")
    assert r.status == 200, r
    env.note(f"stalled body closed after {ended:.2f}s")


def test_security_eviction_counted(env):
    """A store that finds the cache full evicts, and cachewarp_l1_evictions_total grows."""
    o, d, sport = start(env, stats=True, overrides={"cache": {
        "path": f"{env.dir}/l1.mdb", "size": "2M", "max_object": "512K"}})
    before = metric_total(sport, "cachewarp_l1_evictions_total")
    t0 = time.monotonic()
    for i in range(40):
        r = get(d, f"/big/{i}?size=150000")
        assert r.status == 200 and len(r.body) == 150000, f"/big/{i}: {r}"
    r = get(d, "/big/39?size=150000")
    assert xc(r) == "HIT", f"the newest object is not stored (no room made for it): {r}"
    cw.wait_for(lambda: metric_total(sport, "cachewarp_l1_evictions_total") > before,
                5 * TF, what="cachewarp_l1_evictions_total to grow after 6 MB into a 2 MiB cache")
    env.note(f"filled in {time.monotonic() - t0:.1f}s")
