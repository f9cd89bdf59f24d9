"""The bench's open-loop generator (tests/bench/openloop.c, cw-openloop), against
cw-test-origin alone: the figures `make bench` reports rest on it.

Contract under test: at a fixed rate every scheduled request goes out once and is answered
once (each key of a run unique, so the origin sees every one); a request whose reused
keep-alive connection the server closed before answering is sent once more on a new one,
and one whose fresh connection closed is an error; with two threads, a thread kept
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


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _answer_then_close(method, target, headers):
    """A connection's first request answered (keep-alive, no Connection: close); the
    connection closed at its second without a byte: an idle timeout crossing the send."""

    def act(s):
        s.sendall(OK)
        s.recv(4096)

    return act


def _close_unanswered(method, target, headers):
    """Every connection closed at its first request without a byte."""
    return lambda s: None


def test_openloop_resends_once_on_reused_connection_closed(env):
    o = cw.RawOrigin(env, _answer_then_close)
    # One connection: every second request finds it closed by the server.
    g = run_gen(o.port, "-t", "1", "-c", "1", "-R", "100", "-d", "1")
    assert g["requests"] == 100 and g["errors"] == 0, g
    assert g["retries"] >= 40 and g["reconnects"] >= g["retries"], g


def test_openloop_fresh_connection_closed_is_an_error(env):
    o = cw.RawOrigin(env, _close_unanswered)
    r = subprocess.run(
        [cw.binary("cw-openloop"), "-p", str(o.port), "-a", cw.LOOPBACK, "-c", "1",
         "-R", "50", "-d", "0.4", PATH],
        capture_output=True, text=True, timeout=60,
    )
    # Nothing answered: exit 1, and every request an error, none sent again.
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    g = json.loads(r.stdout.strip().splitlines()[-1])
    assert g["requests"] == 0 and g["errors"] == 20 and g["retries"] == 0, g
