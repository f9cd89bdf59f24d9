#!/usr/bin/env python3
"""Instructions per hot hit (1 KiB, or HIT_SIZE bytes), under callgrind, for one or more CacheWarp builds.

    BUILD=build/rel python3 tests/bench/hit_instr.py [NAME=BUILD_DIR ...]

For each build (default: $BUILD itself), runs cachewarpd with 1 worker under
`valgrind --tool=callgrind` (every forked process is followed; each writes its own
callgrind.out.PID), warms one hot object, sends hits for HIT_SECONDS over one keep-alive
connection in closed loop (cw-openloop -R 0 -c 1: no queue, no timeouts however slow
callgrind makes the worker) and stops the daemon with SIGTERM so that every process writes
its totals. Then again for 5 x HIT_SECONDS. Each process is named by its comm (the workers
set theirs), so the two runs' processes are paired by name; the worker is the one whose
total grows. Instructions per hit = (Ir of the long run - Ir of the short) / (hits of the
long run - hits of the short): the start, the warm-up and the stop cancel out. Instruction
counts do not depend on the machine's load, unlike CPU time, which is why this complements
make bench's CPU us/req.

Environment: BUILD (build/rel; cw-openloop and cw-test-origin come from it), HIT_SECONDS
(8), HIT_SIZE (1024: the body's bytes), HIT_KEEP=1 (keep the temp dir). Prints a table and
writes JSON to $BENCH_OUT/hit_instr_SIZE.json (BENCH_OUT: $BUILD/bench).
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

SIZE = int(os.environ.get("HIT_SIZE", "1024"))
HOT1K = f"/hot{SIZE}?size={SIZE}&cc=max-age%3D3600"


def log(msg):
    print(f"hit_instr: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


def get(port, path, timeout=30):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.headers.get("X-Cache", ""), r.read()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def knows_user(build):
    """Whether this build's cachewarpd takes the user setting (older builds refuse it)."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write('user = "root";\norigins = ( { name = "a"; url = "http://127.0.0.1:1"; } );\n'
                'routes = ( { match = "/"; origin = "a"; } );\n')
        f.flush()
        t = subprocess.run([os.path.join(build, "bin", "cachewarpd"), "-t", "-c", f.name],
                           capture_output=True, text=True)
    return ": user:" not in t.stdout + t.stderr


def run_once(tmp, build, gen, oport, secs):
    d = tempfile.mkdtemp(dir=tmp)
    port = free_port()
    conf = os.path.join(d, "cachewarp.conf")
    with open(conf, "w") as f:
        # As root: the tests run as root, which needs it said (a build from before the user
        # setting is run without it).
        user = 'user = "root";\n' if os.geteuid() == 0 and knows_user(build) else ""
        f.write(f'''{user}listen = "127.0.0.1:{port}";
workers = 1;
log = {{ level = "warn"; access = ""; }};
cache = {{ path = "{d}/l1.mdb"; size = "256M"; max_object = "8M"; }};
redis = {{ enabled = false; }};
origins = ( {{ name = "api"; url = "http://127.0.0.1:{oport}"; connect_timeout = "5s";
              timeout = "30s"; }} );
routes = ( {{ match = "/"; origin = "api"; ttl = "3600s"; swr = "0s"; sie = "0s"; }} );
stats = {{ listen = ""; }};
control = {{ socket = "{d}/control.sock"; }};
purge = {{ allow = [ "127.0.0.1/32" ]; }};
''')
    logf = open(os.path.join(d, "daemon.log"), "wb")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/callgrind.out.%p",
            "--dump-instr=no", "--collect-atstart=yes",
            os.path.join(build, "bin", "cachewarpd"), "-c", conf]
    p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         cwd=d)
    try:
        g, names = drive(p, d, build, gen, port, secs)
    finally:
        # Also on failure: no daemon outlives the script.
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                for pid in children(p.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                p.kill()
                p.wait()
        logf.close()
    return collect(d, names), g


def drive(p, d, build, gen, port, secs):
    """Waits for a hit, records each process's name, sends the hits: (generator result,
    {pid: comm})."""
    end = time.monotonic() + 120
    while True:
        if p.poll() is not None:
            die(f"{build}: cachewarpd under callgrind exited {p.returncode}; log in {d}")
        try:
            st, xc, body = get(port, HOT1K, timeout=10)
            if st == 200:
                st, xc, body = get(port, HOT1K, timeout=10)
                if xc.upper().startswith("HIT") and len(body) == SIZE:
                    break
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > end:
            die(f"{build}: no HIT within 120 s under callgrind; log in {d}")
        time.sleep(0.5)
    names = {pid: comm(pid) for pid in [p.pid] + children(p.pid)}
    res = subprocess.run([gen, "-p", str(port), "-R", "0", "-c", "1", "-d", f"{secs:.3f}",
                          HOT1K], capture_output=True, text=True)
    try:
        g = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        die(f"cw-openloop failed: {res.stdout}{res.stderr}")
    if g["hits"] != g["requests"] or g["errors"] or g["non2xx"] or not g["hits"]:
        die(f"{build}: {g['requests']} answers, {g['hits']} hits, {g['errors']} errors, "
            f"{g['non2xx']} non-2xx: every answer must be a hit")
    # On SIGTERM every process writes its totals.
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(120)
    except subprocess.TimeoutExpired:
        die(f"{build}: cachewarpd did not stop within 120 s under callgrind; log in {d}")
    return g, names


def collect(d, names):
    """{process name: total Ir} from the callgrind.out.PID files in d."""
    totals = {}
    for path in glob.glob(os.path.join(d, "callgrind.out.*")):
        pid = int(path.rsplit(".", 1)[1])
        ir = None
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"(?:totals|summary):\s+(\d+)", line)
                if m:
                    ir = int(m.group(1))
        name = names.get(pid, f"pid{pid}")
        # Two processes with one name (never so far): keep them apart by order.
        while name in totals:
            name += "+"
        totals[name] = ir
    return totals


def main():
    build = os.path.abspath(os.environ.get("BUILD", "build/rel"))
    out = os.environ.get("BENCH_OUT", os.path.join(build, "bench"))
    secs = float(os.environ.get("HIT_SECONDS", "8"))
    builds = []
    for a in sys.argv[1:]:
        name, _, path = a.partition("=")
        builds.append((name, os.path.abspath(path)))
    if not builds:
        builds = [("cw", build)]
    gen = os.path.join(build, "bin", "cw-openloop")
    origin = os.path.join(build, "bin", "cw-test-origin")
    for exe in [gen, origin] + [os.path.join(b, "bin", "cachewarpd") for _, b in builds]:
        if not os.access(exe, os.X_OK):
            die(f"{exe} is missing")
    if shutil.which("valgrind") is None:
        die("valgrind is missing")
    tmp = tempfile.mkdtemp(prefix="cw-hitinstr.")
    olog = open(os.path.join(tmp, "origin.log"), "wb")
    op = subprocess.Popen([origin, "-p", "0"], stdout=olog, stderr=subprocess.STDOUT, cwd=tmp)
    results = {}
    ok = False
    try:
        oport = None
        for _ in range(200):
            for line in open(os.path.join(tmp, "origin.log"), errors="replace"):
                if line.startswith("port="):
                    oport = int(line[5:])
            if oport:
                break
            time.sleep(0.05)
        if not oport:
            die("cw-test-origin printed no port")
        for name, b in builds:
            t1, g1 = run_once(tmp, b, gen, oport, secs)
            t5, g5 = run_once(tmp, b, gen, oport, 5 * secs)
            n = g5["hits"] - g1["hits"]
            if n < 100:
                die(f"{name}: only {g1['hits']} and {g5['hits']} hits: raise HIT_SECONDS")
            per = {k: (t5[k] - t1[k]) / n for k in t1 if k in t5 and t1[k] and t5[k]}
            results[name] = {"build": b, "hits": [g1["hits"], g5["hits"]], "ir_1": t1, "ir_5": t5,
                             "ir_per_hit": {k: round(v, 1) for k, v in per.items()}}
            log(f"{name}: Ir per hit by process: {results[name]['ir_per_hit']}")
        ok = True
    finally:
        op.send_signal(signal.SIGTERM)
        op.wait(10)
        olog.close()
        if ok and os.environ.get("HIT_KEEP", "0") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"temp dir kept: {tmp}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"hit_instr_{SIZE}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"| build | process | hits in {secs:g} s and {5 * secs:g} s | instructions per hot "
          f"{SIZE}-byte hit |")
    print("|---|---|---:|---:|")
    for name, r in results.items():
        for proc, v in sorted(r["ir_per_hit"].items(), key=lambda kv: -kv[1]):
            print(f"| {name} | {proc} | {r['hits'][0]:,} / {r['hits'][1]:,} | {v:,.0f} |")
    if len(results) == 2:
        (a, ra), (b, rb) = results.items()
        wa = max(ra["ir_per_hit"].values())
        wb = max(rb["ir_per_hit"].values())
        print(f"\nworker {a} / {b}: {wa / wb:.3f}x")


if __name__ == "__main__":
    main()
