"""A lenient, recording HTTP/1.1 origin for the security tests (Python 3 standard library only).

It parses requests the way many real origins do, which is what makes request smuggling and
cache poisoning possible behind a proxy that is not strict:

  * lines end at "\\n" (a trailing "\\r" is stripped), so a bare LF ends a line;
  * a field is `name : value`, whitespace around the colon allowed, names any bytes;
  * a line starting with a space or tab continues the previous field (obs-fold);
  * Transfer-Encoding containing "chunked" anywhere (any case, any spacing) means a chunked
    body; otherwise the FIRST Content-Length (its leading digits) gives the length;
  * keep-alive and pipelining: the next request is read from whatever bytes follow.

It records, per connection, the exact raw bytes received, and every parsed request as a
dict: method, target, version, headers (list of (name, value) as received), body, conn
(the connection's index).

Every request is answered 200 with Content-Type: text/plain and a body naming it:

    you asked for <target>; host=<Host>; xfh=<X-Forwarded-Host>; al=<Accept-Language>;
    cookie=<Cookie>; n=<serial>

("-" for a field that was not sent; n counts the answers this origin made). Query
parameters of the target shape the answer:

    cc=VALUE     Cache-Control: VALUE instead of max-age=600;
    cc=none      no Cache-Control, but Last-Modified an hour ago (heuristic freshness);
    cc=bare      neither Cache-Control nor Last-Modified;
    vary=NAME    Vary: NAME;
    etag=TAG     ETag: "TAG", and 304 to an If-None-Match naming it;
    delay_ms=N   answer N ms after the request was read;
    size=N       pad the body with "x" to N bytes.

    from lenient_origin import LenientOrigin
    o = LenientOrigin(env)            # registered with env: stopped with the test
    d = env.daemon(o, workers=2)
    ...
    o.requests(), o.raw_bytes(), o.count("/x"), o.stop()
"""

import email.utils
import os
import socket
import threading
import time
import urllib.parse

LOOPBACK = "127.0.0.1"


def http_date(t):
    return email.utils.formatdate(t, usegmt=True)


class _Closed(Exception):
    """The peer closed (or the origin is stopping) before a whole request arrived."""


class _Conn:
    """One accepted connection: a buffered, recording reader over the socket."""

    def __init__(self, origin, sock, index):
        self.origin = origin
        self.sock = sock
        self.index = index
        self.buf = bytearray()
        self.raw = bytearray()  # every byte received, in order

    def _fill(self):
        while True:
            if self.origin._stopping.is_set():
                raise _Closed()
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                raise _Closed()
            if not b:
                raise _Closed()
            with self.origin._lock:
                self.raw += b
            self.buf += b
            return

    def readline(self):
        """The next line without its "\\n" and a trailing "\\r" (bytes)."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line[:-1] if line.endswith(b"\r") else line
            self._fill()

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class LenientOrigin:
    def __init__(self, env=None, name="lenient-origin"):
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns = []       # _Conn, in accept order
        self._requests = []    # parsed requests (dicts), in arrival order
        self._threads = []
        self._serial = 0
        self.log_path = os.path.join(env.dir if env is not None else "/tmp", f"{name}.log")
        self._log = open(self.log_path, "w", buffering=1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"{name}-accept")
        self._acceptor.start()
        if env is not None:
            env.origins.append(self)  # Env.close() calls stop()

    # -- what was received

    def raw_bytes(self):
        """Every byte received, all connections concatenated in accept order."""
        with self._lock:
            return b"".join(bytes(c.raw) for c in self._conns)

    def raw_len(self):
        with self._lock:
            return sum(len(c.raw) for c in self._conns)

    def connections(self):
        """The raw bytes received on each connection, in accept order."""
        with self._lock:
            return [bytes(c.raw) for c in self._conns]

    def requests(self):
        """Parsed requests, in arrival order: dicts with method, target, version, headers
        (list of (name, value) str pairs as received), body (bytes), conn (index)."""
        with self._lock:
            return list(self._requests)

    def count(self, target=None, prefix=None):
        """Requests whose target is target (or starts with prefix; all when neither)."""
        n = 0
        for r in self.requests():
            t = r["target"]
            if target is not None and t != target:
                continue
            if prefix is not None and not t.startswith(prefix):
                continue
            n += 1
        return n

    def wait_count(self, n, target=None, prefix=None, timeout=5.0):
        """Waits until count(target, prefix) >= n; returns it, or raises AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.count(target, prefix)
            if c >= n:
                return c
            if time.monotonic() >= deadline:
                raise AssertionError(f"origin saw {c} requests for {target or prefix or '*'} "
                                     f"within {timeout}s, want {n}")
            time.sleep(0.01)

    @staticmethod
    def header(req, name, default=None):
        """The first value of field name (case-insensitive) in a parsed request."""
        for k, v in req["headers"]:
            if k.lower() == name.lower():
                return v
        return default

    @staticmethod
    def headers_named(req, name):
        return [v for k, v in req["headers"] if k.lower() == name.lower()]

    # -- serving

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(0.2)
            with self._lock:
                c = _Conn(self, s, len(self._conns))
                self._conns.append(c)
                t = threading.Thread(target=self._serve, args=(c,), daemon=True,
                                     name=f"lenient-conn-{c.index}")
                self._threads.append(t)
            t.start()

    def _serve(self, c):
        try:
            while True:
                req = self._read_request(c)
                if req is None:
                    return
                with self._lock:
                    self._requests.append(req)
                    self._serial += 1
                    serial = self._serial
                self._log.write(f"conn {c.index}: {req['method']} {req['target']} "
                                f"{req['headers']!r} body={req['body'][:80]!r}\n")
                keep = self._answer(c, req, serial)
                if not keep:
                    return
        except (_Closed, OSError):
            return
        finally:
            try:
                c.sock.close()
            except OSError:
                pass

    def _read_request(self, c):
        line = b""
        while line == b"":  # empty lines before a request line are skipped
            try:
                line = c.readline()
            except _Closed:
                return None
        parts = line.decode("latin-1").split()
        method = parts[0] if parts else ""
        target = parts[1] if len(parts) > 1 else ""
        version = parts[2] if len(parts) > 2 else "HTTP/1.0"
        headers = []
        while True:
            ln = c.readline()
            if ln == b"":
                break
            text = ln.decode("latin-1")
            if text[:1] in (" ", "\t") and headers:
                k, v = headers[-1]
                headers[-1] = (k, (v + " " + text.strip()).strip())
                continue
            k, _, v = text.partition(":")
            headers.append((k.strip(), v.strip()))
        req = {"method": method, "target": target, "version": version, "headers": headers,
               "body": b"", "conn": c.index}
        te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding").lower()
        if "chunked" in te:
            if any("100-continue" in v.lower() for k, v in headers if k.lower() == "expect"):
                c.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = bytearray()
            while True:
                size_line = c.readline().decode("latin-1").split(";")[0].strip()
                digits = ""
                for ch in size_line:
                    if ch in "0123456789abcdefABCDEF":
                        digits += ch
                    else:
                        break
                size = int(digits, 16) if digits else 0
                if size == 0:
                    while c.readline() != b"":  # trailer fields, up to the blank line
                        pass
                    break
                body += c.read(size)
                c.readline()  # the CRLF after the chunk data
            req["body"] = bytes(body)
        else:
            cls = [v for k, v in headers if k.lower() == "content-length"]
            n = 0
            if cls:
                digits = ""
                for ch in cls[0].strip():
                    if ch.isdigit():
                        digits += ch
                    else:
                        break
                n = int(digits) if digits else 0
            if n > 0:
                if any("100-continue" in v.lower() for k, v in headers if k.lower() == "expect"):
                    c.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                req["body"] = c.read(n)
        return req

    def _answer(self, c, req, serial):
        """Sends the answer; returns whether the connection stays open."""
        target = req["target"]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query, keep_blank_values=True)

        def param(name):
            v = q.get(name)
            return v[0] if v else None

        def hv(name):
            return self.header(req, name, "-")

        delay = param("delay_ms")
        if delay and delay.isdigit():
            if self._stopping.wait(int(delay) / 1000.0):
                return False
        now = time.time()
        status = "200 OK"
        out = [("Date", http_date(now)), ("Content-Type", "text/plain")]
        cc = param("cc")
        if cc is None:
            out.append(("Cache-Control", "max-age=600"))
        elif cc == "none":
            out.append(("Last-Modified", http_date(now - 3600)))
        elif cc != "bare":
            out.append(("Cache-Control", cc))
        vary = param("vary")
        if vary:
            out.append(("Vary", vary))
        etag = param("etag")
        body = (f"you asked for {target}; host={hv('Host')}; xfh={hv('X-Forwarded-Host')}; "
                f"al={hv('Accept-Language')}; cookie={hv('Cookie')}; n={serial}\n")
        body = body.encode("latin-1")
        size = param("size")
        if size and size.isdigit() and int(size) > len(body):
            body += b"x" * (int(size) - len(body))
        if etag:
            out.append(("ETag", f'"{etag}"'))
            inm = self.header(req, "If-None-Match", "")
            if f'"{etag}"' in inm or inm.strip() == "*":
                status = "304 Not Modified"
                body = b""
        conn_tokens = ",".join(self.headers_named(req, "Connection")).lower()
        keep = "close" not in conn_tokens and (req["version"] == "HTTP/1.1" or
                                               "keep-alive" in conn_tokens)
        if not status.startswith("304"):
            out.append(("Content-Length", str(len(body))))
        if not keep:
            out.append(("Connection", "close"))
        if req["method"] == "HEAD":
            body = b""
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in out) + "\r\n"
        c.sock.sendall(head.encode("latin-1") + body)
        return keep

    def stop(self):
        """Stops accepting, closes every connection and joins every thread; returns 0."""
        self._stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._acceptor.join(5)
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)
        self._log.close()
        return 0
