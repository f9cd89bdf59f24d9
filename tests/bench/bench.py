#!/usr/bin/env python3
"""CacheWarp against nginx proxy_cache, Varnish and nginx static files, in one run.

    BUILD=build/rel python3 tests/bench/bench.py      (or: make bench)

Starts one origin (cw-test-origin) and the servers on ephemeral loopback ports in a temp
dir: cachewarpd (2 workers; more instances below), nginx proxy_cache (2 worker
processes), Varnish (malloc storage, its default 2 thread pools) and nginx serving the same
bytes as static files (2 worker processes; the floor). Checks that each cache answers a
second GET as a HIT with the right body, then runs every scenario against every server that
runs it, the servers interleaved within each scenario and their order rotated in each
repetition. The load
generator is tests/bench/openloop.c (cw-openloop): open loop at a fixed offered rate with
latency from the scheduled send time, closed loop, or a burst of clients on one cold key.

Per run it records the generator's JSON line, the server's CPU (utime+stime of the
server's whole process tree, from /proc), and the origin's request count. Writes
$BENCH_OUT/results.json (every run, and the medians), results.md (the tables) and
chart.svg, and prints the tables. Exits 1, naming the server and its log, when a server
fails to start or dies, and exits 1 after writing the results when any run had errors.

Environment: BUILD (build/rel), BENCH_OUT ($BUILD/bench), BENCH_REPS (3), BENCH_OPEN_S (5,
seconds of each open-loop run), BENCH_CLOSED_S (3), BENCH_RATES ("2000 8000": offered rates
for the hot 1 KiB hit; the 64 and 100 KiB hits run at the first), BENCH_MISS_RATE (1000),
BENCH_STAMPEDE ("200 5 50": clients, rounds, origin delay ms), BENCH_SERVERS (default "cw
nginx varnish static", plus cw-base with BENCH_CW_BASE, plus cw-w1 cw-w4 cw-small with
BENCH_HEAVY=1), BENCH_SERVER_CPUS / BENCH_CLIENT_CPUS (taskset lists, e.g. "1" and "0";
default unpinned), BENCH_FIFO (0: the SCHED_FIFO priority of the generator in its open-loop
and burst runs; 0 keeps the default policy, which gave the shorter tails), BENCH_KEEP=1 (keep
the temp dir).

The L2 hit (scenario l2hit_open_RATE, at BENCH_MISS_RATE, as every answer is an L1 miss; on
CacheWarp only: the others have no L2 and show n/a): a redis-server and two more cachewarpd of this build on
it, a filler and the measured node "cw-l2" (2 workers, 1G, as "cw"). Each repetition, the
filler fetches RATE * BENCH_OPEN_S * 1.05 keys of 1 KiB new to this repetition (open loop,
so each key once) and the run waits until Redis holds them all; then the measured node,
whose L1 has never seen them, is asked each key once, in the same order, in open loop at
RATE: every answer is an L1 miss and an L2 hit. Its server CPU adds redis-server's to the
node's process tree; its L2 hits are read from the node's /metrics.

BENCH_CW_BASE=DIR adds server "cw-base": the cachewarpd of another build directory (e.g. a
worktree of an older commit: DIR/bin/cachewarpd), configured as "cw", in the same run, so
that a change is measured against its base on the same machine at the same time.
BENCH_SCENARIOS: space-separated fnmatch patterns on scenario ids ("hit1k_* hit100k_*");
when set, exactly the matching scenarios run, heavy ones included. BENCH_HEAVY=1 adds the
heavy scenarios and servers: the 100 KiB open-loop hit and the immediate-origin open-loop
miss; CacheWarp with 1 and 4 workers on the hot-hit and Zipf scenarios; BENCH_SMALL_KEYS
(100000) keys in a cache of BENCH_SMALL_CACHE (32M) on cw-small (and cw, whose cache holds
them all), each distribution warmed for BENCH_SMALL_WARM_S (10) seconds first.
"""

import fnmatch
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")

NAMES = {"cw": "cachewarp", "nginx": "nginx proxy_cache", "varnish": "Varnish",
         "static": "nginx static (floor)"}
HOT1K = "/hot1k?size=1024&cc=max-age%3D3600"
HOT64K = "/hot64k?size=65536&cc=max-age%3D3600"
HOT100K = "/hot100k?size=102400&cc=max-age%3D3600"
# Many keys: /k/0 .. /k/N-1, each a 1 KiB object (nginx static serves hot1k for all).
KEYS_PATH = "/k/{n}?size=1024&cc=max-age%3D3600"
# The Host of the L2-hit runs' requests: the key includes it, and the two nodes listen on
# different ports (behind a load balancer, every node sees the site's own Host).
L2_SITE = "www.example.test"
# The extra CacheWarp instances of BENCH_HEAVY=1: worker scaling and a cache smaller than
# its key set. They run only the scenarios marked for them.
SCALE_SERVERS = ("cw-w1", "cw-w4")
SMALL_SERVER = "cw-small"
COLORS = {"cw": "#d9480f", "cw-base": "#f59f00", "nginx": "#2b8a3e", "varnish": "#1c7ed6",
          "static": "#868e96", "cw-w1": "#ffa8a8", "cw-w4": "#862e9c", "cw-small": "#5c940d"}


def die(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v else default


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_rev(path):
    """The short commit of the checkout that holds path, "+dirty" when it has changes."""
    try:
        rev = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (rev or "?") + ("+dirty" if dirty else "")


def taskset(cpus):
    return ["taskset", "-c", cpus] if cpus else []


class Proc:
    """A server process tree, started in the foreground and stopped by its PID."""

    def __init__(self, name, argv, tmp, cpus=""):
        self.name = name
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(taskset(cpus) + argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=tmp)

    def alive(self):
        return self.p.poll() is None

    def tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def pids(self):
        """The main pid and every descendant (children of any thread), recursively."""
        out, todo = [], [self.p.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        todo += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return out

    def cpu(self):
        """(ticks, ns): utime+stime of the tree in clock ticks (kept for threads that exit),
        and the sum of the live threads' run time from schedstat in ns (precise)."""
        ticks, ns = 0, 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        ns += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                pass
        return ticks, ns

    def stop(self):
        pids = self.pids()
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for pid in pids[1:]:  # a descendant that outlived its parent
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.log.close()


def cpu_delta_s(before, after, nprocs):
    """Server CPU seconds between two Proc.cpu() samples. The schedstat sum is precise but
    loses threads that exited during the run; the tick count keeps them but is rounded to
    1/CLK_TCK per process and sample. Take the precise figure unless the ticks say more
    time went by than rounding explains."""
    ticks = (after[0] - before[0]) / CLK_TCK
    ns = (after[1] - before[1]) / 1e9
    slack = 2.0 * nprocs / CLK_TCK
    return ticks if ticks > ns + slack else ns


def http_get(port, path, timeout=10, host=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Host": host} if host else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def wait_ready(proc, port, path, deadline_s=15):
    end = time.monotonic() + deadline_s
    err = None
    while time.monotonic() < end:
        if not proc.alive():
            die(f"{proc.name} exited with status {proc.p.returncode} at start; "
                f"its log ({proc.log_path}):\n{proc.tail()}")
        try:
            st, _, _ = http_get(port, path, timeout=2)
            if st == 200:
                return
            err = f"status {st}"
        except Exception as e:  # noqa: BLE001 - any failure means not ready yet
            err = e
        time.sleep(0.05)
    die(f"{proc.name} did not answer GET {path} on port {port} within {deadline_s} s "
        f"({err}); its log ({proc.log_path}):\n{proc.tail()}")


def origin_total(oport):
    _, _, body = http_get(oport, "/__stats")
    return json.loads(body)["total"]


def redis_cmd(port, *args):
    """One command to the redis-server on 127.0.0.1:port: its reply as a str or int (an error
    reply as its text), or None when it cannot be reached."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(out)
            line = s.makefile("rb").readline().rstrip(b"\r\n").decode()
    except OSError:
        return None
    return int(line[1:]) if line[:1] == ":" else line[1:]


def metric(port, name):
    """The sum of the series of name in the /metrics on port."""
    _, _, body = http_get(port, "/metrics")
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        head, _, v = line.rpartition(" ")
        if head.split("{")[0] == name:
            total += float(v)
    return total


def subst(src, dst, values):
    with open(src) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    with open(dst, "w") as f:
        f.write(text)


class Bench:
    def __init__(self):
        self.build = os.path.abspath(os.environ.get("BUILD", "build/rel"))
        self.out = os.environ.get("BENCH_OUT", os.path.join(self.build, "bench"))
        self.reps = env_int("BENCH_REPS", 3)
        self.open_s = float(os.environ.get("BENCH_OPEN_S", "5"))
        self.closed_s = float(os.environ.get("BENCH_CLOSED_S", "3"))
        self.rates = [int(x) for x in os.environ.get("BENCH_RATES", "2000 8000").split()]
        self.fifo = int(os.environ.get("BENCH_FIFO", "0"))
        self.miss_rate = env_int("BENCH_MISS_RATE", 1000)
        st = os.environ.get("BENCH_STAMPEDE", "200 5 50").split()
        self.st_clients, self.st_rounds, self.st_delay = int(st[0]), int(st[1]), int(st[2])
        self.heavy = os.environ.get("BENCH_HEAVY", "0") == "1"
        self.small_keys = env_int("BENCH_SMALL_KEYS", 100000)
        self.small_cache = os.environ.get("BENCH_SMALL_CACHE", "32M")
        self.small_warm_s = float(os.environ.get("BENCH_SMALL_WARM_S", "10"))
        self.patterns = os.environ.get("BENCH_SCENARIOS", "").split()
        # CacheWarp instances: id -> build dir, workers, cache size.
        # The commit of each build's checkout, read once at the start: the tables name it.
        self.cw = {"cw": {"build": self.build, "workers": 2, "size": "1G",
                          "git": git_rev(self.build)}}
        self.names = dict(NAMES)
        base = os.environ.get("BENCH_CW_BASE", "")
        if base:
            base = os.path.abspath(base)
            self.cw["cw-base"] = {"build": base, "workers": 2, "size": "1G",
                                  "git": git_rev(base)}
            self.names["cw-base"] = f"cachewarp base ({self.cw['cw-base']['git']})"
            self.names["cw"] = f"cachewarp ({self.cw['cw']['git']})"
        default = ["cw"] + (["cw-base"] if base else []) + ["nginx", "varnish", "static"]
        for sid, w in (("cw-w1", 1), ("cw-w4", 4)):
            self.cw[sid] = {**self.cw["cw"], "workers": w}
            self.names[sid] = f"cachewarp {w} worker{'s' if w > 1 else ''}"
        self.cw[SMALL_SERVER] = {**self.cw["cw"], "size": self.small_cache}
        self.names[SMALL_SERVER] = f"cachewarp, cache {self.small_cache}"
        if self.heavy:
            default += list(SCALE_SERVERS) + [SMALL_SERVER]
        self.servers = os.environ.get("BENCH_SERVERS", " ".join(default)).split()
        self.cw = {k: v for k, v in self.cw.items() if k in self.servers}
        self.server_cpus = os.environ.get("BENCH_SERVER_CPUS", "")
        self.client_cpus = os.environ.get("BENCH_CLIENT_CPUS", "")
        self.gen = os.path.join(self.build, "bin", "cw-openloop")
        self.tmp = None  # made by main() once the tools are there
        self.procs = {}
        self.port = {}
        self.runs = []
        self.failed = []
        for s in self.servers:
            if s not in self.names:
                die(f"unknown server {s!r} in BENCH_SERVERS (know: {' '.join(self.names)}; "
                    "cw-base needs BENCH_CW_BASE)")

    # --- servers ------------------------------------------------------------------------
    def check_tools(self):
        need = {"nginx": ["nginx"], "static": ["nginx"], "varnish": ["varnishd"]}
        for sid, c in self.cw.items():
            need[sid] = [os.path.join(c["build"], "bin", "cachewarpd")]
        for exe in [self.gen, os.path.join(self.build, "bin", "cw-test-origin")]:
            if not os.access(exe, os.X_OK):
                die(f"{exe} is missing: run `make bench` (it builds it)")
        if any(sc["l2"] for sc in self.scenarios()) and "cw" in self.servers:
            need["cw"].append("redis-server")  # the L2-hit runs
        for s in self.servers:
            for exe in need[s]:
                if shutil.which(exe) is None and not os.access(exe, os.X_OK):
                    die(f"{exe} is missing for {self.names[s]} (make bench installs nginx-light "
                        "and varnish: BENCH_DEPS=1 scripts/deps.sh)")
        if (self.server_cpus or self.client_cpus) and shutil.which("taskset") is None:
            die("taskset is missing (util-linux)")

    def start_origin(self):
        p = Proc("origin", [os.path.join(self.build, "bin", "cw-test-origin"), "-p", "0"],
                 self.tmp, self.server_cpus)
        self.procs["origin"] = p
        p.log.close()
        # Its stdout carries "port=N": read it from the log it shares with stderr.
        end = time.monotonic() + 10
        while time.monotonic() < end:
            for line in open(p.log_path, errors="replace"):
                if line.startswith("port="):
                    self.oport = int(line[5:])
                    wait_ready(p, self.oport, "/__stats")
                    return
            if not p.alive():
                break
            time.sleep(0.05)
        die(f"cw-test-origin printed no port; its log:\n{p.tail()}")

    def start_cw(self, sid, c=None, redis_port=None, stats_port=None):
        c = c or self.cw[sid]
        port = free_port()
        d = os.path.join(self.tmp, sid)
        os.makedirs(d)
        conf = os.path.join(d, "cachewarp.conf")
        # The L2 nodes: a short timeout, as a fleet would use, with room for a loaded box.
        redis = (f'{{ enabled = true; port = {redis_port}; timeout = "50ms"; }}'
                 if redis_port else "{ enabled = false; }")
        stats = f"127.0.0.1:{stats_port}" if stats_port else ""
        # As root (like nginx's "user root root;" below); a build from before the user setting
        # refuses it and needs none.
        user = 'user = "root";\n' if os.geteuid() == 0 else ""
        text = (f'''{user}listen = "127.0.0.1:{port}";
workers = {c["workers"]};
log = {{ level = "warn"; access = ""; }};
cache = {{ path = "{d}/l1.mdb"; size = "{c["size"]}"; max_object = "8M"; }};
redis = {redis};
origins = ( {{ name = "api"; url = "http://127.0.0.1:{self.oport}"; connect_timeout = "1s";
              timeout = "10s"; }} );
routes = ( {{ match = "/"; origin = "api"; ttl = "60s"; swr = "0s"; sie = "0s"; }} );
stats = {{ listen = "{stats}"; }};
control = {{ socket = "{d}/control.sock"; }};
purge = {{ allow = [ "127.0.0.1/32" ]; }};
''')
        with open(conf, "w") as f:
            f.write(text)
        exe = os.path.join(c["build"], "bin", "cachewarpd")
        t = subprocess.run([exe, "-t", "-c", conf], capture_output=True, text=True)
        if t.returncode != 0 and user and ": user:" in t.stdout + t.stderr:
            with open(conf, "w") as f:
                f.write(text[len(user):])
            t = subprocess.run([exe, "-t", "-c", conf], capture_output=True, text=True)
        if t.returncode != 0:
            die(f"{exe} -t rejected the bench config: {t.stdout}{t.stderr}")
        return Proc(f"cachewarpd-{sid}", [exe, "-c", conf], self.tmp, self.server_cpus), port

    def nginx_common(self, name, port):
        user = "user root root;" if os.getuid() == 0 else ""
        prefix = os.path.join(self.tmp, name)
        os.makedirs(prefix, exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        return prefix, conf, {"TMP": prefix, "PORT": port, "ORIGIN_PORT": self.oport,
                              "USER": user, "STATIC": os.path.join(self.tmp, "static")}

    def start_nginx(self, name, template):
        port = free_port()
        prefix, conf, values = self.nginx_common(name, port)
        subst(os.path.join(HERE, template), conf, values)
        err = os.path.join(prefix, "error.log")
        t = subprocess.run(["nginx", "-t", "-q", "-p", prefix, "-e", err, "-c", conf],
                           capture_output=True, text=True)
        if t.returncode != 0:
            die(f"nginx -t failed for {name}: {t.stderr}")
        argv = ["nginx", "-p", prefix, "-e", err, "-c", conf, "-g", "daemon off;"]
        return Proc(name, argv, self.tmp, self.server_cpus), port

    def start_varnish(self):
        port = free_port()
        vcl = os.path.join(self.tmp, "varnish.vcl")
        subst(os.path.join(HERE, "varnish.vcl.in"), vcl, {"ORIGIN_PORT": self.oport})
        # -j none: no privilege separation (we may be root, and the temp dir is ours);
        # -T none: no management CLI listener. Threads: the defaults, 2 pools of 100-5000.
        argv = ["varnishd", "-F", "-j", "none", "-n", os.path.join(self.tmp, "varnish"),
                "-a", f"127.0.0.1:{port}", "-f", vcl, "-s", "malloc,256m", "-T", "none",
                "-p", "thread_pools=2"]
        return Proc("varnishd", argv, self.tmp, self.server_cpus), port

    def start_all(self):
        self.start_origin()
        # The static floor serves the same bytes the origin gives the caches.
        sdir = os.path.join(self.tmp, "static")
        os.makedirs(sdir)
        for name, path in (("hot1k", HOT1K), ("hot64k", HOT64K), ("hot100k", HOT100K)):
            _, _, body = http_get(self.oport, path)
            with open(os.path.join(sdir, name), "wb") as f:
                f.write(body)
        self.bodies = {HOT1K: 1024, HOT64K: 65536, HOT100K: 102400}
        for s in self.servers:
            if s in self.cw:
                p, port = self.start_cw(s)
            elif s == "nginx":
                p, port = self.start_nginx("nginx", "nginx.conf.in")
            elif s == "static":
                p, port = self.start_nginx("nginx-static", "nginx-static.conf.in")
            else:
                p, port = self.start_varnish()
            self.procs[s], self.port[s] = p, port
            wait_ready(p, port, HOT1K)
            log(f"{self.names[s]} up on 127.0.0.1:{port} (pid {p.p.pid})")
        if any(sc["l2"] for sc in self.scenarios()) and "cw" in self.servers:
            self.start_l2()

    def start_l2(self):
        """redis-server, and the filler and measured cachewarpd on it (the L2-hit runs)."""
        rport = free_port()
        rdir = os.path.join(self.tmp, "redis")
        os.makedirs(rdir)
        p = Proc("redis-server", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", rdir,
                                  "--daemonize", "no"], self.tmp, self.server_cpus)
        self.procs["redis"], self.rport = p, rport
        end = time.monotonic() + 10
        while redis_cmd(rport, "PING") != "PONG":
            if not p.alive() or time.monotonic() > end:
                die(f"redis-server did not start; its log:\n{p.tail()}")
            time.sleep(0.05)
        self.l2_stats = free_port()
        for sid, stats in (("cw-l2-fill", None), ("cw-l2", self.l2_stats)):
            p, port = self.start_cw(sid, self.cw["cw"], rport, stats)
            self.procs[sid], self.port[sid] = p, port
            wait_ready(p, port, HOT1K)
            log(f"{sid} (L2 on redis-server 127.0.0.1:{rport}) up on 127.0.0.1:{port} "
                f"(pid {p.p.pid})")
        # Both nodes use Redis before the first run: a fill on one is an L2 hit on the other
        # (a few keys, so that each of the measured node's workers is likely to take one).
        end = time.monotonic() + 15
        n = 0
        while True:
            n += 1
            path = f"/l2ready-{n}?size=1024&cc=max-age%3D3600"
            http_get(self.port["cw-l2-fill"], path, host=L2_SITE)
            time.sleep(0.05)
            _, hdr, _ = http_get(self.port["cw-l2"], path, host=L2_SITE)
            if "detail=l2" in hdr.get("cache-status", "") and n >= 8:
                break
            if time.monotonic() > end:
                die(f"cw-l2 does not use Redis; its log:\n{self.procs['cw-l2'].tail()}")

    def check_hits(self):
        """A broken cache must never pass for a fast one: the second GET is a HIT."""
        for s in self.servers:
            for path, size in self.bodies.items():
                http_get(self.port[s], path)
                st, hdr, body = http_get(self.port[s], path)
                if st != 200 or len(body) != size:
                    die(f"{self.names[s]}: GET {path}: status {st}, {len(body)} bytes, want 200 "
                        f"and {size}")
                if s != "static" and not hdr.get("x-cache", "").upper().startswith("HIT"):
                    die(f"{self.names[s]}: second GET of {path} is not a HIT "
                        f"(X-Cache: {hdr.get('x-cache')!r})")

    def stop_all(self):
        for p in reversed(list(self.procs.values())):
            p.stop()

    # --- runs ---------------------------------------------------------------------------
    def all_scenarios(self):
        """Every scenario in run order, as dicts: id, label, kind (hit, keys, miss,
        stampede), args (the generator's), heavy (only with BENCH_HEAVY=1), scale (the
        worker-scaling instances run it too), small (the small-cache scenario: run on
        cw-small and cw only), warm (generator args run once per server before the first
        repetition, not recorded)."""
        out = []

        def add(sid, label, kind, args, heavy=False, scale=False, small=False, warm=None,
                l2=False):
            out.append({"id": sid, "label": label, "kind": kind, "args": args, "heavy": heavy,
                        "scale": scale, "small": small, "warm": warm, "l2": l2})
        # Two threads, so that a thread kept off its CPU has its sends made by the other.
        o = ["-c", "32", "-t", "2", "-d", str(self.open_s)]
        c = ["-R", "0", "-c", "64", "-t", "2", "-d", str(self.closed_s)]
        r0 = self.rates[0]
        for r in self.rates:
            add(f"hit1k_open_{r}", f"hot 1 KiB hit, open loop {r} req/s", "hit",
                ["-R", str(r)] + o + [HOT1K], scale=True)
        add("hit1k_closed", "hot 1 KiB hit, closed loop (64 conns)", "hit", c + [HOT1K],
            scale=True)
        add(f"hit64k_open_{r0}", f"hot 64 KiB hit, open loop {r0} req/s", "hit",
            ["-R", str(r0)] + o + [HOT64K])
        add("hit64k_closed", "hot 64 KiB hit, closed loop (64 conns)", "hit", c + [HOT64K],
            scale=True)
        add(f"hit100k_open_{r0}", f"hot 100 KiB hit, open loop {r0} req/s", "hit",
            ["-R", str(r0)] + o + [HOT100K], heavy=True)
        add("hit100k_closed", "hot 100 KiB hit, closed loop (64 conns)", "hit", c + [HOT100K])
        warm10k = ["-R", "0", "-c", "32", "-d", "4", "-K", "10000", "-Q", KEYS_PATH]
        add("keys10k_uniform_closed", "10,000 keys of 1 KiB, uniform, closed loop (64 conns)",
            "keys", c + ["-K", "10000", KEYS_PATH], warm=warm10k)
        add("keys10k_zipf_closed", "10,000 keys of 1 KiB, Zipf 0.99, closed loop (64 conns)",
            "keys", c + ["-K", "10000", "-Z", "0.99", KEYS_PATH], scale=True, warm=warm10k)
        # The L2 hit beside the L1 hit: an L1 miss each, so at the miss rate; its path and key
        # count are made per repetition.
        add(f"l2hit_open_{self.miss_rate}",
            f"L2 hit (cold L1, warm Redis), 1 KiB, open loop {self.miss_rate} req/s", "l2hit",
            ["-R", str(self.miss_rate)] + o, l2=True)
        miss = "/miss-{n}?size=1024&cc=max-age%3D3600"
        miss1 = "/miss1ms-{n}?size=1024&cc=max-age%3D3600&delay_ms=1"
        add(f"miss1ms_open_{self.miss_rate}",
            f"miss (unique keys, origin 1 ms), open loop {self.miss_rate} req/s", "miss",
            ["-R", str(self.miss_rate)] + o + [miss1])
        add(f"miss_open_{self.miss_rate}",
            f"miss (unique keys, origin at once), open loop {self.miss_rate} req/s", "miss",
            ["-R", str(self.miss_rate)] + o + [miss], heavy=True)
        add("miss_closed", "miss (unique keys, origin at once), closed loop (64 conns)", "miss",
            c + [miss])
        # The stampede's floor: as many clients at once on the hot key, every answer a hit.
        add("burst_hit", f"burst: {self.st_clients} clients at once on the hot 1 KiB key "
            f"(the stampede without an origin), {self.st_rounds} rounds", "burst",
            ["-b", str(self.st_clients), "-r", str(self.st_rounds), "-w", HOT1K, HOT1K])
        add("stampede", f"stampede: {self.st_clients} clients on one cold key, "
            f"origin {self.st_delay} ms, {self.st_rounds} rounds", "stampede",
            ["-b", str(self.st_clients), "-r", str(self.st_rounds), "-w", HOT1K,
             f"/stampede-{{n}}?delay_ms={self.st_delay}&cc=max-age%3D60"])
        # A cache smaller than its key set (cw-small; cw, whose cache holds every key, beside
        # it): the steady state, so each distribution is first warmed by BENCH_SMALL_WARM_S
        # of the same load in closed loop; then closed loop (hit ratio, CPU) and a fixed rate.
        n = self.small_keys
        kp = "/s/{n}?size=1024&cc=max-age%3D3600"
        for dist, ex in (("zipf", ["-Z", "0.99"]), ("uniform", [])):
            warm = ["-R", "0", "-c", "64", "-t", "2", "-d", str(self.small_warm_s),
                    "-K", str(n)] + ex + [kp]
            what = f"{n:,} keys of 1 KiB, {'Zipf 0.99' if ex else 'uniform'}"
            add(f"keys{n // 1000}k_{dist}_closed", f"{what}, closed loop (64 conns)", "keys",
                c + ["-K", str(n)] + ex + [kp], heavy=True, small=True, warm=warm)
            add(f"keys{n // 1000}k_{dist}_open_{r0}", f"{what}, open loop {r0} req/s", "keys",
                ["-R", str(r0)] + o + ["-K", str(n)] + ex + [kp], heavy=True, small=True,
                warm=warm)
        return out

    def scenarios(self):
        """The scenarios of this run: BENCH_SCENARIOS (fnmatch patterns on the ids, any of
        them) when set, else the default ones plus the heavy ones with BENCH_HEAVY=1."""
        out = []
        for sc in self.all_scenarios():
            if self.patterns:
                if any(fnmatch.fnmatchcase(sc["id"], p) for p in self.patterns):
                    out.append(sc)
            elif self.heavy or not sc["heavy"]:
                out.append(sc)
        return out

    def runs_on(self, sc, s):
        """Whether server s runs scenario sc."""
        if s in SCALE_SERVERS:
            return sc["scale"]
        if s == SMALL_SERVER:
            return sc["small"]
        if sc["l2"]:
            return s == "cw"
        if sc["small"]:
            return s == "cw"
        return True

    def run_one(self, rep, sid, kind, args, s):
        # The floor has no miss path: its miss and stampede runs go to the origin itself.
        direct = s == "static" and kind not in ("hit", "keys", "burst")
        target = "origin" if direct else s
        extra = None  # a process whose CPU counts too (the L2 hit's redis-server)
        if kind == "l2hit":
            target, extra = "cw-l2", self.procs["redis"]
            args = args + self.l2_fill(rep)
        port = self.oport if direct else self.port[target]
        proc = self.procs[target]
        salt = f"{s}r{rep}"
        rt = []
        if self.fifo and ("-b" in args or ("-R" in args and args[args.index("-R") + 1] != "0")):
            rt = ["-P", str(self.fifo)]  # open loop and bursts only: closed loop measures req/s
        argv = taskset(self.client_cpus) + [self.gen, "-p", str(port), "-s", salt] + rt + args
        o0 = origin_total(self.oport)
        l2h0 = metric(self.l2_stats, "cachewarp_l2_hits_total") if extra else 0
        c0 = proc.cpu()
        r0 = extra.cpu() if extra else None
        t0 = time.monotonic()
        res = subprocess.run(argv, capture_output=True, text=True)
        wall = time.monotonic() - t0
        load1 = os.getloadavg()[0]
        c1 = proc.cpu()
        r1 = extra.cpu() if extra else None
        o1 = origin_total(self.oport)
        if not proc.alive():
            die(f"{self.names[s]} ({proc.name}) died during {sid}; its log ({proc.log_path}):\n"
                f"{proc.tail()}")
        try:
            g = json.loads(res.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            die(f"{self.names[s]}: {sid}: cw-openloop failed (exit {res.returncode}): "
                f"{res.stdout}{res.stderr}")
        cpu_s = cpu_delta_s(c0, c1, len(proc.pids()))
        redis_s = cpu_delta_s(r0, r1, 1) if extra else None
        n = g["requests"]
        run = {"rep": rep, "scenario": sid, "server": s, "target": target, **g,
               "server_cpu_s": round(cpu_s, 4),
               "server_cpu_us_per_req": round(cpu_s * 1e6 / n, 2) if n else None,
               "origin_requests": o1 - o0,
               "wall_s": round(wall, 2), "load1": round(load1, 2),
               "hit_ratio": round(g["hits"] / n, 4) if n and s != "static" else None}
        if extra:
            # The L2 hit's cost is the node's and Redis's: both in server_cpu_us_per_req.
            l2h1 = metric(self.l2_stats, "cachewarp_l2_hits_total")
            run["server_cpu_s"] = round(cpu_s + redis_s, 4)
            run["server_cpu_us_per_req"] = round((cpu_s + redis_s) * 1e6 / n, 2) if n else None
            run["redis_cpu_us_per_req"] = round(redis_s * 1e6 / n, 2) if n else None
            run["l2_hit_ratio"] = round((l2h1 - l2h0) / n, 4) if n else None
        if kind == "stampede":
            # The warm-up GETs are hits (or, direct, origin requests): count only the rounds'.
            warm = self.st_clients if direct else 0
            run["origin_requests"] = o1 - o0 - warm
            run["origin_requests_per_round"] = run["origin_requests"] / self.st_rounds
        bad = g["errors"] + g["non2xx"]
        if bad:
            self.failed.append(f"{self.names[s]} {sid} rep {rep}: {g['errors']} errors, "
                               f"{g['non2xx']} non-2xx")
            log(f"WARNING {self.failed[-1]}")
        if kind in ("hit", "burst") and s != "static" and g["hits"] < n:
            self.failed.append(f"{self.names[s]} {sid} rep {rep}: {n - g['hits']} of {n} answers "
                               "were not X-Cache HIT")
            log(f"WARNING {self.failed[-1]}")
        self.runs.append(run)
        log(f"rep {rep} {sid:<18} {self.names[s]:<21} {g['rps']:>9.0f} req/s  p50 {g['p50_ms']} "
            f"p99 {g['p99_ms']} p99.9 {g['p999_ms']} max {g['max_ms']} ms  "
            f"cpu {run['server_cpu_us_per_req']} us/req  origin {run['origin_requests']}")

    def l2_fill(self, rep):
        """Writes this repetition's keys to Redis through the filler node, each once, and
        waits until Redis holds them all: the generator arguments that then ask the measured
        node for each of them once, in the same order."""
        nkeys = int(self.miss_rate * self.open_s * 1.05)
        path = f"/l2r{rep}/{{n}}?size=1024&cc=max-age%3D3600"
        before = redis_cmd(self.rport, "DBSIZE")
        rate = 4000
        argv = taskset(self.client_cpus) + [self.gen, "-p", str(self.port["cw-l2-fill"]),
                                            "-R", str(rate), "-c", "64", "-d",
                                            f"{nkeys / rate:.3f}", "-K", str(nkeys), "-Q",
                                            "-H", L2_SITE, path]
        res = subprocess.run(argv, capture_output=True, text=True)
        try:
            g = json.loads(res.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            die(f"l2 fill: cw-openloop failed (exit {res.returncode}): {res.stdout}{res.stderr}")
        # The generator's last due times may fall past its duration: it can ask a few keys
        # fewer than nkeys (never more, at one thread in order), each a new Redis entry.
        want = min(nkeys, g["requests"] - g["errors"] - g["non2xx"])
        end = time.monotonic() + 30
        while True:
            have = redis_cmd(self.rport, "DBSIZE") - before
            if have >= want or time.monotonic() > end:
                break
            time.sleep(0.1)
        log(f"l2 fill rep {rep}: {g['requests']} requests ({g['errors']} errors), {have} of "
            f"{nkeys} keys in Redis")
        if not self.procs["cw-l2-fill"].alive():
            die(f"cw-l2-fill died; its log:\n{self.procs['cw-l2-fill'].tail()}")
        return ["-K", str(nkeys), "-Q", "-H", L2_SITE, path]

    def warm(self, sc, s):
        """A scenario's warm-up pass on one server, before its first repetition; not
        recorded, its errors ignored (a miss storm may be slow: the run is the measure)."""
        port = self.oport if s == "static" and sc["kind"] not in ("hit", "keys") else self.port[s]
        argv = taskset(self.client_cpus) + [self.gen, "-p", str(port), "-s", f"{s}w"] + sc["warm"]
        res = subprocess.run(argv, capture_output=True, text=True)
        try:
            g = json.loads(res.stdout.strip().splitlines()[-1])
            log(f"warm {sc['id']:<18} {self.names[s]:<21} {g['requests']} requests, "
                f"{g['hits']} hits, {g['errors']} errors")
        except (IndexError, ValueError):
            log(f"warm {sc['id']} {self.names[s]}: cw-openloop failed: {res.stderr.strip()}")
        if not self.procs[s].alive():
            die(f"{self.names[s]} died during the warm-up of {sc['id']}; its log:\n"
                f"{self.procs[s].tail()}")

    def run_all(self):
        scen = self.scenarios()
        if not scen:
            die(f"no scenario matches BENCH_SCENARIOS={' '.join(self.patterns)!r} (ids: "
                f"{' '.join(sc['id'] for sc in self.all_scenarios())})")
        warmed = set()
        for rep in range(1, self.reps + 1):
            k = (rep - 1) % len(self.servers)
            order = self.servers[k:] + self.servers[:k]
            for sc in scen:
                for s in order:
                    if not self.runs_on(sc, s):
                        continue
                    if sc["warm"] and (tuple(sc["warm"]), s) not in warmed:
                        warmed.add((tuple(sc["warm"]), s))
                        self.warm(sc, s)
                    self.run_one(rep, sc["id"], sc["kind"], sc["args"], s)

    # --- report -------------------------------------------------------------------------
    def summary(self):
        """Median and min-max over the repetitions, per scenario and server."""
        keys = ["rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
                "server_cpu_us_per_req", "gen_cpu_us_per_req", "origin_requests",
                "max_send_lag_ms", "max_gen_lag_ms", "errors", "non2xx", "hit_ratio",
                "l2_hit_ratio", "redis_cpu_us_per_req", "burst_send_ms", "burst_first_ms", "sent_p99_ms", "sent_p999_ms",
                "read_p99_ms", "read_p999_ms"]
        out = {}
        for sc in self.scenarios():
            sid = sc["id"]
            out[sid] = {"label": sc["label"], "kind": sc["kind"], "servers": {}}
            for s in self.servers:
                rs = [r for r in self.runs if r["scenario"] == sid and r["server"] == s]
                if not rs:
                    continue
                row = {"target": rs[0]["target"]}
                for k in keys:
                    v = [r[k] for r in rs if r.get(k) is not None]
                    if v:
                        row[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
                out[sid]["servers"][s] = row
        return out

    def render(self, summ, meta):
        L = []
        cols = [s for s in self.servers]
        L.append(f"# make bench: {meta['date']}")
        L.append("")
        L.append(f"{meta['machine']}; load average at start {meta['load_start']}, at end "
                 f"{meta['load_end']}; {meta['reps']} repetitions, servers interleaved; "
                 "each figure is the median, [min-max] over the repetitions.")
        L.append("")
        L.append("Servers: " + "; ".join(meta["servers_desc"][s] for s in cols) + ".")
        L.append("")

        def cell(row, k, fmt):
            if row is None or k not in row:
                return "-"
            v = row[k]
            if self.reps > 1 and v["min"] != v["max"]:
                return f"{fmt(v['median'])} [{fmt(v['min'])}-{fmt(v['max'])}]"
            return fmt(v["median"])

        def ratio(row, ref, k):
            if row is None or ref is None or k not in row or k not in ref:
                return "-"
            b = ref[k]["median"]
            if not b:
                return "-"
            r = row[k]["median"] / b
            return f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"

        f0 = lambda v: f"{v:,.0f}"  # noqa: E731
        f1 = lambda v: f"{v:.1f}"  # noqa: E731
        f2 = lambda v: f"{v:.2f}"  # noqa: E731
        fpct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
        extra = [s for s in cols if s in SCALE_SERVERS or s == SMALL_SERVER]
        main = [s for s in cols if s not in extra]
        L.append("## Figures")
        L.append("")
        # The small-cache scenarios run on cw alone of these: they go to the next table.
        others = [s for s in main if s != "cw"]
        self.table(L, summ, main, cell, f0, f1, f2, fpct, need=others or main, l2=True)
        L.append("")
        L.append("For the floor column, miss and stampede runs go straight to the origin "
                 "(there is no cache): its CPU is the origin's.")
        L.append("")
        if any(sc["kind"] == "l2hit" for sc in summ.values()):
            L.append("The L2-hit row is CacheWarp's alone (n/a: the others have no shared L2): "
                     "a second cachewarpd of the same build on a redis-server, whose L1 has "
                     "never seen the keys another node wrote to Redis, asked each key once; "
                     "its CPU is that node's plus redis-server's.")
            L.append("")
        if extra:
            L.append("## CacheWarp: 1, 2 and 4 workers; a cache smaller than its key set")
            L.append("")
            order = [s for s in ("cw-w1", "cw", "cw-w4", SMALL_SERVER) if s in cols]
            self.table(L, summ, order, cell, f0, f1, f2, fpct, need=extra)
            L.append("")
        return self.render_rest(L, summ, meta, cell, ratio)

    def table(self, L, summ, cols, cell, f0, f1, f2, fpct, need=None, l2=False):
        """A markdown table of the figures of the servers cols, for the scenarios that at
        least one of them (of need, when given) ran; with l2, the L2-hit scenarios too."""
        L.append("| scenario | figure | " + " | ".join(self.names[s] for s in cols) + " |")
        L.append("|---|---|" + "---:|" * len(cols))
        for sid, sc in summ.items():
            rows = sc["servers"]
            if not any(s in rows for s in (need or cols)) and not (l2 and sc["kind"] == "l2hit"):
                continue
            if sc["kind"] == "stampede":
                figs = [("origin requests / round", "origin_requests", lambda v: f"{v / self.st_rounds:.1f}"),
                        ("p50 / p99 / max ms", None, None),
                        ("server CPU µs/req", "server_cpu_us_per_req", f1),
                        ("generator: sends done / first answer, ms", "burst", None)]
            elif sc["kind"] == "burst":
                figs = [("p50 / p99 / max ms", None, None),
                        ("p99 ms to the generator's read", "read_p99_ms", f1),
                        ("server CPU µs/req", "server_cpu_us_per_req", f1),
                        ("generator: sends done / first answer, ms", "burst", None)]
            elif "closed" in sid:
                figs = [("req/s", "rps", f0), ("server CPU µs/req", "server_cpu_us_per_req", f1),
                        ("p50 / p99 ms", "p50p99", None)]
                if sc["kind"] == "keys":
                    figs.append(("hit ratio", "hit_ratio", fpct))
            else:
                figs = [("p50 / p99 / p99.9 ms", None, None),
                        ("p99 / p99.9 ms from the send", "sent", None),
                        ("p99 / p99.9 ms to the generator's read", "read", None),
                        ("server CPU µs/req", "server_cpu_us_per_req", f1)]
                if sc["kind"] == "l2hit":
                    figs[3] = ("server CPU µs/req, node + Redis", "server_cpu_us_per_req", f1)
                    figs += [("of which Redis µs/req", "redis_cpu_us_per_req", f1),
                             ("L2 hits / request", "l2_hit_ratio", fpct),
                             ("origin requests / request", "origin_requests", None)]
                if sc["kind"] == "miss":
                    figs.append(("origin requests / request", "origin_requests", None))
                if sc["kind"] == "keys":
                    figs.append(("hit ratio", "hit_ratio", fpct))
            for name, k, fmt in figs:
                cells = []
                for s in cols:
                    row = rows.get(s)
                    if row is None and sc["kind"] == "l2hit":
                        cells.append("n/a")  # no L2: only CacheWarp runs it
                    elif row is None:
                        cells.append("-")
                    elif k == "sent":
                        cells.append(" / ".join(cell(row, x, f2) for x in
                                                ("sent_p99_ms", "sent_p999_ms")))
                    elif k == "read":
                        cells.append(" / ".join(cell(row, x, f2) for x in
                                                ("read_p99_ms", "read_p999_ms")))
                    elif k == "burst":
                        cells.append(" / ".join(cell(row, x, f1) for x in
                                                ("burst_send_ms", "burst_first_ms")))
                    elif k is None and sc["kind"] in ("stampede", "burst"):
                        cells.append(" / ".join(cell(row, x, f1) for x in
                                                ("p50_ms", "p99_ms", "max_ms")))
                    elif k is None:
                        cells.append(" / ".join(cell(row, x, f2) for x in
                                                ("p50_ms", "p99_ms", "p999_ms")))
                    elif k == "p50p99":
                        cells.append(" / ".join(cell(row, x, f2) for x in ("p50_ms", "p99_ms")))
                    elif fmt is None:
                        n = [r for r in self.runs if r["scenario"] == sid and r["server"] == s]
                        v = [r["origin_requests"] / r["requests"] for r in n if r["requests"]]
                        cells.append(f"{statistics.median(v):.2f}" if v else "-")
                    else:
                        cells.append(cell(row, k, fmt))
                L.append(f"| {sc['label']} | {name} | " + " | ".join(cells) + " |")

    def render_rest(self, L, summ, meta, cell, ratio):
        if "cw" in self.servers:
            L.append("## CacheWarp's ratios")
            L.append("")
            refs = [s for s in ("cw-base", "nginx", "varnish", "static") if s in self.servers]
            L.append("| scenario | figure | " + " | ".join(f"vs {self.names[r]}" for r in refs) +
                     " |")
            L.append("|---|---|" + "---:|" * len(refs))
            for sid, sc in summ.items():
                rows = sc["servers"]
                cw = rows.get("cw")
                if cw is None or not any(r in rows for r in refs):
                    continue
                figs = [("server CPU µs/req", "server_cpu_us_per_req"), ("p99", "p99_ms")]
                if sc["kind"] not in ("stampede", "burst"):
                    figs.insert(0, ("p50", "p50_ms"))
                if "closed" in sid:
                    figs.insert(0, ("req/s", "rps"))
                elif sc["kind"] not in ("stampede", "burst"):
                    figs.append(("p99.9", "p999_ms"))
                for name, k in figs:
                    L.append(f"| {sc['label']} | {name} | " +
                             " | ".join(ratio(cw, rows.get(r), k) for r in refs) + " |")
            L.append("")
            L.append("A ratio is CacheWarp's median over the other's: below 1 is better for CPU "
                     "and latency, above 1 is better for req/s.")
            L.append("")
        L.append("## The generator")
        L.append("")
        L.append("cw-openloop on the same machine: " + meta["client_desc"] + ". Its own CPU, "
                 "median µs per request: " + ", ".join(
                     f"{sid} {statistics.median([r['gen_cpu_us_per_req'] for r in self.runs if r['scenario'] == sid and r['gen_cpu_us_per_req'] is not None]):.1f}"
                     for sid in summ) + ".")
        opens = [r for r in self.runs if r["mode"] == "open"]
        lag = max((r["max_gen_lag_ms"] for r in opens), default=0)
        late = sum(r["gen_late_1ms"] for r in opens)
        sent = sum(r["requests"] for r in opens)
        L.append(f"Open loop: the generator sent {late} of {sent} requests more than 1 ms after "
                 f"their scheduled time with a connection free (the largest such delay: "
                 f"{lag:.2f} ms); such delays count in the latencies, as they would for a "
                 "client.")
        loads = [r["load1"] for r in self.runs]
        L.append(f"1-minute load average during the runs: {min(loads):.2f} to {max(loads):.2f} "
                 f"(this bench alone adds about 2 on 2 CPUs).")
        if self.failed:
            L.append("")
            L.append("## Errors")
            L.append("")
            for f in self.failed:
                L.append(f"- {f}")
        return "\n".join(L) + "\n"

    def chart(self, summ, path):
        """A plain SVG: per scenario, server CPU µs/request and p99 ms, bars per server."""
        colors = {s: COLORS.get(s, "#000000") for s in self.servers}
        panels = [("server CPU µs per request", "server_cpu_us_per_req", False),
                  ("p99 latency, ms, log scale", "p99_ms", True)]
        sids = list(summ)
        bw, gap, left, top, ph = 14, 22, 60, 40, 220
        gw = bw * len(self.servers) + gap
        width = left + gw * len(sids) + 20
        height = top + len(panels) * (ph + 120) + 30
        S = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
        x = left
        for s in self.servers:
            S.append(f'<rect x="{x}" y="12" width="10" height="10" fill="{colors[s]}"/>'
                     f'<text x="{x + 14}" y="21">{self.names[s]}</text>')
            x += 20 + 7 * len(self.names[s])
        for pi, (title, k, is_log) in enumerate(panels):
            y0 = top + pi * (ph + 120)
            vals = [summ[sid]["servers"][s][k]["median"] for sid in sids
                    for s in self.servers if k in summ[sid]["servers"].get(s, {})]
            vmax = max(vals) if vals else 1
            S.append(f'<text x="{left}" y="{y0 + 14}" font-weight="bold">{title} '
                     '(median; lower is better)</text>')
            base = y0 + 20 + ph
            # Log panels run from 0.01 to the next power of ten above the largest value.
            lo, hi = 0.01, 10 ** math.ceil(math.log10(max(vmax, 0.1)))

            def height(v):
                if not is_log:
                    return ph * v / vmax
                return ph * math.log10(max(v, lo) / lo) / math.log10(hi / lo)
            if is_log:
                g = lo
                while g <= hi:
                    gy = base - height(g)
                    S.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{width - 20}" y2="{gy:.1f}" '
                             'stroke="#ddd"/>'
                             f'<text x="{left - 4}" y="{gy + 3:.1f}" text-anchor="end" '
                             f'font-size="9">{g:g}</text>')
                    g *= 10
            S.append(f'<line x1="{left}" y1="{base}" x2="{width - 20}" y2="{base}" '
                     'stroke="black"/>')
            for i, sid in enumerate(sids):
                gx = left + i * gw
                for j, s in enumerate(self.servers):
                    row = summ[sid]["servers"].get(s, {})
                    if k not in row:
                        continue
                    v = row[k]["median"]
                    h = height(v)
                    S.append(f'<rect x="{gx + j * bw}" y="{base - h:.1f}" width="{bw - 2}" '
                             f'height="{h:.1f}" fill="{colors[s]}"><title>{self.names[s]} {sid}: '
                             f'{v:.2f}</title></rect>')
                    S.append(f'<text x="{gx + j * bw + 5}" y="{base - h - 3:.1f}" '
                             f'font-size="8" transform="rotate(-90 {gx + j * bw + 5} '
                             f'{base - h - 3:.1f})">{v:.1f}</text>')
                S.append(f'<text x="{gx}" y="{base + 12}" font-size="9" transform="rotate(30 '
                         f'{gx} {base + 12})">{sid}</text>')
        S.append("</svg>")
        with open(path, "w") as f:
            f.write("\n".join(S) + "\n")

    def meta(self, load_start):
        def ver(argv):
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
                return (r.stdout + r.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                return "?"
        rev = ver(["git", "-C", HERE, "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        pin_s = f"pinned to CPUs {self.server_cpus}" if self.server_cpus else "unpinned"
        pin_c = f"pinned to CPUs {self.client_cpus}" if self.client_cpus else "unpinned"
        return {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Linux "
                       f"{platform.release()}, {pin_s}",
            "load_start": load_start,
            "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "reps": self.reps,
            "git": rev + (" (dirty)" if dirty else ""),
            "versions": {"nginx": ver(["nginx", "-v"]), "varnish": ver(["varnishd", "-V"]),
                         **{f"cachewarp {sid}": ver([os.path.join(c["build"], "bin",
                                                                  "cachewarpd"), "--version"])
                            for sid, c in self.cw.items()}},
            "cw_builds": self.cw,
            "scenarios": [sc["id"] for sc in self.scenarios()],
            "heavy": self.heavy,
            "servers_desc": {
                **{sid: f"{self.names[sid]}: {c['build']} at {c['git']}, "
                        f"{c['workers']} worker{'s' if c['workers'] > 1 else ''}, cache "
                        f"{c['size']}, L1 only (no Redis), log level warn, no access log"
                   for sid, c in self.cw.items()},
                "nginx": "nginx proxy_cache: 2 worker processes, keys zone, "
                         "proxy_cache_lock on, upstream keep-alive, sendfile on, no access log",
                "varnish": "Varnish: malloc 256 MiB, 2 thread pools (default 100-5000 "
                           "threads each), default VCL plus an X-Cache header",
                "static": "nginx static files: 2 worker processes, sendfile on, "
                          "no access log",
                # Not a column: the L2-hit runs' node, whose figures go under "cw".
                "cw-l2": "cachewarp on Redis (L2-hit runs only): configured as cachewarp but "
                         "with redis.enabled, redis.timeout 50ms and stats on, beside a filler "
                         "node of the same configuration, on one redis-server (no "
                         "persistence)",
            },
            "client_desc": f"{pin_c}; open loop: 2 threads sharing one schedule, 32 keep-alive "
                           "connections; closed "
                           "loop: 2 threads, 64 connections; stampede and burst: 1 thread, "
                           f"{self.st_clients} connections; "
                           + (f"SCHED_FIFO priority {self.fifo} in open loop and bursts"
                              if self.fifo else "the default scheduling policy throughout"),
            "settings": {"open_s": self.open_s, "closed_s": self.closed_s, "rates": self.rates,
                         "miss_rate": self.miss_rate, "stampede": [self.st_clients,
                                                                    self.st_rounds,
                                                                    self.st_delay],
                         "fifo": self.fifo},
        }

    def main(self):
        self.check_tools()
        self.tmp = tempfile.mkdtemp(prefix="cw-bench.")
        os.chmod(self.tmp, 0o755)
        load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
        log(f"temp dir {self.tmp}; load average {load_start}")
        ok = False
        t0 = time.monotonic()
        try:
            self.start_all()
            self.check_hits()
            self.run_all()
            ok = True
        finally:
            self.stop_all()
            if not ok:
                log(f"logs kept in {self.tmp}")
            elif os.environ.get("BENCH_KEEP", "0") != "1":
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                log(f"temp dir kept: {self.tmp}")
        summ = self.summary()
        meta = self.meta(load_start)
        meta["duration_s"] = round(time.monotonic() - t0, 1)
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump({"meta": meta, "summary": summ, "runs": self.runs,
                       "errors": self.failed}, f, indent=1)
        md = self.render(summ, meta)
        with open(os.path.join(self.out, "results.md"), "w") as f:
            f.write(md)
        self.chart(summ, os.path.join(self.out, "chart.svg"))
        print(md)
        log(f"{meta['duration_s']} s; results in {self.out}/results.json, results.md, "
            "chart.svg")
        if self.failed:
            die(f"{len(self.failed)} runs had errors (listed above)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        Bench().main()
    except KeyboardInterrupt:
        sys.exit(130)
