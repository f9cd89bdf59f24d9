"""The bench's open-loop generator (tests/bench/openloop.c, cw-openloop), against
cw-test-origin alone: the figures `make bench` reports rest on it.

Contract under test: at a fixed rate every scheduled request goes out once and is answered
once (each key of a run unique, so the origin sees every one); with two threads, a thread kept
from running has its sends made by the other once they are `-S` late, so neither the
generator's lag nor the latency from the due time takes the stall; with `-S 0` they do (the
stall is real, and the test would see it).
"""

import json
import subprocess

import cw

PATH = "/ol/{n}?size=64"


def run_gen(port, *args):
    r = subprocess.run(
        [cw.binary("cw-openloop"), "-p", str(port), "-a", cw.LOOPBACK] + list(args) + [PATH],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_openloop_sends_every_request_once(env):
    o = env.origin()
    before = o.stats()["total"]
    g = run_gen(o.port, "-t", "2", "-c", "8", "-R", "2000", "-d", "1")
    assert g["requests"] == 2000 and g["errors"] == 0 and g["non2xx"] == 0, g
    assert o.stats()["total"] - before == 2000


def test_openloop_thread_stall_sent_by_other_thread(env):
    o = env.origin()
    # Thread 1 sleeps 60 ms once: its 60 sends in that time go out from thread 0.
    g = run_gen(o.port, "-t", "2", "-c", "8", "-R", "2000", "-d", "1", "-X", "60")
    assert g["requests"] == 2000 and g["errors"] == 0, g
    env.note(f"max lag {g['max_gen_lag_ms']} ms, max {g['max_ms']} ms")
    assert g["max_gen_lag_ms"] < 20, g
    assert g["max_ms"] < 40, g
    # Without stealing the same stall is charged to the requests due during it.
    g0 = run_gen(o.port, "-t", "2", "-c", "8", "-R", "2000", "-d", "1", "-X", "60", "-S", "0")
    assert g0["requests"] == 2000 and g0["errors"] == 0, g0
    assert g0["max_gen_lag_ms"] >= 50 and g0["max_ms"] >= 50, g0
