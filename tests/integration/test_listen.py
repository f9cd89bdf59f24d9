"""The proxy's listen sockets (workers/supervisor_listen.h): one per worker in one SO_REUSEPORT
group, so that the kernel spreads new connections over the workers, and a steering program
that keeps new connections off a worker that does not serve."""

import os
import re
import signal
import time

import cw

HOT = "/listen?cc=max-age%3D600"


def _log(d):
    with open(d.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def _spread(d, n):
    """Opens n connections at once and returns {worker pid: how many it accepted}."""
    socks = cw.connect_many(d.port, n)
    try:
        owners = cw.socket_owners(socks, d.port, d.workers(), timeout=5)
    finally:
        for s in socks:
            s.close()
    out = {}
    for p in owners:
        out[p] = out.get(p, 0) + 1
    return out


def test_listen_spreads_new_connections_over_workers(env):
    """2 workers listen on 2 sockets, and 100 connections opened at once go 25 or more to
    each (random: fewer than 25 of 100 has a chance of about 3 in 10^7). With one socket
    shared by both, whichever worker ran took the burst: 188 to 12 of 200 was seen."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    assert d.get(HOT).status == 200
    assert cw.listeners(d.port) == 2, "a listen socket per worker"
    split = _spread(d, 100)
    env.note(f"100 connections at once: {sorted(split.values())}")
    assert len(split) == 2 and min(split.values()) >= 25, split


def test_listen_steers_around_a_stopped_worker(env):
    """A stopped worker (SIGSTOP) is left out of the steering at the supervisor's next look
    (here the one cwctl status brings): every new connection goes to the other worker, where
    half of them would wait in the stopped worker's queue. Once it runs again, it gets new
    connections again; each change is logged once."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    assert d.get(HOT).status == 200
    stopped, other = d.workers()
    os.kill(stopped, signal.SIGSTOP)
    try:
        rc, out, _ = d.cwctl("status")
        assert rc == 0 and "stopped" in out, out
        cw.wait_for(lambda: "new connections go to 1 of 2 workers, not to worker" in _log(d), 5,
                    what="the steering's log line")
        assert "(stopped)" in _log(d), _log(d)[-1500:]
        socks = cw.connect_many(d.port, 40)
        try:
            owners = cw.socket_owners(socks, d.port, [other], timeout=5)
        finally:
            for s in socks:
                s.close()
        assert set(owners) == {other}, owners
        for _ in range(20):
            r = d.get(HOT, timeout=3)
            assert r.status == 200 and r.headers.get("x-cache") == "HIT"
    finally:
        os.kill(stopped, signal.SIGCONT)
    rc, out, _ = d.cwctl("status")
    assert rc == 0, out
    cw.wait_for(lambda: "new connections go to every worker again" in _log(d), 5,
                what="the steering's log line after SIGCONT")
    split = _spread(d, 60)
    assert split.get(stopped, 0) > 0 and split.get(other, 0) > 0, split
    log = _log(d)
    assert log.count("new connections go to 1 of 2 workers") == 1, log[-2000:]
    assert log.count("new connections go to every worker again") == 1, log[-2000:]


def test_listen_sockets_follow_workers_across_reloads(env):
    """A reload to 3 workers adds a socket to the group, and new connections spread over the
    3. One to 1 worker keeps the 3 sockets (closing one would reorder the group) but steers
    every new connection to the one worker. One back to 3 takes the sockets back, without
    binding new ones. Requests are answered after each."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    for workers in (3, 1, 3):
        old = set(d.workers())
        text = cw.config_text(d.tmpdir, port=d.port, origin_port=o.port, workers=workers)
        with open(d.conf, "w") as f:
            f.write(text)
        os.kill(d.pid, signal.SIGHUP)
        cw.wait_for(lambda: len(set(d.workers()) - old) == workers and not (set(d.workers())
                                                                           & old),
                    10, what=f"{workers} new workers and the old ones gone")
        assert cw.listeners(d.port) == 3, "the sockets of the group stay"
        assert d.get(HOT).status == 200
        split = _spread(d, 90)
        env.note(f"{workers} workers, 90 connections: {sorted(split.values())}")
        assert len(split) == workers, split
        assert min(split.values()) >= 10, split
    assert "closed" not in _log(d), _log(d)[-2000:]


def test_listen_second_daemon_on_the_same_address_is_refused(env):
    """A second daemon on a running one's address, as the same user, fails with "Address
    already in use" rather than joining the SO_REUSEPORT group and taking half the new
    connections; the first keeps its sockets and answers."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    conf2 = env.config(origin_port=o.port, name="second.conf", port=d.port,
                       overrides={"control": {"socket": os.path.join(env.dir, "second.sock")},
                                  "cache": {"path": os.path.join(env.dir, "second.mdb"),
                                            "size": "16M"}})
    rc, out, err = cw.run_daemon_cmd(["-c", conf2])
    assert rc == 1 and "Address already in use" in out + err, (rc, out, err)
    assert cw.listeners(d.port) == 2
    assert d.get(HOT).status == 200


def test_listen_reload_to_fewer_workers_drains_their_sockets(env):
    """Connections queued on the socket of a worker that a reload removes are accepted and
    answered by that worker before it retires: the reload steers new connections away first
    and waits for the queue to empty. Worker 2's event loop is held (ptrace) while 30 clients
    connect and send, so about a third of them wait in its socket's queue; the reload to 2
    workers starts, and the loop is released 0.15 s later. Every client gets its answer. Sent
    SIGTERM at once, worker 2 would have stopped accepting with them still queued."""
    o = env.origin()
    d = env.daemon(o, workers=3)
    cw.wait_for(lambda: len(d.workers()) == 3, 5, what="3 workers")
    assert d.get(HOT).status == 200
    m = cw.wait_for(lambda: re.search(r"worker 2 started, pid (\d+)", _log(d)), 5,
                    what="worker 2's pid")
    w2 = int(m.group(1))
    tid = cw.wait_for(lambda: [t for t, c in cw.threads(w2).items() if c.startswith("cw-mhd")],
                      5, what="worker 2's cw-mhd thread")[0]
    text = cw.config_text(d.tmpdir, port=d.port, origin_port=o.port, workers=2)
    with open(d.conf, "w") as f:
        f.write(text)
    stop = cw.ThreadStop(tid)
    try:
        socks = cw.connect_many(d.port, 30)
        batch = cw.send_all(socks, [cw.request_bytes(d.port, HOT)] * 30)
        time.sleep(0.1)
        os.kill(d.pid, signal.SIGHUP)
        time.sleep(0.15)
    finally:
        stop.release()
    res = cw.collect(batch, timeout=5)
    bad = [r for r in res if not isinstance(r, cw.Response) or r.status != 200]
    assert not bad, bad[:3]
    cw.wait_for(lambda: w2 not in d.workers() and len(d.workers()) == 2, 10,
                what="worker 2 retired")
    assert "closed" not in _log(d) and "still wait" not in _log(d), _log(d)[-2000:]
