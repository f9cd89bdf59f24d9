"""Helpers for the CacheWarp integration tests (Python 3 standard library only).

Every process a test starts (cw-test-origin, cachewarpd) listens on an ephemeral loopback
port inside the test's own temp dir, is polled for readiness with a deadline, and is
stopped by PID. An `Env` owns them: run.py makes one per test and closes it afterwards,
whatever happened, so that a failing test never leaves a process behind.

    def test_something(env):
        origin = env.origin()
        d = env.daemon(origin, workers=2, route={"ttl": "60s"})
        r = d.get("/a?cc=max-age%3D60")
        assert r.header("x-cache") == "MISS", r
"""

import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

# Latency bounds in the tests are for the release build. Under ASan/UBSan (make check SAN=1)
# every request costs a few times more CPU, so scripts/check.sh sets CW_TIME_FACTOR and the
# bounds scale with it; counts and behaviour are asserted exactly in both builds.
TIME_FACTOR = float(os.environ.get("CW_TIME_FACTOR", "1"))

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CW_BUILD", os.path.join(REPO, "build", "rel"))
LOOPBACK = "127.0.0.1"


def set_build(path):
    """Sets the build folder (holding bin/cachewarpd and bin/cw-test-origin)."""
    global BUILD
    BUILD = os.path.abspath(path)


def binary(name):
    return os.path.join(BUILD, "bin", name)


def free_port():
    """A port that was free on the loopback a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def answer_plain(handler, body):
    """From an http.server handler's do_GET: 200 with body, its length, Cache-Control:
    no-store."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(body)


def make_ca(dirpath, name):
    """A self-signed test CA made with openssl in dirpath: (crt, key) paths."""
    key, crt = os.path.join(dirpath, f"{name}.key"), os.path.join(dirpath, f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


def make_leaf(dirpath, name, ca, ext, cn=None):
    """A certificate for cn (default name) signed by ca (crt, key), with the extension lines
    ext, in dirpath: (crt, key) paths."""
    key, csr, crt = (os.path.join(dirpath, f"{name}.{x}") for x in ("key", "csr", "crt"))
    extf = os.path.join(dirpath, f"{name}.ext")
    with open(extf, "w") as f:
        f.write(ext)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj",
                    f"/CN={cn or name}", "-keyout", key, "-out", csr],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                    "-CAcreateserial", "-days", "2", "-extfile", extf, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value (returned) or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_accepts(port, host=LOOPBACK):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(path, lines=40):
    """The last lines of a text file, or a note that it is missing."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"({path}: {e.strerror})"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


class TempDir:
    """A fresh temp dir; removed on exit unless CW_KEEP=1 is set (for post-mortems)."""

    def __init__(self, prefix="cw-it-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        self.cleanup()

    def cleanup(self):
        if os.environ.get("CW_KEEP") == "1":
            return
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# /proc helpers


def children(pid):
    """Direct children of pid, from every thread's children list."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def proc_stat(pid):
    """(state, start_time, utime+stime ticks) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2 :].split()  # fields from 3 on; comm may hold spaces
    return rest[0], int(rest[19]), int(rest[11]) + int(rest[12])


def threads(pid):
    """{tid: comm} of a process's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[int(tid)] = f.read().strip()
        except OSError:
            pass
    return out


class ThreadStop:
    """Stops ONE thread of a process, the others running on: ptrace(PTRACE_SEIZE) and
    PTRACE_INTERRUPT put only that thread in a ptrace-stop (SIGSTOP would stop the whole
    group, which the supervisor already sees in /proc/PID/stat). This is how a thread stuck on
    a lock or in a loop looks from outside: the process runs, one of its threads makes no
    progress. No test hook in the daemon is needed."""

    PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
    WALL = 0x40000000

    def __init__(self, tid):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.tid = tid
        for req in (self.PTRACE_SEIZE, self.PTRACE_INTERRUPT):
            if self.libc.ptrace(req, tid, None, None) == -1:
                raise OSError(ctypes.get_errno(), f"ptrace({req:#x}) of thread {tid}")
        os.waitpid(tid, self.WALL)  # the interrupt's stop

    def release(self):
        self.libc.ptrace(self.PTRACE_DETACH, self.tid, None, None)


def is_alive(pid, start_time=None):
    """True when pid runs (not a zombie) and, if given, started at start_time."""
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return start_time is None or st[1] == start_time


def pids_with_cmdline(needle):
    """PIDs of live processes whose command line contains needle."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if needle in cmd and is_alive(int(name)):
            out.append(int(name))
    return out


# ---------------------------------------------------------------------------------------
# HTTP


class Response:
    """status, headers (dict, lower-case names, repeats joined by ", "), body, elapsed (s)."""

    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body.decode("utf-8", "replace"))

    def __repr__(self):
        body = self.body[:200]
        return (
            f"<Response {self.status} in {self.elapsed * 1000:.1f} ms headers={self.headers} "
            f"body={body!r}{'...' if len(self.body) > 200 else ''}>"
        )


def request(port, path, method="GET", headers=None, body=None, timeout=10.0, host=LOOPBACK,
            source=None):
    """One request on a fresh connection; returns a Response. Raises OSError and
    http.client errors (a failed request is never retried). A "Host" in headers is sent
    instead of the one http.client would make up. source: the client's own address (e.g.
    127.0.0.2, to be a client the daemon's purge.allow does not list)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        hdrs = dict(headers or {})
        # A Host in headers replaces the one http.client would add (two Host lines are a 400).
        skip_host = any(k.lower() == "host" for k in hdrs)
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        h = {}
        for k, v in resp.getheaders():
            k = k.lower()
            h[k] = f"{h[k]}, {v}" if k in h else v
        return Response(resp.status, h, data, time.monotonic() - t0)
    finally:
        conn.close()


def raw_request(port, data, timeout=10.0, host=LOOPBACK):
    """Sends raw request bytes (should say Connection: close) and returns every byte
    received until the server closes: lets a test see bytes http.client would hide."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def concurrent(fn, n, threads):
    """Calls fn(i) for i in range(n) on a pool of threads; returns the results in order,
    an exception object in place of a call that raised."""

    def wrap(i):
        try:
            return fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            return e

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(wrap, range(n)))


def parse_response(raw):
    """(status, headers dict with lower-case names, body) of one raw HTTP/1.x answer; the body
    is what follows the header block (cut to Content-Length when one is given)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"no complete header block in {raw[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise ValueError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        v = v.strip()
        headers[k] = f"{headers[k]}, {v}" if k in headers else v
    cl = headers.get("content-length")
    if cl is not None and cl.isdigit():
        rest = rest[: int(cl)]
    return int(m.group(1)), headers, rest


def _response_complete(buf):
    """True when buf holds a whole answer with a Content-Length (else wait for EOF)."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    return m is not None and len(rest) >= int(m.group(1))


def connect_many(port, n, host=LOOPBACK, timeout=5.0):
    """n TCP connections to port, connected (and so queued for accept) before the caller
    sends anything: a test's clients are ready before its start line."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection((host, port), timeout=timeout))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def request_bytes(port, path, method="GET", headers=None, host=LOOPBACK):
    """The bytes of one request as http.client would send them (Host with the port, so the
    cache key matches request()'s), with Connection: close."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same


class Sent:
    """Requests written on connected sockets, answered later by collect(): release is the
    monotonic time just before the first byte went out, sent[i] when request i was written;
    wall_offset converts the kernel's receive timestamps (wall clock) to monotonic."""

    def __init__(self, socks, release, sent, wall_offset):
        self.socks = socks
        self.release = release
        self.sent = sent
        self.wall_offset = wall_offset


def send_all(socks, reqs):
    """Writes reqs[i] (bytes) on socks[i], back to back from one thread, so every request is
    on the wire within a few milliseconds (no thread start-up in the way). Asks the kernel
    to timestamp what each socket receives (SO_TIMESTAMPNS), so collect() measures when an
    answer arrived, not when this process got round to reading it."""
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass  # collect() falls back to its own clock
    wall_offset = time.time() - time.monotonic()
    release = time.monotonic()
    sent = []
    for s, data in zip(socks, reqs):
        sent.append(time.monotonic())
        s.sendall(data)
    return Sent(socks, release, sent, wall_offset)


def collect(batch, timeout=10.0, settle=0.0):
    """Reads every answer of a send_all() batch on one thread with select, stamping each with
    the kernel's receive time of its last bytes (this process's clock when there is none).
    Returns, in order, a Response per socket (elapsed: from its
    own send; .since_release: from the batch's release) or the exception that ended it
    (ConnectionError for a connection closed without a whole answer, TimeoutError).
    settle: seconds to sleep before reading, so that this process takes no CPU from the server
    while the answers are expected (the kernel's timestamps keep their arrival times).
    Closes the sockets."""
    import selectors

    if settle > 0:
        time.sleep(settle)

    n = len(batch.socks)
    bufs = [bytearray() for _ in range(n)]
    done_at = [None] * n
    errors = [None] * n
    sel = selectors.DefaultSelector()
    for i, s in enumerate(batch.socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    deadline = time.monotonic() + timeout
    left = n
    try:
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            for key, _ in sel.select(wait):
                i = key.data
                s = batch.socks[i]
                try:
                    b, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(16))
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    b, anc, errors[i] = b"", [], e
                now = time.monotonic()
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                        sec, nsec = struct.unpack("qq", data[:16])
                        now = min(now, sec + nsec / 1e9 - batch.wall_offset)
                if b:
                    bufs[i] += b
                    if not _response_complete(bufs[i]):
                        continue
                done_at[i] = now
                sel.unregister(s)
                left -= 1
    finally:
        sel.close()
        for s in batch.socks:
            s.close()
    out = []
    for i in range(n):
        if done_at[i] is None:
            out.append(TimeoutError(f"no complete answer within {timeout}s ({len(bufs[i])} bytes)"))
            continue
        try:
            status, headers, body = parse_response(bytes(bufs[i]))
        except ValueError as e:
            out.append(ConnectionError(f"closed without a whole answer ({errors[i]!r}): {e}"))
            continue
        r = Response(status, headers, body, done_at[i] - batch.sent[i])
        r.since_release = done_at[i] - batch.release
        r.done_at = done_at[i]
        out.append(r)
    return out


def burst(port, paths, timeout=10.0, host=LOOPBACK, settle=0.0):
    """Connects one client per path and gives the server 100 ms to accept them all, then
    sends every request at once and collects the answers (see collect())."""
    socks = connect_many(port, len(paths), host=host)
    time.sleep(0.1)
    batch = send_all(socks, [request_bytes(port, p, host=host) for p in paths])
    return collect(batch, timeout, settle=settle)


def percentile(values, pct):
    """The nearest-rank percentile (pct in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, -(-len(v) * pct // 100) - 1))
    return v[int(k)]


def _tcp_rows():
    """The rows of /proc/net/tcp and tcp6 (this network namespace), each split in fields:
    [1] local address:port, [2] remote, [3] state (hex), [9] inode."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) >= 10:
                yield f


def _tcp_inodes(server_port):
    """{client port: socket inode} of the server-side ends of loopback connections to
    server_port, from /proc/net/tcp and tcp6 (this network namespace)."""
    out = {}
    for f in _tcp_rows():
        if f[9] != "0" and int(f[1].rsplit(":", 1)[1], 16) == server_port:
            out[int(f[2].rsplit(":", 1)[1], 16)] = f[9]
    return out


def listeners(port):
    """How many sockets listen on port (state 0A in /proc/net/tcp and tcp6)."""
    return sum(1 for f in _tcp_rows() if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port)


def _socket_inode_owners(pids):
    """{"socket:[inode]": pid} over the fd tables of pids."""
    out = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out[link] = pid
    return out


def socket_owners(socks, server_port, pids, timeout=2.0):
    """For each client socket connected to server_port, the pid among pids that accepted it
    (whose fd table holds the server side of the connection): which worker serves it. Polls
    until every connection is accepted, or raises AssertionError."""
    ports = [s.getsockname()[1] for s in socks]

    def find():
        inodes = _tcp_inodes(server_port)
        owners = _socket_inode_owners(pids)
        out = [owners.get(f"socket:[{inodes.get(p)}]") for p in ports]
        return out if all(out) else None

    return wait_for(find, timeout, interval=0.005,
                    what=f"processes {pids} to accept {len(socks)} connections")


def socket_owner(sock, server_port, pids, timeout=2.0):
    """socket_owners() of one socket."""
    return socket_owners([sock], server_port, pids, timeout)[0]


# ---------------------------------------------------------------------------------------
# cw-test-origin


class Origin:
    """A running cw-test-origin. Its stderr goes to <dir>/origin.log."""

    def __init__(self, tmpdir, name="origin", port=0):
        self.log_path = os.path.join(tmpdir, f"{name}.log")
        exe = binary("cw-test-origin")
        if not os.access(exe, os.X_OK):
            raise AssertionError(f"{exe} is missing: build it with `make {exe}`")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [exe, "-p", str(port), "-a", LOOPBACK],
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.port = self._read_port(5.0)
        self.url = f"http://{LOOPBACK}:{self.port}"

    def _read_port(self, timeout):
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                raise AssertionError(f"origin printed no port=N in {timeout}s: {tail(self.log_path)}")
            b = os.read(fd, 1)
            if not b:
                self.stop()
                raise AssertionError(f"origin exited before listening: {tail(self.log_path)}")
            line += b
        m = re.match(rb"port=(\d+)\n$", line)
        if not m:
            self.stop()
            raise AssertionError(f"origin said {line!r}, not port=N")
        return int(m.group(1))

    def get(self, path, **kw):
        return request(self.port, path, **kw)

    def stats(self):
        r = request(self.port, "/__stats", timeout=5)
        assert r.status == 200, f"origin /__stats: {r}"
        return r.json()

    def reset(self):
        assert request(self.port, "/__reset", timeout=5).status == 200

    def mode(self, m):
        r = request(self.port, f"/__mode?m={m}", timeout=5)
        assert r.status == 200, f"origin /__mode?m={m}: {r}"

    def count(self, path):
        """Requests the origin received for path+query. Keys are compared after
        percent-decoding, so a proxy that re-encodes the query is still counted."""
        want = urllib.parse.unquote(path)
        return sum(n for k, n in self.stats()["paths"].items() if urllib.parse.unquote(k) == want)

    def method_count(self, method):
        return self.stats()["methods"].get(method, 0)

    def count_prefix(self, prefix):
        """Requests the origin received for paths that start with prefix."""
        return sum(n for k, n in self.stats()["paths"].items() if k.startswith(prefix))

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------------------
# cachewarpd configuration


class Raw(str):
    """A libconfig value written as is (a group, list or number)."""


def lc_value(v):
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(lc_value(x) for x in v) + " ]"
    if isinstance(v, dict):
        return lc_group(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def lc_group(d):
    return "{ " + " ".join(f"{k} = {lc_value(v)};" for k, v in d.items() if v is not None) + " }"


def config_text(tmpdir, port, origin_port, workers=2, route=None, origin=None, overrides=None,
                log_level="info"):
    """The test config: one origin "api", one route "/" (ttl 60s, no swr/sie), L1 only.
    route/origin update the route's and the origin's settings; overrides replaces whole
    top-level settings (a value of None removes one; str values are quoted unless Raw).
    One top-level setting per line, so that config errors point at distinct lines."""
    r = {"match": "/", "origin": "api", "ttl": "60s", "swr": "0s", "sie": "0s"}
    r.update(route or {})
    o = {
        "name": "api",
        "url": f"http://{LOOPBACK}:{origin_port}",
        "connect_timeout": "1s",
        "timeout": "10s",
    }
    o.update(origin or {})
    s = {
        "listen": f"{LOOPBACK}:{port}",
        "workers": workers,
        "log": {"level": log_level, "access": ""},
        "cache": {"path": os.path.join(tmpdir, "l1.mdb"), "size": "64M", "max_object": "8M"},
        "redis": {"enabled": False},
        "origins": Raw("( " + lc_group(o) + " )"),
        "routes": Raw("( " + lc_group(r) + " )"),
        "stats": {"listen": ""},
        "control": {"socket": os.path.join(tmpdir, "control.sock")},
        "purge": {"allow": ["127.0.0.1/32"]},
        # A start as root needs an account to drop to: the tests run as root on purpose
        # (test_supervisor's privilege tests use another one).
        "user": "root" if os.geteuid() == 0 else None,
    }
    s.update(overrides or {})
    lines = ["# written by tests/integration/cw.py"]
    lines += [f"{k} = {lc_value(v)};" for k, v in s.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_config(tmpdir, name="cachewarp.conf", **kw):
    """Writes config_text(tmpdir, **kw) to tmpdir/name and returns its path."""
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(config_text(tmpdir, **kw))
    return path


def run_daemon_cmd(args, timeout=10.0):
    """Runs cachewarpd with args to completion: (exit code, stdout, stderr)."""
    p = subprocess.run(
        [binary("cachewarpd")] + list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_cwctl(args, timeout=30.0, user=None):
    """Runs cwctl with args to completion: (exit code, stdout, stderr). user: a uid to run
    as (the permission test drops root this way)."""
    def drop():
        os.setgroups([])
        os.setgid(user)
        os.setuid(user)

    p = subprocess.run(
        [binary("cwctl")] + list(args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        preexec_fn=drop if user is not None else None,
    )
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# cachewarpd


class Daemon:
    """A running cachewarpd (the supervisor) with stdout+stderr in <dir>/cachewarpd.log.

    Every descendant seen (at start and by each workers()/children() call) is remembered
    with its start time, so stop() can prove that none outlives the supervisor."""

    READY_TIMEOUT = 10.0

    def __init__(self, tmpdir, origin, workers=2, route=None, origin_cfg=None, overrides=None,
                 log_level="info", name="cachewarpd", expect_workers=True, stats=False,
                 host=LOOPBACK, env=None):
        exe = binary("cachewarpd")
        if not os.access(exe, os.X_OK):
            raise AssertionError(f"{exe} is missing (the daemon is not built)")
        self.tmpdir = tmpdir
        self.workers_wanted = workers
        self.host = host
        self.port = free_port()
        overrides = dict(overrides or {})
        if ":" in host:  # IPv6: listen on [host]:port
            overrides.setdefault("listen", f"[{host}]:{self.port}")
        # One control socket per daemon, so that two daemons in one temp dir never meet.
        overrides.setdefault("control", {"socket": os.path.join(tmpdir, f"{name}.sock")})
        self.control = overrides["control"]["socket"]
        # stats=True: the stats process on an ephemeral port, so a test can wait on a counter
        # in /metrics (metric()) instead of sleeping.
        self.stats_port = None
        if stats:
            self.stats_port = free_port()
            overrides.setdefault("stats", {"listen": f"{LOOPBACK}:{self.stats_port}",
                                           "interval": "1s"})
        self.conf = write_config(
            tmpdir,
            name=f"{name}.conf",
            port=self.port,
            origin_port=origin.port,
            workers=workers,
            route=route,
            origin=origin_cfg,
            overrides=overrides,
            log_level=log_level,
        )
        self.log_path = os.path.join(tmpdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.known = {}  # pid -> start time of every descendant seen
        self.exit_code = None
        # env: extra environment (NOTIFY_SOCKET, WATCHDOG_USEC for the sd_notify tests).
        self.proc = subprocess.Popen(
            [exe, "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, **env} if env else None
        )
        self.pid = self.proc.pid
        try:
            self._wait_ready(expect_workers)
        except BaseException:
            self.kill_all()
            raise

    def _wait_ready(self, expect_workers):
        deadline = time.monotonic() + self.READY_TIMEOUT
        while not port_accepts(self.port, self.host) or \
                (self.stats_port and not port_accepts(self.stats_port)):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"cachewarpd exited with {self.proc.returncode} before listening:\n"
                    f"{tail(self.log_path)}")
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"cachewarpd not listening on {self.port} after {self.READY_TIMEOUT}s:\n"
                    f"{tail(self.log_path)}")
            time.sleep(0.02)
        # The listen socket accepts as soon as the supervisor binds it, before any worker
        # runs: also wait (a short, soft deadline) for the workers to exist.
        if expect_workers and self.workers_wanted > 0:
            soft = min(deadline, time.monotonic() + 3.0)
            while len(self.workers()) < self.workers_wanted and time.monotonic() < soft:
                time.sleep(0.02)
        self.children()

    # -- process tree

    def children(self):
        """Descendant pids, remembered for the orphan check."""
        out = descendants(self.pid)
        for p in out:
            st = proc_stat(p)
            if st is not None and p not in self.known:
                self.known[p] = st[1]
        return out

    def workers(self):
        """PIDs of the live children named cw-worker."""
        self.children()
        return self.named("cw-worker")

    def named(self, name):
        return [p for p in children(self.pid) if comm(p) == name and is_alive(p)]

    def is_running(self):
        return self.proc.poll() is None

    # -- HTTP

    def get(self, path, **kw):
        kw.setdefault("host", self.host)
        return request(self.port, path, **kw)

    def request(self, path, method="GET", **kw):
        kw.setdefault("host", self.host)
        return request(self.port, path, method=method, **kw)

    # -- cwctl

    def cwctl(self, *args, **kw):
        """Runs cwctl -s <this daemon's control socket> args: (exit code, stdout, stderr)."""
        return run_cwctl(["-s", self.control] + list(args), **kw)

    # -- /metrics (needs stats=True)

    def metric(self, name, **labels):
        """Sum of the series name{...} in /metrics whose labels include labels (0 when
        there is none)."""
        assert self.stats_port, "metric() needs the daemon started with stats=True"
        r = request(self.stats_port, "/metrics", timeout=5)
        assert r.status == 200, f"/metrics: {r}"
        want = {f'{k}="{v}"' for k, v in labels.items()}
        out = 0.0
        for line in r.body.decode("utf-8", "replace").splitlines():
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
            if not m or m.group(1) != name:
                continue
            have = set(re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"', m.group(2) or ""))
            if want <= have:
                out += float(m.group(3))
        return out

    def wait_metric(self, name, pred, timeout=10.0, **labels):
        """Polls metric(name, **labels) until pred(value) holds (returns the value), or raises
        AssertionError at the deadline: synchronises a test on an event the daemon counts."""
        last = [None]

        def check():
            last[0] = self.metric(name, **labels)
            return pred(last[0])

        try:
            wait_for(check, timeout, interval=0.02, what=f"{name}{labels or ''}")
        except AssertionError as e:
            raise AssertionError(f"{e}; last value {last[0]}") from None
        return last[0]

    # -- stopping

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for the supervisor to exit: its exit code, or raises AssertionError."""
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"cachewarpd still running {timeout}s after the signal:\n{tail(self.log_path)}")
        return self.exit_code

    def stop(self, timeout=15.0):
        """SIGTERM and wait: returns (exit code, seconds taken). Then asserts that no
        process it ever had survives (everything left over is SIGKILLed first)."""
        if self.proc.poll() is None:
            self.children()
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.wait(timeout)
            finally:
                took = time.monotonic() - t0
                if self.proc.poll() is None:
                    self.kill_all()
        else:
            took = 0.0
        self.check_no_orphans()
        self.log.close()
        return self.proc.returncode, took

    def orphans(self):
        """Live processes left by this daemon: remembered descendants, and anything whose
        command line names this daemon's config file."""
        left = {p for p, st in self.known.items() if is_alive(p, st)}
        left.update(pids_with_cmdline(self.conf))
        if self.proc.poll() is not None:
            left.discard(self.pid)
        return sorted(left)

    def check_no_orphans(self, timeout=2.0):
        deadline = time.monotonic() + timeout
        left = self.orphans()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.orphans()
        if left:
            desc = ", ".join(f"{p} ({comm(p)})" for p in left)
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            raise AssertionError(f"processes survived cachewarpd: {desc}")

    def kill_all(self):
        """SIGKILLs the supervisor and every descendant (cleanup after a failure)."""
        pids = self.children() + list(self.known)
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for p in set(pids):
            if is_alive(p, self.known.get(p)):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass


# ---------------------------------------------------------------------------------------
# per-test environment


class Env:
    """What a test gets: a temp dir, and factories for processes it then owns."""

    def __init__(self, name):
        self.name = name
        self._tmp = TempDir(prefix=f"cw-it-{name}-")
        self.dir = self._tmp.path
        self.origins = []
        self.daemons = []
        self.notes = []

    def note(self, text):
        """A measurement to print on the test's result line (e.g. a max latency)."""
        self.notes.append(text)

    def origin(self, name="origin", port=0):
        """A cw-test-origin; port 0 picks a free one (a given port restarts a stopped one)."""
        o = Origin(self.dir, name=name, port=port)
        self.origins.append(o)
        return o

    def daemon(self, origin, **kw):
        kw.setdefault("name", f"cachewarpd{len(self.daemons) or ''}")
        d = Daemon(self.dir, origin, **kw)
        self.daemons.append(d)
        return d

    def config(self, origin_port=None, **kw):
        """Writes a config without starting anything; returns its path."""
        kw.setdefault("port", free_port())
        return write_config(self.dir, origin_port=origin_port or free_port(), **kw)

    def log_tails(self, lines=40):
        out = []
        for d in self.daemons:
            out.append(f"--- {d.log_path} (last {lines} lines)\n{tail(d.log_path, lines)}")
        for o in self.origins:
            t = tail(o.log_path, 10)
            if t.strip():
                out.append(f"--- {o.log_path}\n{t}")
        return "\n".join(out)

    def close(self):
        """Stops every daemon (with the orphan check) and origin; raises the first error
        after trying them all. The temp dir goes afterwards."""
        errors = []
        for d in self.daemons:
            try:
                if d.is_running() or not d.log.closed:
                    d.stop(timeout=15.0)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        for o in self.origins:
            try:
                o.stop()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        if errors:
            raise errors[0]

    def cleanup(self):
        self._tmp.cleanup()


# ---------------------------------------------------------------------------------------
# a scripted raw-socket origin


class RawOrigin:
    """A scripted HTTP/1.1 origin on a raw socket, for bytes cw-test-origin cannot send.

    respond(method, target, headers) returns the raw bytes to send, or a callable taking the
    connected socket that does what it likes with it (send in pieces, wait, reset); the
    connection is closed afterwards. on_accept(sock), when given, runs first on every
    accepted connection and returns True when it dealt with the connection itself (the
    request is then not read). Counts connections accepted and requests by target.
    Registered with env, which stops it with the test."""

    def __init__(self, env, respond, name="raw-origin", on_accept=None):
        self.respond = respond
        self.on_accept = on_accept
        self.log_path = f"{env.dir}/{name}.log"
        open(self.log_path, "w").close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.counts = {}
        self.requests = []   # (method, target, headers dict with lower-case names)
        self.raw_heads = []  # the request heads as received (bytes, up to the blank line)
        self.accepts = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.stopped = threading.Event()  # set by stop(): callables waiting on it return
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        env.origins.append(self)

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepts += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            if self.on_accept is not None and self.on_accept(c):
                return
            c.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                b = c.recv(65536)
                if not b:
                    return
                data += b
            raw_head = data.split(b"\r\n\r\n", 1)[0]
            head = raw_head.decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            with self.lock:
                self.counts[target] = self.counts.get(target, 0) + 1
                self.requests.append((method, target, headers))
                self.raw_heads.append(raw_head)
            out = self.respond(method, target, headers)
            if callable(out):
                out(c)
            else:
                c.sendall(out)
        except OSError:
            pass
        finally:
            c.close()

    def count(self, target):
        with self.lock:
            return self.counts.get(target, 0)

    def stop(self):
        self.stopping = True
        self.stopped.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(2)
        return 0
