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


def _uids(pid):
    """(real, effective, saved) uid and the same for gid of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("Uid:", "Gid:")):
                out[line[0]] = tuple(int(x) for x in line.split()[1:4])
    return out["U"], out["G"]


def _free_privileged_port():
    import socket
    for port in range(1023, 900, -1):
        with socket.socket() as s:
            try:
                s.bind((cw.LOOPBACK, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024 on the loopback")


def test_supervisor_root_without_user_is_refused(env):
    """Started as root with no user setting, cachewarpd refuses to run (exit 1) and says
    what to set; it binds nothing first."""
    if os.geteuid() != 0:
        return  # only a root start is refused
    o = env.origin()
    conf = cw.write_config(env.dir, port=cw.free_port(), origin_port=o.port,
                           overrides={"user": None})
    p = cw.subprocess.run([cw.binary("cachewarpd"), "-c", conf], capture_output=True,
                          timeout=10 * cw.TIME_FACTOR)
    err = p.stderr.decode()
    assert p.returncode == 1, (p.returncode, err)
    assert "started as root" in err and 'set user = "cachewarp"' in err, err
    assert "refusing to run as root" in err, err


def test_supervisor_drops_root_to_user_after_binding(env):
    """Started as root with user = "nobody": the sockets are bound first (the stats listener
    on a port below 1024, which nobody could not bind), then the supervisor becomes nobody for
    good (real, effective and saved ids), before the cache file is made, so every process
    runs as nobody and the cache file is nobody's; requests are served and cached; cwctl
    (root) still reaches the control socket; the log says it once."""
    if os.geteuid() != 0:
        return  # the drop needs a root start
    import pwd
    nobody = pwd.getpwnam("nobody")
    os.chmod(env.dir, 0o755)
    run = os.path.join(env.dir, "run")
    os.mkdir(run, 0o750)
    os.chown(run, nobody.pw_uid, nobody.pw_gid)
    o = env.origin()
    sport = _free_privileged_port()
    d = env.daemon(o, workers=2, overrides={
        "user": "nobody",
        "cache": {"path": os.path.join(run, "l1.mdb"), "size": "64M", "max_object": "8M"},
        "stats": {"listen": f"{cw.LOOPBACK}:{sport}"},
    })
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    pids = [d.pid] + d.children()
    for pid in pids:
        uids, gids = _uids(pid)
        assert uids == (nobody.pw_uid,) * 3, (pid, cw.comm(pid), uids)
        assert gids == (nobody.pw_gid,) * 3, (pid, cw.comm(pid), gids)
    path = "/dropped?cc=max-age%3D60"
    assert d.get(path).header("x-cache") == "MISS"
    assert d.get(path).header("x-cache") == "HIT"
    st = os.stat(os.path.join(run, "l1.mdb"))
    assert st.st_uid == nobody.pw_uid, st
    r = cw.request(sport, "/metrics", timeout=5)
    assert r.status == 200, r
    rc, out, err = d.cwctl("status")
    assert rc == 0, (rc, out, err)
    log = _log(d)
    assert log.count("running as user nobody") == 1, log[-2000:]
