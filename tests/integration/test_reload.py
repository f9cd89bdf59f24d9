"""SIGHUP reload: a good new config takes over without refusing a request; a broken one
is rejected with its file, line and setting, and the daemon keeps running as it was."""

import json
import os
import urllib.parse
import signal
import threading
import time

import cw


def _rewrite(d, origin, **kw):
    """Rewrites the daemon's config file in place (same listen port and cache)."""
    text = cw.config_text(d.tmpdir, port=d.port, origin_port=origin.port, **kw)
    with open(d.conf, "w") as f:
        f.write(text)


def _log(d):
    with open(d.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def test_reload_swaps_workers_without_refusing_requests(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    old = set(d.workers())
    path = f"/r?cc={urllib.parse.quote('max-age=600')}"
    assert d.get(path).status == 200

    failures, done, sent = [], threading.Event(), [0]

    def hammer():
        while not done.is_set():
            try:
                r = d.get(path)
                if r.status != 200:
                    failures.append(r)
            except Exception as e:  # a refused or reset connection is a failure
                failures.append(e)
            sent[0] += 1

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.3)
        # New config: 3 workers and a second route with its own ttl.
        _rewrite(d, o, workers=3, route={"ttl": "5s"})
        os.kill(d.pid, signal.SIGHUP)
        cw.wait_for(lambda: len(set(d.workers()) - old) == 3 and not (set(d.workers()) & old),
                    10, what="3 new workers and the old ones gone")
        time.sleep(0.3)
    finally:
        done.set()
        t.join()
    env.note(f"{sent[0]} requests during the reload, {len(failures)} failed")
    assert not failures, f"{len(failures)} of {sent[0]} requests failed during the reload: " \
        f"{failures[:3]}"
    assert "supervisor: reloaded: 3 workers" in _log(d), _log(d)[-2000:]
    # The cached entry survived the reload (L1 is shared and persistent).
    r = d.get(path)
    assert r.status == 200 and r.headers.get("x-cache") == "HIT", r
    # The new route ttl is in force for new entries.
    r = d.get("/new")
    r = d.get("/new")
    assert "ttl=" in r.headers.get("cache-status", "") and \
        int(r.headers["cache-status"].split("ttl=")[1].split(";")[0]) <= 5, r


def test_reload_with_broken_config_keeps_running(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    before = set(d.workers())
    _rewrite(d, o, workers=2, route={"ttl": "3x"})
    os.kill(d.pid, signal.SIGHUP)
    cw.wait_for(lambda: "keeping the running configuration" in _log(d), 5,
                what="the reload error in the log")
    log = _log(d)
    line = [x for x in log.splitlines() if "keeping the running configuration" in x][0]
    assert "routes[0].ttl" in line and ".conf:" in line, line
    assert set(d.workers()) == before, "a broken reload must not touch the workers"
    assert d.get("/still").status == 200


def test_reload_keeps_metrics_listener(env):
    """The new stats process binds the same port while the old one drains (SO_REUSEPORT):
    /metrics answers after the reload and nothing is restarted by failure."""
    o = env.origin()
    sport = cw.free_port()
    stats = {"listen": f"127.0.0.1:{sport}"}
    d = env.daemon(o, workers=1, overrides={"stats": stats})
    cw.wait_for(lambda: len(d.named("cw-stats")) == 1, 5, what="the stats process")
    old = d.named("cw-stats")
    _rewrite(d, o, workers=1, overrides={"stats": stats})
    os.kill(d.pid, signal.SIGHUP)
    cw.wait_for(lambda: d.named("cw-stats") and d.named("cw-stats") != old, 5,
                what="a new stats process")
    # The new stats process binds while the old one drains; under a slow (sanitizer) build
    # there can be a moment between the old one's exit and the new one's bind.
    def metrics_ok():
        try:
            r = cw.request(sport, "/metrics", timeout=2.0)
        except OSError:
            return False
        return r.status == 200 and b"cachewarp_build_info" in r.body

    cw.wait_for(metrics_ok, 5 * cw.TIME_FACTOR, what="/metrics after the reload")
    log = _log(d)
    assert "cannot serve" not in log and "restart in" not in log, log[-2000:]


def test_reload_by_cwctl_twice_under_load(env):
    """`cwctl reload` (ExecReload= in the unit) twice under load from 4 clients: zero non-2xx
    answers and zero socket errors; each reload swaps every worker. The second changes
    control.socket, which only a restart applies: cwctl says so (and exits 0: the rest was
    applied), and the log warns; the daemon keeps answering on the socket it has."""
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    paths = [f"/rc{i}?cc={urllib.parse.quote('max-age=600')}" for i in range(8)]
    for p in paths:
        assert d.get(p).status == 200
    failures, done, sent = [], threading.Event(), [0] * 4

    def hammer(k):
        i = 0
        while not done.is_set():
            i += 1
            try:
                r = d.get(paths[(i + k) % len(paths)])
                if not 200 <= r.status < 300:
                    failures.append(r)
            except Exception as e:  # a refused or reset connection is a failure
                failures.append(e)
            sent[k] += 1

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    outs = []
    try:
        time.sleep(0.5)
        for round_, kw in enumerate((
                {"workers": 3, "overrides": {"control": {"socket": d.control}}},
                {"workers": 2, "overrides": {"control": {"socket": d.control + ".new"}}})):
            before = set(d.workers())
            text = cw.config_text(d.tmpdir, port=d.port, origin_port=o.port, **kw)
            with open(d.conf, "w") as f:
                f.write(text)
            rc, out, err = d.cwctl("reload")
            assert rc == 0, (rc, out, err)
            outs.append(out)
            want = kw["workers"]
            cw.wait_for(lambda: len(d.workers()) == want and not (set(d.workers()) & before),
                        10, what=f"reload {round_ + 1}: {want} new workers, the old ones gone")
            time.sleep(0.5)
    finally:
        done.set()
        for t in threads:
            t.join()
    total = sum(sent)
    env.note(f"cwctl reload x2 under load: {total} requests, {len(failures)} failed")
    assert not failures, f"{len(failures)} of {total} requests failed: {failures[:3]}"
    assert total > 200, f"only {total} requests during two reloads"
    assert "restart" not in outs[0], outs[0]
    assert "control.socket changed: it takes effect at the next start" in outs[1], outs[1]
    assert "control.socket and control.group take effect at the next start" in _log(d)
    assert d.cwctl("status")[0] == 0  # still the old socket


def test_reload_changes_cache_size(env):
    """cache.size grows on reload while a retiring worker still has a fetch in flight: the
    new worker fills past the old map (so the retiring one's LMDB map is too small for the
    data, MDB_MAP_RESIZED), the retiring worker still answers its client in full, says so
    once in the log, and nothing cached is lost. Then the size shrinks again: the file keeps
    its size (LMDB never shrinks one), eviction works to the new budget, and no process
    meets a map smaller than the data."""
    o = env.origin()
    small = {"path": os.path.join(env.dir, "l1.mdb"), "size": "2M", "max_object": "256K"}
    big = dict(small, size="64M")
    d = env.daemon(o, workers=1, overrides={"cache": small})
    ctl = {"socket": d.control}
    cw.wait_for(lambda: len(d.workers()) == 1, 5, what="1 worker")
    old = set(d.workers())
    kept = [f"/kept{i}?size=16384&cc={urllib.parse.quote('max-age=600')}" for i in range(8)]
    for p in kept:
        assert d.get(p).status == 200
    slow_path = f"/slow?size=65536&delay_ms=2500&cc={urllib.parse.quote('max-age=600')}"
    slow = {}

    def slow_get():
        try:
            slow["r"] = d.get(slow_path, timeout=30)
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            slow["r"] = e

    t = threading.Thread(target=slow_get)
    t.start()
    cw.wait_for(lambda: o.count_prefix("/slow") == 1, 5, what="the slow fetch at the origin")
    _rewrite(d, o, workers=1, overrides={"cache": big, "control": ctl})
    rc, out, err = d.cwctl("reload")
    assert rc == 0, (rc, out, err)
    cw.wait_for(lambda: set(d.workers()) - old, 10, what="the new worker")
    # The new worker fills about 12 MiB: far past the old 2 MiB map.
    for i in range(200):
        r = d.get(f"/fill{i}?size=65536&cc={urllib.parse.quote('max-age=600')}")
        assert r.status == 200, r
    t.join(30)
    r = slow["r"]
    assert not isinstance(r, Exception), r
    assert r.status == 200 and len(r.body) == 65536, (r.status, len(r.body))
    cw.wait_for(lambda: not (set(d.workers()) & old), 10, what="the old worker gone")
    for p in kept:
        r = d.get(p)
        assert r.status == 200 and r.headers.get("x-cache") == "HIT", (p, r)
    for i in (0, 199):
        r = d.get(f"/fill{i}?size=65536&cc={urllib.parse.quote('max-age=600')}")
        assert r.headers.get("x-cache") == "HIT", r
    log = _log(d)
    resized = [x for x in log.splitlines() if "cache map was grown" in x]
    assert len(resized) <= 1, resized
    assert "mdb_txn" not in log and "MDB_MAP_RESIZED" not in log, log[-3000:]
    rc, out, _ = d.cwctl("--json", "status")
    assert rc == 0, out
    assert json.loads(out)["l1"]["size_bytes"] == 64 << 20, out

    # Shrink: the file stays 64 MiB (the map follows the file), the budget is 2 MiB.
    now = set(d.workers())
    _rewrite(d, o, workers=1, overrides={"cache": small, "control": ctl})
    rc, out, err = d.cwctl("reload")
    assert rc == 0, (rc, out, err)
    cw.wait_for(lambda: set(d.workers()) and not (set(d.workers()) & now), 10,
                what="the shrunk worker")
    for i in range(40):
        r = d.get(f"/after{i}?size=65536&cc={urllib.parse.quote('max-age=600')}")
        assert r.status == 200, r
    def used():
        rc, out, _ = d.cwctl("--json", "status")
        assert rc == 0, out
        l1 = json.loads(out)["l1"]
        assert l1["size_bytes"] == 2 << 20, l1
        return l1["used_bytes"]

    cw.wait_for(lambda: used() <= 2 << 20, 10 * cw.TIME_FACTOR,
                what="eviction down to the 2 MiB budget")
    log = _log(d)
    assert "mdb_txn" not in log and "MDB_MAP_RESIZED" not in log, log[-3000:]
    assert "keeps its size of 67108864 bytes" in log, log[-3000:]


def test_reload_applies_log_level(env):
    """log.level changes on reload (it is not ignored): at "warn" the new workers no longer log
    their info-level start line; back at "info" they do again, and the supervisor says so."""
    o = env.origin()
    d = env.daemon(o, workers=1)
    cw.wait_for(lambda: len(d.workers()) == 1, 5, what="1 worker")
    ctl = {"control": {"socket": d.control}}

    def swap(level):
        before = set(d.workers())
        text = cw.config_text(d.tmpdir, port=d.port, origin_port=o.port, workers=1,
                              overrides=ctl, log_level=level)
        with open(d.conf, "w") as f:
            f.write(text)
        rc, out, err = d.cwctl("reload")
        assert rc == 0, (rc, out, err)
        cw.wait_for(lambda: d.workers() and not (set(d.workers()) & before), 10,
                    what=f"the workers of log.level {level}")
        time.sleep(0.3)
        return d.workers()[0]

    quiet = swap("warn")
    assert f"[{quiet}]: worker 0: serving" not in _log(d), _log(d)[-2000:]
    loud = swap("info")
    cw.wait_for(lambda: f"[{loud}]: worker 0: serving" in _log(d), 5,
                what="the info-level worker start line again")
    assert "reload: log.level is now info" in _log(d)
