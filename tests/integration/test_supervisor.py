"""The supervisor's event loop: it sleeps in poll() on a signalfd and its children's
channels, so an idle supervisor makes no periodic wake-ups; and its health ping over the
command channel finds a wedged refresher and replaces it."""

import os
import signal
import time

import cw


def ctxt_switches(pid):
    """voluntary + nonvoluntary context switches of a process (/proc/PID/status)."""
    n = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                n += int(line.split()[1])
    return n


def _log(d):
    with open(d.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def test_supervisor_idle_makes_no_wakeups(env):
    """Over 3 s idle the supervisor may wake at most once (its refresher health ping, every
    5 s). The old loop woke every 100 ms from sigtimedwait: about 30 times in 3 s."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    assert d.get("/idle").status == 200
    cw.wait_for(lambda: len(d.named("cw-refresher")) == 1, 5, what="the refresher")
    time.sleep(0.5)
    before = ctxt_switches(d.pid)
    time.sleep(3.0)
    used = ctxt_switches(d.pid) - before
    env.note(f"supervisor context switches over 3 s idle: {used}")
    assert used <= 1, f"the idle supervisor switched context {used} times in 3 s"


def test_supervisor_restart_backoff_from_poll_timeout(env):
    """The restart backoff is a poll() timeout: a worker that dies twice in a row comes back
    after 100 ms, then after 200 ms, no sooner, and without the old 100 ms tick."""
    o = env.origin()
    d = env.daemon(o, workers=1)
    first = cw.wait_for(lambda: d.workers() or None, 5, what="a worker")
    os.kill(first[0], signal.SIGKILL)
    second = cw.wait_for(lambda: [p for p in d.workers() if p not in first] or None, 5,
                         interval=0.005, what="the first replacement")
    os.kill(second[0], signal.SIGKILL)
    t0 = time.monotonic()
    cw.wait_for(lambda: [p for p in d.workers() if p not in first + second] or None, 5,
                interval=0.005, what="the second replacement")
    took = time.monotonic() - t0
    log = _log(d)
    assert "restart in 100 ms" in log and "restart in 200 ms" in log, log[-2000:]
    env.note(f"second replacement after {took * 1000:.0f} ms (backoff 200 ms)")
    assert took >= 0.19, f"restarted after {took * 1000:.0f} ms, before its 200 ms backoff"
    assert took < 0.2 + 2.0 * cw.TIME_FACTOR, f"restart took {took * 1000:.0f} ms"
