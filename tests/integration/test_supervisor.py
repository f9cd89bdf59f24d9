"""The supervisor's event loop: it sleeps in poll() on a signalfd and its children's
channels, so an idle supervisor makes no periodic wake-ups; and its health ping over the
command channel finds a wedged refresher and replaces it."""

import os
import signal
import time

import cw


def wakeups(pid):
    """voluntary_ctxt_switches of a process (/proc/PID/status): one each time it goes to
    sleep, so one per wake-up of a single-threaded process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for pid {pid}")


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
    before = wakeups(d.pid)
    time.sleep(3.0)
    used = wakeups(d.pid) - before
    env.note(f"supervisor wake-ups over 3 s idle: {used}")
    assert used <= 1, f"the idle supervisor woke {used} times in 3 s"


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


def test_supervisor_replaces_wedged_refresher(env):
    """The refresher answers the supervisor's health pings over the command channel; one
    that stops answering (here SIGSTOP, as a deadlock or a lock never released would) is
    killed and restarted within 3 missed pings (15-20 s), and counted as a restart."""
    o = env.origin()
    d = env.daemon(o, workers=1, log_level="debug")
    old = cw.wait_for(lambda: d.named("cw-refresher") or None, 5, what="the refresher")[0]
    # An answer seen: the channel works both ways, and a healthy refresher is left alone.
    cw.wait_for(lambda: "answered health ping 1" in _log(d), 15, interval=0.1,
                what="a health ping answered")
    assert d.named("cw-refresher") == [old], d.named("cw-refresher")
    os.kill(old, signal.SIGSTOP)
    t0 = time.monotonic()
    new = cw.wait_for(lambda: [p for p in d.named("cw-refresher") if p != old] or None, 30,
                      interval=0.1, what="a new refresher after SIGSTOP")
    took = time.monotonic() - t0
    env.note(f"stopped refresher replaced after {took:.1f} s")
    log = _log(d)
    assert "answered none of 3 health pings" in log, log[-2000:]
    assert f"(pid {old}) killed by signal 9" in log, log[-2000:]
    assert took >= 9.5, f"replaced after {took:.1f} s: before 2 pings could have been missed"
    assert not cw.is_alive(old), f"the wedged refresher {old} is still there"
    # The new one answers too.
    n = log.count("answered health ping")
    cw.wait_for(lambda: _log(d).count("answered health ping") > n, 15, interval=0.1,
                what=f"a health ping answered by the new refresher {new[0]}")
    assert d.get("/after").status == 200
