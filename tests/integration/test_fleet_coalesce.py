"""Fleet-wide request coalescing through Redis: two cachewarpd nodes, one origin and one real
redis-server. A stampede of 50 requests for a cold key spread over both nodes is one origin
request; a lease holder whose origin fetch hangs costs the other node about one
lock_timeout; an answer that is not stored releases the other node's waiters at once (they
go to the origin without waiting lock_timeout); Redis killed costs no request.

Redis is started by test_l2's helper (its own port and folder in the test's temp dir,
stopped by PID); each node has its own L1 file and control socket."""

import os
import signal
import socket
import time

import cw
from test_fleet import node as fleet_node
from test_fleet import wait_key, wait_l2_workers
from test_l2 import Redis, _cluster, resp

TF = cw.TIME_FACTOR
SITE = "www.example.test"  # behind a load balancer every node sees the site's own Host


def node(env, origin, redis, name, lock_timeout="5s", workers=2, cluster=None):
    """test_fleet's node, its route's lock_timeout set."""
    return fleet_node(env, origin, redis, name, workers=workers,
                      route={"lock_timeout": lock_timeout}, cluster=cluster)


def wait_ready(d, workers=2):
    """Waits until every worker of d uses L2 and has its fill subscription confirmed."""
    wait_l2_workers(d, workers, subscribed=True)


def raw_get(path, extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n{extra}\r\n"
            ).encode("latin-1")


def stampede(nodes_reqs, timeout=30.0):
    """Connects every client first, then sends every request back to back and collects the
    answers: nodes_reqs is [(daemon, request bytes, count)]."""
    socks, reqs = [], []
    try:
        for d, data, n in nodes_reqs:
            for s in cw.connect_many(d.port, n):
                socks.append(s)
                reqs.append(data)
    except BaseException:
        for s in socks:
            s.close()
        raise
    time.sleep(0.1)
    batch = cw.send_all(socks, reqs)
    return cw.collect(batch, timeout * TF, settle=0.1)


def lease_keys(redis):
    return [k for k in (resp(redis.port, "KEYS", "cw:*") or []) if "}l:" in k]


def hold_lease(a, r, path):
    """Node A's request for path whose origin answer takes 6 s (X-Origin-Args is not part of
    the key): A takes the Redis lease and does not fill. Its socket, once the lease is in
    Redis (the caller closes it)."""
    s = socket.create_connection((cw.LOOPBACK, a.port), timeout=30)
    s.sendall(raw_get(path, "X-Origin-Args: delay_ms=6000\r\n"))
    try:
        cw.wait_for(lambda: lease_keys(r), 5 * TF, what="node A's Redis lease")
    except BaseException:
        s.close()
        raise
    return s


def wait_on_lease(b, path):
    """10 requests for path sent to node B, once B has found the lease held: the batch."""
    socks = cw.connect_many(b.port, 10)
    time.sleep(0.1)
    batch = cw.send_all(socks, [raw_get(path)] * 10)
    b.wait_metric("cachewarp_l2_leases_total", lambda v: v >= 1, outcome="busy")
    return batch


def test_fleet_stampede_is_one_origin_request(env):
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a)
    wait_ready(b)

    path = "/stampede?delay_ms=200&cc=max-age%3D60"
    out = stampede([(a, raw_get(path), 25), (b, raw_get(path), 25)])
    bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
    assert not bad, f"{len(bad)} of 50 failed: {bad[:3]}\n{env.log_tails(20)}"
    bodies = {x.body for x in out}
    assert len(bodies) == 1, f"{len(bodies)} different bodies: {list(bodies)[:3]}"
    n = o.count(path)
    ms = sorted(x.elapsed * 1000 for x in out)
    env.note(f"50 requests over 2 nodes, origin requests {n}, latency p50 "
             f"{cw.percentile(ms, 50):.0f} ms p99 {cw.percentile(ms, 99):.0f} ms "
             f"(origin 200 ms)")
    assert n == 1, f"origin saw {n} requests for the cold key, want 1\n{env.log_tails(20)}"
    # One node fetched for the fleet; the other read the fill from L2.
    taken = a.metric("cachewarp_l2_leases_total", outcome="taken") + \
        b.metric("cachewarp_l2_leases_total", outcome="taken")
    assert taken == 1, f"Redis leases taken: {taken}, want 1"
    waiter = b if b.metric("cachewarp_l2_leases_total", outcome="busy") >= 1 else a
    waiter.wait_metric("cachewarp_l2_coalesced_total", lambda v: v >= 1)
    assert not lease_keys(r), f"a Redis lease outlived its fill: {lease_keys(r)}"


def test_fleet_stampede_on_a_cluster(env):
    """The same stampede on a 3-master Redis Cluster: the lease shares its entry's slot,
    the fill channel is cluster-wide pub/sub."""
    o = env.origin()
    nodes = _cluster(env)
    a = node(env, o, None, "node-a", cluster=nodes)
    b = node(env, o, None, "node-b", cluster=nodes)
    wait_ready(a)
    wait_ready(b)

    for i in range(3):  # keys on different slots, so likely on different masters
        path = f"/cluster{i}?delay_ms=200&cc=max-age%3D60"
        out = stampede([(a, raw_get(path), 10), (b, raw_get(path), 10)])
        bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
        assert not bad, f"{len(bad)} of 20 failed: {bad[:3]}\n{env.log_tails(20)}"
        assert len({x.body for x in out}) == 1
        assert o.count(path) == 1, f"origin saw {o.count(path)} for {path}, want 1"
    # One waiting node per key at least read the other's fill from L2.
    cw.wait_for(lambda: a.metric("cachewarp_l2_coalesced_total") +
                b.metric("cachewarp_l2_coalesced_total") >= 3, 5 * TF,
                what="3 fills read from L2 after a wait")


def test_fleet_hung_lease_holder_costs_one_lock_timeout(env):
    lock_timeout = 2.0
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a", lock_timeout="2s")
    b = node(env, o, r, "node-b", lock_timeout="2s")
    wait_ready(a)
    wait_ready(b)

    path = "/hung?cc=max-age%3D60"
    # Node A's origin request hangs: A takes the Redis lease and never fills.
    s = hold_lease(a, r, path)
    try:
        out = stampede([(b, raw_get(path), 10)])
    finally:
        s.close()
    bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
    assert not bad, f"{len(bad)} of 10 failed: {bad[:3]}\n{env.log_tails(20)}"
    worst = max(x.elapsed for x in out)
    first = min(x.elapsed for x in out)
    env.note(f"node B answered after {first * 1000:.0f}-{worst * 1000:.0f} ms with A's fetch "
             f"hung (lock_timeout {lock_timeout * 1000:.0f} ms); origin requests {o.count(path)}")
    # B waited for A's fill (it did not go to the origin at once) ...
    assert first >= lock_timeout * 0.5, f"node B did not wait for node A: {first:.3f} s"
    # ... and no longer than about one lock_timeout.
    assert worst < lock_timeout + 1.5 * TF, f"node B took {worst:.3f} s"
    b.wait_metric("cachewarp_l2_lease_wait_timeouts_total", lambda v: v == 1)
    # B's lease holder gave up on A before B's own waiters gave up on it: one fetch for B.
    assert o.count(path) == 2, f"origin saw {o.count(path)}: A's hung one and B's one wanted"


def test_fleet_killed_lease_holder_costs_one_lock_timeout(env):
    lock_timeout = 2.0
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a", lock_timeout="2s", workers=1)
    b = node(env, o, r, "node-b", lock_timeout="2s")
    wait_ready(a, workers=1)
    wait_ready(b)

    path = "/killed?cc=max-age%3D60"
    s = hold_lease(a, r, path)
    try:
        batch = wait_on_lease(b, path)
        # Node A's worker dies holding the lease: nobody releases it or notifies.
        for pid in a.workers():
            os.kill(pid, signal.SIGKILL)
        out = cw.collect(batch, 30 * TF)
    finally:
        s.close()
    bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
    assert not bad, f"{len(bad)} of 10 failed: {bad[:3]}\n{env.log_tails(20)}"
    worst = max(x.elapsed for x in out)
    env.note(f"node A killed holding the lease: node B answered within {worst * 1000:.0f} ms "
             f"(lock_timeout {lock_timeout * 1000:.0f} ms); origin requests {o.count(path)}")
    assert lock_timeout * 0.5 <= worst < lock_timeout + 1.5 * TF, f"node B took {worst:.3f} s"
    assert o.count(path) == 2, f"origin saw {o.count(path)}: A's and B's one wanted"


def test_fleet_lost_notification_costs_only_the_wait(env):
    """The fill lands in L2 but its notification never comes (here: the test plays the
    other node, holding the lease itself and putting the entry back without a PUBLISH): the
    waiters' final GET at their deadline finds it and serves it, without the origin."""
    lock_timeout = 2.0
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a", lock_timeout="2s")
    b = node(env, o, r, "node-b", lock_timeout="2s")
    wait_ready(a)
    wait_ready(b)

    path = "/lost?cc=max-age%3D60"
    assert cw.request(a.port, path, headers={"Host": SITE}).status == 200
    k = wait_key(r, "/lost?")
    brace = k.index("}")
    lease = k[:brace + 1] + "l:" + k[brace + 1:]
    # Server-side moves keep the entry's bytes exact.
    assert resp(r.port, "RENAME", k, "cw-test:held") == "OK"
    assert resp(r.port, "SET", lease, "another-node", "PX", 30000) == "OK"
    socks = cw.connect_many(b.port, 5)
    time.sleep(0.1)
    batch = cw.send_all(socks, [raw_get(path)] * 5)
    b.wait_metric("cachewarp_l2_leases_total", lambda v: v >= 1, outcome="busy")
    assert resp(r.port, "RENAME", "cw-test:held", k) == "OK"  # the fill, never notified
    out = cw.collect(batch, 30 * TF)
    bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
    assert not bad, f"{len(bad)} of 5 failed: {bad[:3]}\n{env.log_tails(20)}"
    worst = max(x.elapsed for x in out)
    env.note(f"notification lost: answered from L2 after {worst * 1000:.0f} ms "
             f"(lock_timeout {lock_timeout * 1000:.0f} ms)")
    assert lock_timeout * 0.5 <= worst < lock_timeout + 1.5 * TF, f"node B took {worst:.3f} s"
    assert o.count(path) == 1, f"origin saw {o.count(path)}: only node A's fill wanted"
    assert any("detail=l2" in x.header("cache-status", "") for x in out), out[0]
    b.wait_metric("cachewarp_l2_coalesced_total", lambda v: v >= 1)
    assert b.metric("cachewarp_l2_lease_wait_timeouts_total") == 1


def test_fleet_waiters_go_to_origin_when_redis_dies(env):
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")  # lock_timeout 5 s
    b = node(env, o, r, "node-b")
    wait_ready(a)
    wait_ready(b)

    path = "/redis-dies?cc=max-age%3D60"
    s = hold_lease(a, r, path)
    try:
        batch = wait_on_lease(b, path)
        time.sleep(0.2)
        r.kill9()
        killed = time.monotonic()
        out = cw.collect(batch, 30 * TF)
    finally:
        s.close()
    bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
    assert not bad, f"{len(bad)} of 10 failed: {bad[:3]}\n{env.log_tails(20)}"
    after = max(x.done_at for x in out) - killed
    env.note(f"waiters answered {after * 1000:.0f} ms after Redis was killed (lock_timeout "
             f"5000 ms)")
    # No notification can come from a dead Redis: the waits end at once, not at lock_timeout.
    assert after < 2.0 * TF, f"waiters answered {after:.3f} s after the kill"


def test_fleet_uncacheable_answer_releases_waiters_at_once(env):
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a", lock_timeout="10s")
    b = node(env, o, r, "node-b", lock_timeout="10s")
    wait_ready(a)
    wait_ready(b)

    # Not storable, and (streamed through) larger than cache.max_object (1M here).
    for what, path in (("private", "/private?delay_ms=200&cc=private"),
                       ("too large", "/big?delay_ms=200&size=1500000&cc=max-age%3D60")):
        out = stampede([(a, raw_get(path), 10), (b, raw_get(path), 10)])
        bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
        assert not bad, f"{what}: {len(bad)} of 20 failed: {bad[:3]}\n{env.log_tails(20)}"
        worst = max(x.elapsed for x in out)
        env.note(f"{what}: slowest of 20 {worst * 1000:.0f} ms (lock_timeout 10000 ms), "
                 f"origin requests {o.count(path)}")
        # The filler published its end although nothing was stored: the other node did not
        # wait out lock_timeout (20 answers of 1.5 MB took up to 2.5 s on 2 loaded cores).
        assert worst < 5.0 * TF, f"{what}: a waiter took {worst:.3f} s: it waited for lock_timeout"
    busy = a.metric("cachewarp_l2_leases_total", outcome="busy") + \
        b.metric("cachewarp_l2_leases_total", outcome="busy")
    timeouts = a.metric("cachewarp_l2_lease_wait_timeouts_total") + \
        b.metric("cachewarp_l2_lease_wait_timeouts_total")
    assert busy >= 1 and timeouts == 0, f"busy {busy}, wait timeouts {timeouts}"


def test_fleet_redis_down_still_serves(env):
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a)
    wait_ready(b)
    r.kill9()

    for i in range(3):
        path = f"/down{i}?delay_ms=100&cc=max-age%3D60"
        out = stampede([(a, raw_get(path), 10), (b, raw_get(path), 10)])
        bad = [x for x in out if not isinstance(x, cw.Response) or x.status != 200]
        assert not bad, f"{len(bad)} of 20 failed with Redis down: {bad[:3]}"
        worst = max(x.elapsed for x in out)
        # Without Redis each node fetches once; nobody waits for a lease it cannot see.
        assert worst < 2.0 * TF, f"a request took {worst:.3f} s with Redis down"
        assert 1 <= o.count(path) <= 2, f"origin saw {o.count(path)} for {path}"
