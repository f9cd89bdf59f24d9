"""Two cachewarpd nodes on a Redis Cluster and on a Sentinel-watched master: a fill on one
node is an L2 hit on the other with one origin request; under steady load on both nodes, a
`redis-cli --cluster reshard` that moves slots with their keys, a SENTINEL failover and a
kill -9 of the master cost no failed request, and L2 hits go on afterwards (the time until
L2 is used again after a failover is noted). And, through cw-test-l2drive, a tagged write
into a slot half moved (answered TRYAGAIN) is retried until the slot has moved.

Every Redis process (three cluster masters joined with `redis-cli --cluster create`; one
master, one replica and two sentinels) is started by test_l2's helpers on ephemeral
loopback ports in the test's temp dir and stopped by PID. Each node has its own L1 file and
control socket. The figures printed with each result are quoted in docs/FLEET.md."""

import os
import random
import subprocess
import threading
import time

import cw
from test_l2 import REDIS_CLI, Drive, Redis, _cluster, _owner, resp

TF = cw.TIME_FACTOR
REDIS_TIMEOUT_MS = 100
SITE = {"Host": "www.example.test"}
FILL_OBJECTS = 20
LOAD_THREADS = 3  # per node
LOAD_RATE = 50  # requests per second per thread: 300 req/s over both nodes
SLOTS_MOVED = 4000  # of the 5461 the first master holds

SENTINEL_CONF = """port {port}
bind 127.0.0.1
dir {dir}
sentinel monitor mymaster 127.0.0.1 %d 1
sentinel down-after-milliseconds mymaster %d
sentinel failover-timeout mymaster 10000
"""
# The first sentinel sees a dead master after 1 s, the second after 5 s: the first asks for
# the leadership alone and gets the second's vote. With the same delay both may ask at once,
# each vote for itself, and retry only after twice failover-timeout.
SENTINEL_DOWN_AFTER_MS = (1000, 5000)


def get(d, path, **kw):
    return d.get(path, headers=SITE, **kw)


def node(env, origin, name, redis_group, workers=2):
    """A cachewarpd with its own L1 on the given redis group, stats on an ephemeral port."""
    group = {"enabled": True, "timeout": f"{int(REDIS_TIMEOUT_MS * TF)}ms",
             "connect_timeout": f"{int(200 * TF)}ms"}
    group.update(redis_group)
    return env.daemon(origin, workers=workers, name=name, stats=True, overrides={
        "cache": {"path": os.path.join(env.dir, f"{name}.mdb"), "size": "64M",
                  "max_object": "1M"},
        "redis": group,
    })


class L2Index:
    """Which request path each L2 entry holds (an entry carries its full key), over a set of
    Redis ports that may change (a failover); values are read once per key."""

    def __init__(self, ports):
        self.ports = list(ports)
        self.path_of = {}  # (port, key) -> value text

    def find(self, path):
        for port in self.ports:
            keys = resp(port, "KEYS", "cw:*") or []
            for k in keys:
                if "}t:" in k or "}l:" in k:
                    continue
                v = self.path_of.get((port, k))
                if v is None:
                    v = resp(port, "GET", k)
                    if v is None:
                        continue
                    self.path_of[(port, k)] = v
                if path in v:
                    return k
        return None

    def wait(self, path, timeout=5.0):
        found = []

        def has():
            k = self.find(path)
            if k:
                found.append(k)
            return bool(k)

        cw.wait_for(has, timeout * TF, interval=0.02, what=f"L2 entry of {path}")
        return found[0]


def wait_l2_ready(d, workers=2):
    def connected():
        with open(d.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        return all(f"worker {i}: L2 (Redis) in use" in log for i in range(workers))

    cw.wait_for(connected, 15 * TF, what=f"every worker of {d.log_path} using Redis")


def fill_then_l2_hit(env, o, a, b, idx, tag):
    """FILL_OBJECTS paths: a MISS on a, then an L2 hit on b with one origin request each."""
    for i in range(FILL_OBJECTS):
        path = f"/{tag}{i}?cc=max-age%3D60"
        ra = get(a, path)
        assert ra.status == 200 and ra.header("x-cache") == "MISS", ra
        idx.wait(f"/{tag}{i}?")
        rb = get(b, path)
        assert rb.status == 200, rb
        assert rb.header("x-cache") == "HIT", f"node B after node A's fill: {rb}"
        assert "detail=l2" in rb.header("cache-status", ""), rb
        assert rb.body == ra.body, "L2 hit body differs from node A's answer"
        assert o.count(path) == 1, f"origin saw {o.count(path)} requests for {path}, want 1"
    b.wait_metric("cachewarp_l2_hits_total", lambda v: v >= FILL_OBJECTS)


class Load:
    """Steady mixed load on both nodes: each thread paces LOAD_RATE requests per second, of
    which 40% are new keys (L1 and L2 miss, an origin fetch and an L2 write of the entry and
    its tag set), 40% keys the
    other node filled (an L2 hit on first touch, an L1 hit after) and 20% a few hot keys (L1
    hits). Every answer other than a 200, and every socket error, is a failure."""

    def __init__(self, nodes):
        self.nodes = nodes  # [(tag, daemon)]
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (t, tag, status or error text, l2 hit)
        self.filled = {tag: [] for tag, _ in nodes}
        self.seq = 0
        self.threads = []

    def _one(self, tag, d, rnd):
        others = [t for t, _ in self.nodes if t != tag]
        x = rnd.random()
        with self.lock:
            self.seq += 1
            n = self.seq
            pool = self.filled[rnd.choice(others)] if others else []
        if x < 0.4 or not pool:
            # A Surrogate-Key makes the L2 write one script over the entry and its tag set.
            path = f"/load-{tag}-{n}?cc=max-age%3D120&sk=t{n % 8}"
            new = True
        elif x < 0.8:
            path = pool[rnd.randrange(max(0, len(pool) - 200), len(pool))]
            new = False
        else:
            path = f"/hot{rnd.randrange(5)}?cc=max-age%3D120"
            new = False
        t0 = time.monotonic()
        try:
            r = get(d, path, timeout=5)
            st, l2 = r.status, "detail=l2" in r.header("cache-status", "")
        except Exception as e:  # noqa: BLE001 - counted as a failure
            st, l2 = repr(e), False
        with self.lock:
            self.results.append((t0, tag, st, l2))
            if new and st == 200:
                self.filled[tag].append(path)

    def _run(self, tag, d, seed):
        rnd = random.Random(seed)
        gap = 1.0 / LOAD_RATE
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            self._one(tag, d, rnd)
            nxt += gap
            wait = nxt - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                nxt = time.monotonic()  # behind: no catch-up burst

    def start(self):
        for k, (tag, d) in enumerate(self.nodes):
            for j in range(LOAD_THREADS):
                t = threading.Thread(target=self._run, args=(tag, d, k * 100 + j), daemon=True)
                t.start()
                self.threads.append(t)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)

    def since(self, t):
        with self.lock:
            return [x for x in self.results if x[0] >= t]

    def failures(self):
        with self.lock:
            return [x for x in self.results if x[2] != 200]


def load_note(load, t_event, t_end, what):
    res = load.since(0)
    during = [x for x in res if t_event <= x[0] < t_end]
    after = [x for x in res if x[0] >= t_end]
    failed = load.failures()
    dur = (res[-1][0] - res[0][0]) if res else 1
    return (f"{what}: {len(res)} requests ({len(res) / dur:.0f} req/s), {len(during)} during, "
            f"{len(failed)} failed; L2 hits {sum(x[3] for x in during)} during, "
            f"{sum(x[3] for x in after)} after"), failed, after


# ---------------------------------------------------------------------------------------
# cluster


def cluster_group(nodes):
    return {"mode": "cluster", "nodes": [f"127.0.0.1:{x.port}" for x in nodes[:2]]}


def test_fleet_modes_cluster_fill_is_l2_hit(env):
    nodes = _cluster(env)
    o = env.origin()
    a = node(env, o, "node-a", cluster_group(nodes))
    b = node(env, o, "node-b", cluster_group(nodes))
    wait_l2_ready(a)
    wait_l2_ready(b)
    idx = L2Index([x.port for x in nodes])
    fill_then_l2_hit(env, o, a, b, idx, "cobj")
    per_node = [resp(x.port, "DBSIZE") for x in nodes]
    env.note(f"{FILL_OBJECTS} fills on A were L2 hits on B; keys per master {per_node}")


def test_fleet_modes_cluster_reshard_under_load(env):
    nodes = _cluster(env)
    o = env.origin()
    a = node(env, o, "node-a", cluster_group(nodes))
    b = node(env, o, "node-b", cluster_group(nodes))
    wait_l2_ready(a)
    wait_l2_ready(b)
    idx = L2Index([x.port for x in nodes])
    # Entries in every hash-tag group first, so the moved slots carry keys.
    cw.concurrent(lambda i: get(a, f"/pre{i}?cc=max-age%3D300"), 600, 4)
    idx.wait("/pre599?")
    src, dst = nodes[0], nodes[1]
    src_id = resp(src.port, "CLUSTER", "MYID")
    dst_id = resp(dst.port, "CLUSTER", "MYID")
    errors_before = sum(d.metric("cachewarp_l2_errors_total") for d in (a, b))
    timeouts_before = sum(d.metric("cachewarp_l2_timeouts_total") for d in (a, b))

    load = Load([("a", a), ("b", b)])
    load.start()
    time.sleep(2.0 * TF)
    keys_before = set(resp(src.port, "KEYS", "cw:*"))
    t0 = time.monotonic()
    out = subprocess.run([REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{src.port}",
                          "--cluster-from", src_id, "--cluster-to", dst_id,
                          "--cluster-slots", str(SLOTS_MOVED), "--cluster-yes", "--cluster-pipeline",
                          "50"], capture_output=True, timeout=60 * TF)
    t1 = time.monotonic()
    assert out.returncode == 0, out.stdout.decode()[-2000:] + out.stderr.decode()[-2000:]
    moved_keys = len(keys_before - set(resp(src.port, "KEYS", "cw:*")))
    time.sleep(2.0 * TF)
    load.stop()
    text, failed, after = load_note(load, t0, t1, "cluster reshard")
    l2_errors = sum(d.metric("cachewarp_l2_errors_total") for d in (a, b)) - errors_before
    l2_timeouts = sum(d.metric("cachewarp_l2_timeouts_total") for d in (a, b)) - timeouts_before
    failed_writes = sum(d.metric("cachewarp_l2_writes_total", outcome="failed") for d in (a, b))
    env.note(f"{text}; {SLOTS_MOVED} slots and {moved_keys} keys moved in {t1 - t0:.1f} s; "
             f"L2 errors {l2_errors:.0f} (timeouts {l2_timeouts:.0f}), failed L2 writes "
             f"{failed_writes:.0f}")
    assert not failed, f"failed requests during the reshard: {failed[:5]}"
    assert moved_keys > 0, "the reshard moved no key"
    assert sum(x[3] for x in after) > 0, "no L2 hit after the reshard"
    # The nodes learnt the moves from Redis's answers and reloaded their maps.
    redirects = sum(d.metric("cachewarp_l2_redirects_total") for d in (a, b))
    loads = sum(d.metric("cachewarp_l2_slot_map_loads_total") for d in (a, b))
    env.note(f"followed {redirects:.0f} MOVED/ASK, loaded {loads:.0f} slot maps")
    assert redirects > 0 and loads > 4, (redirects, loads)
    # Both nodes route by the new map: a fill on A into a moved slot is an L2 hit on B.
    fill_then_l2_hit(env, o, a, b, idx, "after")
    for d in (a, b):
        assert d.metric("cachewarp_l2_breaker_state") == 0


# ---------------------------------------------------------------------------------------
# sentinel


def sentinel_setup(env):
    m = Redis(env, "master")
    rep = Redis(env, "replica", args=["--replicaof", cw.LOOPBACK, str(m.port)])
    cw.wait_for(lambda: "master_link_status:up" in resp(rep.port, "INFO", "replication"),
                10 * TF, what="replica in sync")
    sents = [Redis(env, f"sentinel{i}", conf=SENTINEL_CONF % (m.port, SENTINEL_DOWN_AFTER_MS[i]),
                   args=["--sentinel"])
             for i in range(2)]
    for s in sents:
        cw.wait_for(lambda s=s: len(resp(s.port, "SENTINEL", "replicas", "mymaster")) == 1 and
                    len(resp(s.port, "SENTINEL", "sentinels", "mymaster")) == 1,
                    20 * TF, interval=0.1, what="sentinels see the replica and each other")
    return m, rep, sents


def sentinel_group(sents):
    return {"mode": "sentinel", "master": "mymaster",
            "sentinels": [f"127.0.0.1:{s.port}" for s in sents]}


def test_fleet_modes_sentinel_fill_is_l2_hit(env):
    m, rep, sents = sentinel_setup(env)
    o = env.origin()
    a = node(env, o, "node-a", sentinel_group(sents))
    b = node(env, o, "node-b", sentinel_group(sents[::-1]))
    wait_l2_ready(a)
    wait_l2_ready(b)
    fill_then_l2_hit(env, o, a, b, L2Index([m.port]), "sobj")
    env.note(f"{FILL_OBJECTS} fills on A were L2 hits on B through the sentinel-found master")


def sentinel_failover_under_load(env, kill):
    """SENTINEL failover (kill false), or kill -9 of the master and the sentinels' own
    failover after down-after-milliseconds (1 s), under load on both nodes."""
    m, rep, sents = sentinel_setup(env)
    o = env.origin()
    a = node(env, o, "node-a", sentinel_group(sents))
    b = node(env, o, "node-b", sentinel_group(sents[::-1]))
    wait_l2_ready(a)
    wait_l2_ready(b)
    fill_then_l2_hit(env, o, a, b, L2Index([m.port]), "pre")

    load = Load([("a", a), ("b", b)])
    load.start()
    time.sleep(2.0 * TF)
    t0 = time.monotonic()
    if kill:
        m.kill9()
    else:
        assert resp(sents[0].port, "SENTINEL", "failover", "mymaster") == "OK"

    def switched():
        return resp(rep.port, "ROLE")[0] == "master" and all(
            d.metric("cachewarp_l2_breaker_state") == 0 for d in (a, b)) and all(
            "moved from" in open(d.log_path, "rb").read().decode("utf-8", "replace")
            for d in (a, b))

    cw.wait_for(switched, 20 * TF, interval=0.05, what="both nodes follow the new master")
    t_switch = time.monotonic()
    idx = L2Index([rep.port])
    n = [0]

    def l2_again():
        n[0] += 1
        path = f"/again{n[0]}"
        if get(a, path).status != 200:
            return False
        try:
            idx.wait(path, timeout=0.5)
        except AssertionError:
            return False
        return "detail=l2" in get(b, path).header("cache-status", "")

    cw.wait_for(l2_again, 15 * TF, interval=0.05, what="an L2 hit through the new master")
    t_again = time.monotonic()
    time.sleep(2.0 * TF)
    load.stop()
    what = "kill -9 of the master" if kill else "SENTINEL failover"
    text, failed, after = load_note(load, t0, t_again, what)
    env.note(f"{text}; both nodes on the new master {t_switch - t0:.2f} s after the {what}, "
             f"a fill on A an L2 hit on B {t_again - t0:.2f} s after it")
    assert not failed, f"failed requests during the failover: {failed[:5]}"
    assert sum(x[3] for x in after) > 0, "no L2 hit after the failover"
    # Every worker of both nodes followed the new master (2 workers each).
    switches = sum(d.metric("cachewarp_l2_master_switches_total") for d in (a, b))
    assert switches >= 4, f"{switches:.0f} master switches counted"


def test_fleet_modes_sentinel_failover_under_load(env):
    sentinel_failover_under_load(env, kill=False)


def test_fleet_modes_sentinel_master_killed_under_load(env):
    sentinel_failover_under_load(env, kill=True)


def test_fleet_modes_cluster_tryagain_is_retried(env):
    """An L2 write of an entry and its tag set, into a slot whose keys are half moved, is
    answered TRYAGAIN (the tag set is still on the source, the new entry is not): the client
    retries it until the slot has moved, within redis.timeout, instead of losing it."""
    nodes = _cluster(env)
    d = Drive(env, f'mode = "cluster"; nodes = [ "127.0.0.1:{nodes[0].port}" ]; '
                   f'timeout = "{int(2000 * TF)}ms";')
    assert d.cmd("ready 5000")["rc"] == 0
    assert d.cmd("set 7a000001 first 60000 news")["rc"] == 0
    slot = resp(nodes[0].port, "CLUSTER", "KEYSLOT", "cw:{7a}7a000001")
    src = _owner(nodes, slot)
    dst = next(x for x in nodes if x is not src)
    src_id = resp(src.port, "CLUSTER", "MYID")
    dst_id = resp(dst.port, "CLUSTER", "MYID")
    assert resp(dst.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id) == "OK"
    assert resp(src.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id) == "OK"
    # Redis's own answer to such a write while the slot migrates.
    r = resp(src.port, "EVAL", "return 1", 2, "cw:{7a}7a000002", "cw:{7a}t:news")
    assert isinstance(r, RuntimeError) and str(r).startswith("TRYAGAIN"), r
    before = d.stats()
    i = d.send("set 7a000002 second 60000 news")
    time.sleep(0.3)  # the client meets TRYAGAIN, and retries, meanwhile
    keys = resp(src.port, "CLUSTER", "GETKEYSINSLOT", slot, 100)
    assert resp(src.port, "MIGRATE", cw.LOOPBACK, dst.port, "", 0, 5000, "KEYS", *keys) == "OK"
    for x in nodes:
        assert resp(x.port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id) == "OK"
    got = d.wait(i, timeout=10)
    assert got["rc"] == 0, got
    assert resp(dst.port, "GET", "cw:{7a}7a000002") == "second"
    assert sorted(resp(dst.port, "SMEMBERS", "cw:{7a}t:news")) == ["7a000001", "7a000002"]
    s = d.stats()
    env.note(f"a write answered TRYAGAIN stored after the slot moved, {got.get('us', 0) / 1000:.0f}"
             f" ms after it was sent; redirects {s['redirects'] - before['redirects']}")
