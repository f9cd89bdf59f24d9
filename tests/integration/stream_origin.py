"""A streaming HTTP/1.1 origin for the streaming tests (Python 3 standard library only).

cw-test-origin builds each answer in memory (up to 256 MiB) and sends it at once; these
tests need answers of any size, sent at a set rate, and uploads of any size read as they
arrive. One thread per connection; one request per connection (Connection: close).

    GET /gen?size=N[&rate=BPS][&chunked=1][&cc=VALUE]
        N bytes of PATTERN repeated (see expected_crc()), with Content-Length (or chunked
        without one), at most BPS bytes a second (in 16 KiB pieces; unlimited without
        rate). Cache-Control: VALUE (default max-age=600). The time each answer's first
        body byte was sent (time.monotonic(), the same clock as the test's) is recorded:
        first_sent(path).
    POST|PUT /upload (any path whose method is not GET/HEAD)
        reads the body (Content-Length or chunked) as it arrives and answers
        {"len": N, "crc": C} (zlib.crc32 of the body).

    o = StreamOrigin(env)   # registered with env: stopped with the test
    d = env.daemon(o, ...)
"""

import json
import socket
import threading
import time
import urllib.parse
import zlib

LOOPBACK = "127.0.0.1"
PATTERN = bytes((i * 131 + (i >> 8) * 7) & 0xFF for i in range((1 << 20) + 7))


def expected_crc(size):
    """crc32 of the first size bytes of PATTERN repeated."""
    crc, left = 0, size
    while left > 0:
        n = min(left, len(PATTERN))
        crc = zlib.crc32(PATTERN[:n] if n < len(PATTERN) else PATTERN, crc)
        left -= n
    return crc


class StreamOrigin:
    def __init__(self, env, name="stream-origin"):
        self.log_path = f"{env.dir}/{name}.log"
        open(self.log_path, "w").close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(256)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.lock = threading.Lock()
        self.counts = {}
        self.first = {}  # path -> monotonic time of the first body byte of its latest answer
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        env.origins.append(self)

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def first_sent(self, path):
        with self.lock:
            return self.first.get(path)

    def stop(self, timeout=5.0):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(timeout)
        return 0

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            c.settimeout(30)
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = c.recv(65536)
                if not b:
                    return
                buf += b
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            with self.lock:
                self.counts[target] = self.counts.get(target, 0) + 1
            if method in ("GET", "HEAD"):
                self._gen(c, method, target)
            else:
                self._upload(c, hdrs, rest)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _gen(self, c, method, target):
        u = urllib.parse.urlsplit(target)
        q = dict(urllib.parse.parse_qsl(u.query))
        size = int(q.get("size", "0"))
        rate = float(q.get("rate", "0"))
        chunked = q.get("chunked") == "1"
        cc = q.get("cc", "max-age=600")
        h = [f"HTTP/1.1 200 OK", "Content-Type: application/octet-stream",
             f"Cache-Control: {cc}", "Connection: close"]
        h.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
        c.sendall(("\r\n".join(h) + "\r\n\r\n").encode())
        if method == "HEAD":
            return
        piece = 16384 if rate > 0 else 1 << 20
        sent, start, first = 0, time.monotonic(), True
        view = memoryview(PATTERN)
        while sent < size and not self.stopping:
            off = sent % len(PATTERN)
            n = min(piece, size - sent, len(PATTERN) - off)
            data = view[off:off + n]
            if first:
                with self.lock:
                    self.first[target] = time.monotonic()
                first = False
            if chunked:
                c.sendall(b"%x\r\n" % n + bytes(data) + b"\r\n")
            else:
                c.sendall(data)
            sent += n
            if rate > 0:
                due = start + sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        if chunked:
            c.sendall(b"0\r\n\r\n")

    def _upload(self, c, hdrs, rest):
        crc, total = 0, 0
        buf = bytearray(rest)

        def more():
            b = c.recv(1 << 20)
            if not b:
                raise OSError("closed")
            buf.extend(b)

        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in buf:
                    more()
                i = buf.index(b"\r\n")
                n = int(bytes(buf[:i]).split(b";")[0], 16)
                del buf[:i + 2]
                if n == 0:
                    break
                while len(buf) < n + 2:
                    more()
                crc = zlib.crc32(buf[:n], crc)
                total += n
                del buf[:n + 2]
        else:
            left = int(hdrs.get("content-length", "0"))
            while left > 0:
                if not buf:
                    more()
                n = min(left, len(buf))
                crc = zlib.crc32(buf[:n], crc)
                total += n
                left -= n
                del buf[:n]
        body = json.dumps({"len": total, "crc": crc}).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
