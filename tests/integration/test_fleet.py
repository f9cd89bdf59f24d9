"""Two cachewarpd nodes on one origin and one real redis-server (L2): a fill on one node is
an L2 hit on the other with one origin request; a value planted in Redis that is not the
key's entry is never served; Redis killed under load costs no request; Redis restarted is
used again within seconds; a purge (HTTP URL and tag, cwctl URL, prefix and tag, hard and
soft) on one node reaches the other through redis.channel and leaves no fresh copy in Redis
(the delays are noted); a purge whose message a node missed reaches it from the purge log,
and a gap in the log soft-purges its L1, a restarted node applies what it missed; purges
also work with a Redis Cluster as L2; a background refresh is written to L2.

Redis is started by test_l2's helper (its own port and folder in the test's temp dir,
stopped by PID); each node has its own L1 file and control socket."""

import json
import os
import threading
import time

import cw
from test_l2 import Redis, resp

TF = cw.TIME_FACTOR
REDIS_TIMEOUT_MS = 50
# Behind a load balancer every node sees the site's own Host; the key includes it.
SITE = {"Host": "www.example.test"}


def get(d, path, **kw):
    return d.get(path, headers=SITE, **kw)


def node(env, origin, redis, name, workers=2, l1=None, route=None, max_object="1M",
         cluster=None):
    """A cachewarpd with its own L1 (named l1, or after the node) on redis (standalone), or on
    the cluster of the given seed nodes; stats on an ephemeral port; route: options of its
    route."""
    rc = {"enabled": True, "timeout": f"{REDIS_TIMEOUT_MS}ms", "connect_timeout": "100ms"}
    if cluster:
        rc.update({"mode": "cluster", "nodes": [f"{cw.LOOPBACK}:{x.port}" for x in cluster]})
    else:
        rc["port"] = redis.port
    kw = {"route": route} if route else {}
    return env.daemon(origin, workers=workers, name=name, stats=True, **kw, overrides={
        "cache": {"path": os.path.join(env.dir, f"{l1 or name}.mdb"), "size": "64M",
                  "max_object": max_object},
        "redis": rc,
    })


def wait_l2_workers(d, workers=2, subscribed=False):
    """Waits until every worker of node d says it uses L2 (and, subscribed, has its fill
    subscription confirmed)."""
    def ready():
        with open(d.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        ok = all(f"worker {i}: L2 (Redis) in use" in log for i in range(workers))
        return ok and (not subscribed or log.count("(subscribe)") >= workers)

    cw.wait_for(ready, 10 * TF, what="every worker connected to Redis" +
                (" and subscribed" if subscribed else ""))


def l2_keys(redis):
    """The entry keys in Redis (not the tag sets, leases, ban sets nor the purge log)."""
    keys = resp(redis.port, "KEYS", "cw:*") or []
    return [k for k in keys if "}t:" not in k and "}l:" not in k and "}b:" not in k
            and k != "cw:{purgelog}"]


def key_of(redis, path):
    """The L2 key whose entry holds path (the value carries the full key), or None."""
    for k in l2_keys(redis):
        v = resp(redis.port, "GET", k)
        if v is not None and path in v:
            return k
    return None


def wait_key(redis, path, timeout=5.0):
    found = []

    def has():
        k = key_of(redis, path)
        if k:
            found.append(k)
        return bool(k)

    cw.wait_for(has, timeout * TF, what=f"L2 entry of {path}")
    return found[0]


def wait_ready(d, redis, path, workers=2):
    """Waits until every worker of node d says it uses L2, and a fill of path reaches Redis."""
    wait_l2_workers(d, workers)
    r = get(d, path)
    assert r.status == 200, r
    return wait_key(redis, path)


def test_fleet_fill_is_l2_hit_on_other_node(env):
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")

    l2_ms, l1_ms = [], []
    for i in range(20):
        path = f"/obj{i}?cc=max-age%3D60"
        ra = get(a, path)
        assert ra.status == 200 and ra.header("x-cache") == "MISS", ra
        wait_key(r, f"/obj{i}?")
        rb = get(b, path)
        assert rb.status == 200, rb
        assert rb.header("x-cache") == "HIT", f"node B after node A's fill: {rb}"
        assert "detail=l2" in rb.header("cache-status", ""), rb
        assert rb.body == ra.body, "L2 hit body differs from node A's answer"
        assert o.count(path) == 1, f"origin saw {o.count(path)} requests for {path}, want 1"
        rb2 = get(b, path)
        assert rb2.header("x-cache") == "HIT" and "detail=l2" not in rb2.header(
            "cache-status", ""), rb2
        l2_ms.append(rb.elapsed * 1000)
        l1_ms.append(rb2.elapsed * 1000)
    l2_ms.sort()
    l1_ms.sort()
    env.note(f"L2 hit p50 {l2_ms[10]:.2f} ms vs L1 hit p50 {l1_ms[10]:.2f} ms "
             f"(added {l2_ms[10] - l1_ms[10]:.2f} ms)")
    b.wait_metric("cachewarp_l2_hits_total", lambda v: v >= 20)
    a.wait_metric("cachewarp_l2_writes_total", lambda v: v >= 21, outcome="stored")


def test_fleet_bad_l2_value_is_never_served(env):
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    wait_ready(a, r, "/warm-a")
    for p in ("/garbage", "/truncated", "/mine", "/theirs", "/huge"):
        assert get(a, p).status == 200
    k_huge = wait_key(r, "/huge")
    k_garbage = wait_key(r, "/garbage")
    k_trunc = wait_key(r, "/truncated")
    k_mine = wait_key(r, "/mine")
    k_theirs = wait_key(r, "/theirs")
    # Server-side copies keep the bytes exact.
    assert resp(r.port, "SET", k_garbage, "not an entry at all") == "OK"
    resp(r.port, "EVAL", "return redis.call('SET', KEYS[1], "
         "string.sub(redis.call('GET', KEYS[1]), 1, 200))", 1, k_trunc)
    resp(r.port, "EVAL", "return redis.call('SET', KEYS[2], redis.call('GET', KEYS[1]))", 2,
         k_theirs, k_mine)
    # Over B's client's size limit (its cache.max_object, 4K, plus 132K for the header
    # blocks): the client refuses it before it is decoded. Small enough to arrive well within
    # redis.timeout on a loaded machine.
    resp(r.port, "EVAL", "return redis.call('SET', KEYS[1], "
         "redis.call('GET', KEYS[1]) .. string.rep('x', 200 * 1024))", 1, k_huge)

    b = node(env, o, r, "node-b", max_object="4K")
    wait_ready(b, r, "/warm-b")
    for p in ("/garbage", "/truncated", "/mine", "/huge"):
        rb = get(b, p)
        assert rb.status == 200, rb
        assert rb.header("x-cache") == "MISS", f"{p}: a bad L2 value was served: {rb}"
        assert "detail=l2" not in rb.header("cache-status", ""), rb
        assert o.count(p) == 2, f"{p}: origin saw {o.count(p)}, want 2 (A's fill, B's miss)"
        assert b"theirs" not in rb.body, f"{p}: another key's body was served"
    b.wait_metric("cachewarp_l2_bad_values_total", lambda v: v >= 4)
    assert b.metric("cachewarp_l2_hits_total") == 0
    with open(b.log_path, "rb") as f:
        assert b"-byte limit: a miss" in f.read(), "the huge value was not refused by its size"


def l2_status(d):
    """The l2 object of cwctl --json status."""
    rc, out, err = d.cwctl("--json", "status")
    assert rc == 0, (rc, out, err)
    return json.loads(out)["l2"]


def test_fleet_redis_kill_and_restart(env):
    """Redis killed under load: no failed request, none slower than redis.timeout past the
    box's own jitter; cwctl status says L2 is up, then down, then up again once Redis is back
    and used again."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")
    st = l2_status(a)
    assert st["state"] == "up" and st["ready_workers"] == 2, st
    assert st["mode"] == "standalone" and st["configured"] is True, st

    stop = threading.Event()
    lock = threading.Lock()
    results = []  # (node, elapsed s, status or exception text)

    def load(d, tag):
        i = 0
        while not stop.is_set():
            # A new key each time: every request is an L1 miss that asks L2 first.
            path = f"/load-{tag}-{i}"
            i += 1
            t0 = time.monotonic()
            try:
                st = get(d, path, timeout=5).status
            except Exception as e:  # noqa: BLE001 - counted as a failure
                st = repr(e)
            with lock:
                results.append((tag, time.monotonic() - t0, st))

    threads = [threading.Thread(target=load, args=(d, f"{n}{k}"), daemon=True)
               for n, d in (("a", a), ("b", b)) for k in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0 * TF)
    with lock:
        before = len(results)
        base = sorted(e for _, e, _ in results)
    r.kill9()
    killed_at = time.monotonic()
    time.sleep(2.0 * TF)
    stop.set()
    for t in threads:
        t.join(10)
    during = results[before:]
    failed = [x for x in results if x[2] != 200]
    slowest = max(e for _, e, _ in during)
    p99_base = base[int(len(base) * 0.99) - 1] if base else 0
    max_base = base[-1] if base else 0
    env.note(f"{len(results)} requests, {len(during)} after kill -9, {len(failed)} failed, "
             f"slowest after kill {slowest * 1000:.1f} ms (before: p99 {p99_base * 1000:.1f} ms, "
             f"max {max_base * 1000:.1f} ms)")
    assert not failed, f"failed requests with Redis killed: {failed[:5]}"
    # Redis may add one redis.timeout to a request; the box's own jitter (the max before the
    # kill, on shared cores) comes on top.
    limit = max_base + (REDIS_TIMEOUT_MS + 100) / 1000 * TF
    assert slowest < limit, f"a request took {slowest * 1000:.0f} ms (limit {limit * 1000:.0f})"
    assert "L2 (Redis) unavailable" in open(a.log_path, "rb").read().decode("utf-8", "replace")
    cw.wait_for(lambda: l2_status(a)["state"] == "down", 5 * TF, what="cwctl status: L2 down")

    # Back on the same port: the nodes reconnect and use it again.
    r.start()
    restarted = time.monotonic()
    n = [0]

    def l2_again():
        n[0] += 1
        path = f"/again{n[0]}"
        if get(a, path).status != 200:
            return False
        if key_of(r, path) is None:
            time.sleep(0.05)
            if key_of(r, path) is None:
                return False
        return "detail=l2" in get(b, path).header("cache-status", "")

    cw.wait_for(l2_again, 10 * TF, interval=0.1, what="an L2 hit after the restart")
    cw.wait_for(lambda: l2_status(a)["state"] == "up", 5 * TF, what="cwctl status: L2 up again")
    env.note(f"L2 used again {time.monotonic() - restarted:.2f} s after the restart "
             f"({time.monotonic() - killed_at:.1f} s after the kill)")


def purge_seen(b, path, t0, l1_only_ok=False):
    """Polls node B with GETs of path until its answer is not an L1 hit; returns the delay
    in ms since t0 and the answer."""
    deadline = time.monotonic() + 5 * TF
    while True:
        r = get(b, path)
        from_l1 = r.header("x-cache") == "HIT" and "detail=l2" not in r.header("cache-status", "")
        if not from_l1:
            return (time.monotonic() - t0) * 1000, r
        assert time.monotonic() < deadline, f"node B still answers {path} from L1: {r}"
        time.sleep(0.001)


def test_fleet_purge_reaches_other_node(env):
    """A PURGE (URL, tag) on node A, and cwctl purge (URL, tag) through A's refresher, is
    applied by node B's refresher from redis.channel: B no longer answers from its L1. An
    HTTP URL purge also deletes the L2 copy, so B's next answer is a MISS."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")

    def warm(path):
        get(a, path)
        wait_key(r, path.split("?")[0] + "?")
        for _ in range(2):
            get(b, path)
        rb = get(b, path)
        assert rb.header("x-cache") == "HIT" and "detail=l2" not in rb.header(
            "cache-status", ""), f"node B before the purge: {rb}"

    delays = {"url": [], "tag": [], "ctl-url": [], "ctl-tag": []}
    for i in range(5):
        p = f"/pu{i}?cc=max-age%3D300"
        warm(p)
        t0 = time.monotonic()
        ra = a.request(p, method="PURGE", headers=SITE)
        assert ra.status == 200, ra
        ms, rb = purge_seen(b, p, t0)
        assert rb.header("x-cache") == "MISS", f"node B after node A's URL PURGE: {rb}"
        delays["url"].append(ms)

        p = f"/pt{i}?cc=max-age%3D300&sk=fleet{i}"
        warm(p)
        t0 = time.monotonic()
        ra = a.request("/", method="PURGE", headers={**SITE, "Surrogate-Key": f"fleet{i}"})
        assert ra.status == 200, ra
        ms, rb = purge_seen(b, p, t0)
        delays["tag"].append(ms)

        p = f"/cu{i}?cc=max-age%3D300"
        warm(p)
        t0 = time.monotonic()
        rc, out, err = a.cwctl("purge", f"http://www.example.test{p}")
        assert rc == 0, (rc, out, err)
        ms, rb = purge_seen(b, p, t0)
        delays["ctl-url"].append(ms)

        p = f"/ct{i}?cc=max-age%3D300&sk=ctl{i}"
        warm(p)
        t0 = time.monotonic()
        rc, out, err = a.cwctl("purge", "--tag", f"ctl{i}")
        assert rc == 0, (rc, out, err)
        ms, rb = purge_seen(b, p, t0)
        delays["ctl-tag"].append(ms)

    for kind, d in delays.items():
        d.sort()
        env.note(f"fleet purge {kind}: A -> B not from L1 after p50 {d[len(d) // 2]:.1f} ms, "
                 f"max {d[-1]:.1f} ms ({len(d)} purges)")
    # Each purge applied on B once; none of A's own applied twice on A.
    with open(b.log_path, "rb") as f:
        log_b = f.read().decode("utf-8", "replace")
    assert log_b.count("refresher: fleet purge") == 20, log_b[-3000:]
    with open(a.log_path, "rb") as f:
        log_a = f.read().decode("utf-8", "replace")
    assert "refresher: fleet purge" not in log_a, "node A applied its own purge again"


SWR = "max-age%3D300%2C%20stale-while-revalidate%3D60"


def writes(d):
    return d.metric("cachewarp_l2_writes_total", outcome="stored")


def applied(d):
    """How many other nodes' purges d's refresher has applied (its log says each once)."""
    with open(d.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace").count("refresher: fleet purge")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def purge_kind(a, b, kind, i, soft):
    """Runs purge kind number i on A; returns the two paths it covers."""
    q = f"cc={SWR}&sk=k-{kind}-{i}"
    base = f"/{kind}{i}"
    p1, p2 = f"{base}/one?{q}", f"{base}/two?{q}"
    soft_h = {"Soft-Purge": "1"} if soft else {}
    soft_a = ["--soft"] if soft else []
    # p1 on both nodes (B from L2, then its L1); p2 on A only (in L2, never in B's L1).
    w0 = writes(a)
    for p in (p1, p2):
        assert get(a, p).header("x-cache") == "MISS"
    a.wait_metric("cachewarp_l2_writes_total", lambda v: v >= w0 + 2, outcome="stored")
    rb = get(b, p1)
    assert "detail=l2" in rb.header("cache-status", ""), f"{kind}: B before: {rb}"
    rb = get(b, p1)
    assert rb.header("x-cache") == "HIT" and "detail=l2" not in rb.header(
        "cache-status", ""), f"{kind}: B before: {rb}"
    t0 = time.monotonic()
    if kind.startswith("hu"):
        ra = a.request(p1, method="PURGE", headers={**SITE, **soft_h})
        assert ra.status == 200, ra
    elif kind.startswith("ht"):
        ra = a.request("/", method="PURGE",
                       headers={**SITE, **soft_h, "Surrogate-Key": f"k-{kind}-{i}"})
        assert ra.status == 200, ra
    elif kind.startswith("cu"):
        rc, out, err = a.cwctl("purge", f"http://www.example.test{p1}", *soft_a)
        assert rc == 0, (rc, out, err)
    elif kind.startswith("cp"):
        rc, out, err = a.cwctl("purge", "--prefix", f"http://www.example.test{base}/",
                               *soft_a)
        assert rc == 0, (rc, out, err)
    else:
        rc, out, err = a.cwctl("purge", "--tag", f"k-{kind}-{i}", *soft_a)
        assert rc == 0, (rc, out, err)
    ms, rb = purge_seen(b, p1, t0)
    want = ("STALE",) if soft else ("MISS",)
    assert rb.header("x-cache") in want, f"{kind}: B's L1 copy after the purge: {rb}"
    # B never had p2: it asks L2, which must not give the old copy back as fresh. A URL
    # purge of p2 of its own: once B has applied it, A's L2 purge (sent before the
    # message, on the same connection) is done.
    seen = applied(b)
    if kind.startswith("hu"):
        ra = a.request(p2, method="PURGE", headers={**SITE, **soft_h})
        assert ra.status == 200, ra
    elif kind.startswith("cu"):
        rc, out, err = a.cwctl("purge", f"http://www.example.test{p2}", *soft_a)
        assert rc == 0, (rc, out, err)
    if kind.startswith(("hu", "cu")):
        cw.wait_for(lambda: applied(b) > seen, 5 * TF, what=f"{kind}: B applying p2's purge")
    rb2 = get(b, p2)
    if soft:
        assert rb2.header("x-cache") == "STALE", f"{kind}: B from L2 after a soft purge: {rb2}"
    else:
        assert rb2.header("x-cache") == "MISS" and "detail=l2" not in rb2.header(
            "cache-status", ""), f"{kind}: B from L2 after a hard purge: {rb2}"
    return ms


def test_fleet_purge_every_kind_in_l1_and_l2(env):
    """Every purge kind on node A (HTTP PURGE of a URL or tags, cwctl purge of a URL, prefix or
    tag; hard and soft): node B stops answering its L1 copy, and B, asking L2 for an object it
    never had, does not get the old copy back from Redis (hard: a MISS; soft: only STALE, so it
    refreshes). The cross-node delay per kind, p50/p99 over 10 purges, is printed."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")

    kinds = {"hu": "HTTP PURGE url", "hus": "HTTP PURGE url, soft",
             "ht": "HTTP PURGE tag", "hts": "HTTP PURGE tag, soft",
             "cu": "cwctl purge url", "cus": "cwctl purge url --soft",
             "cp": "cwctl purge --prefix", "cps": "cwctl purge --prefix --soft",
             "ct": "cwctl purge --tag", "cts": "cwctl purge --tag --soft"}
    delays = {k: [] for k in kinds}
    for i in range(10):
        for k in kinds:
            delays[k].append(purge_kind(a, b, k, i, k.endswith("s")))
    for k, d in delays.items():
        env.note(f"fleet purge {kinds[k]}: A -> B not from L1 after p50 {pct(d, 0.5):.1f} ms, "
                 f"p99 {pct(d, 0.99):.1f} ms ({len(d)} purges)")
    assert b.metric("cachewarp_l2_hits_total") >= 100


def test_fleet_purge_missed_message_comes_from_the_log(env):
    """Node B's subscription is cut (CLIENT KILL TYPE pubsub) and a purge is published before
    it is back: B applies it from the purge log stream once it reconnects."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")
    applied = []
    for i in range(5):
        p = f"/lost{i}?cc=max-age%3D300"
        w0 = writes(a)
        get(a, p)
        a.wait_metric("cachewarp_l2_writes_total", lambda v: v >= w0 + 1, outcome="stored")
        get(b, p)
        rb = get(b, p)
        assert rb.header("x-cache") == "HIT" and "detail=l2" not in rb.header("cache-status", "")
        # B reconnects after its backoff (50 ms at least); the PURGE goes out before that.
        assert resp(r.port, "CLIENT", "KILL", "TYPE", "pubsub") >= 2
        t0 = time.monotonic()
        ra = a.request(p, method="PURGE", headers=SITE)
        assert ra.status == 200, ra
        ms, rb = purge_seen(b, p, t0)
        assert rb.header("x-cache") == "MISS", rb
        with open(b.log_path, "rb") as f:
            log_b = f.read().decode("utf-8", "replace")
        if log_b.count("applied from the purge log") > len(applied):
            applied.append(ms)
    env.note(f"purges missed on redis.channel and applied from the log: {len(applied)} of 5, "
             f"after {', '.join(f'{x:.0f}' for x in applied)} ms")
    assert applied, "no purge came from the purge log: every PUBLISH was received"


def test_fleet_refresh_reaches_l2(env):
    """A background refresh on node A (stale-while-revalidate: a new body; and a 304
    revalidation) is written to L2: node B, with a cold L1, gets the refreshed entry from L2."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    wait_ready(a, r, "/warm-a")
    cc = "max-age%3D1%2C%20stale-while-revalidate%3D60"
    new_body = f"/swr?cc={cc}"
    same_body = f"/rv?cc={cc}&etag=e1"
    w0 = writes(a)
    for p in (new_body, same_body):
        assert get(a, p).header("x-cache") == "MISS"
    a.wait_metric("cachewarp_l2_writes_total", lambda v: v >= w0 + 2, outcome="stored")
    time.sleep(1.3)  # both stale now, within their stale-while-revalidate window
    w1 = writes(a)
    for p in (new_body, same_body):
        assert get(a, p).header("x-cache") == "STALE"
    cw.wait_for(lambda: o.count(new_body) == 2 and o.count(same_body) == 2, 10 * TF,
                what="the refresher's two refreshes")
    a.wait_metric("cachewarp_l2_writes_total", lambda v: v >= w1 + 2, outcome="stored")
    b = node(env, o, r, "node-b")
    wait_ready(b, r, "/warm-b")
    rb = get(b, new_body)
    assert rb.header("x-cache") == "HIT" and "detail=l2" in rb.header("cache-status", ""), rb
    assert b'"n":2' in rb.body, f"B got the old body from L2: {rb.body!r}"
    rb = get(b, same_body)
    assert rb.header("x-cache") == "HIT" and "detail=l2" in rb.header("cache-status", ""), rb
    assert o.count(new_body) == 2 and o.count(same_body) == 2


def test_fleet_purge_log_gap_soft_purges_l1(env):
    """When the purge log no longer holds the entry node B read last (trimmed, or Redis lost
    it), B may have missed purges: it says so once and soft-purges its L1, so its copies are
    served only as stale (and revalidated) from then on."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")
    keep = f"/kept?cc={SWR}"
    get(b, keep)
    assert get(b, keep).header("x-cache") == "HIT"
    rc, out, err = a.cwctl("purge", "--tag", "nothing-tagged")
    assert rc == 0, (rc, out, err)
    # B reads the log once a second: its place is now that purge's entry.
    time.sleep(2.5)
    assert resp(r.port, "XTRIM", "cw:{purgelog}", "MAXLEN", 0) == 1

    def gap_logged():
        with open(b.log_path, "rb") as f:
            return "purge log no longer holds entry" in f.read().decode("utf-8", "replace")

    cw.wait_for(gap_logged, 5 * TF, what="node B noticing the gap in the purge log")
    cw.wait_for(lambda: get(b, keep).header("x-cache") == "STALE" or None, 5 * TF,
                what="node B's L1 soft-purged")
    time.sleep(1.5)  # the next reads find no gap: logged once
    with open(b.log_path, "rb") as f:
        assert f.read().decode("utf-8", "replace").count("purge log no longer holds entry") == 1


def test_fleet_restarted_node_applies_purges_made_while_down(env):
    """Node B keeps its place in the purge log beside its L1 file: stopped, then started again
    on the same L1, it applies the purge node A made meanwhile before serving its old copy."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a")
    b = node(env, o, r, "node-b")
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")
    p = "/while-down?cc=max-age%3D300"
    w0 = writes(a)
    get(a, p)
    a.wait_metric("cachewarp_l2_writes_total", lambda v: v >= w0 + 1, outcome="stored")
    get(b, p)
    rb = get(b, p)
    assert rb.header("x-cache") == "HIT" and "detail=l2" not in rb.header("cache-status", "")
    cw.wait_for(lambda: os.path.exists(os.path.join(env.dir, "node-b.mdb.purgelog")), 5 * TF,
                what="node B keeping its place in the purge log")
    b.stop()
    ra = a.request(p, method="PURGE", headers=SITE)
    assert ra.status == 200, ra
    b2 = node(env, o, r, "node-b2", l1="node-b")

    def from_log():
        with open(b2.log_path, "rb") as f:
            return "applied from the purge log" in f.read().decode("utf-8", "replace")

    cw.wait_for(from_log, 10 * TF, what="the restarted node applying the purge from the log")
    rb = get(b2, p)
    assert rb.header("x-cache") == "MISS", f"the restarted node served its old copy: {rb}"
    assert b'"n":2' in rb.body, rb


def test_fleet_purge_in_cluster_mode(env):
    """The same purges with a Redis Cluster of three masters as L2: the tag and ban scripts
    run per hash-tag group on the group's node, the purge log lives on its own slot, and node
    B, reading L2 for an object it never had, gets no fresh old copy back."""
    from test_l2 import _cluster
    nodes = _cluster(env)
    o = env.origin()

    def cnode(name):
        return env.daemon(o, workers=2, name=name, stats=True, overrides={
            "cache": {"path": os.path.join(env.dir, f"{name}.mdb"), "size": "64M",
                      "max_object": "1M"},
            "redis": {"enabled": True, "mode": "cluster",
                      "nodes": [f"127.0.0.1:{x.port}" for x in nodes],
                      "timeout": "100ms", "connect_timeout": "200ms"},
        })

    a, b = cnode("node-a"), cnode("node-b")
    n = [0]

    def warm(d):
        n[0] += 1
        w0 = writes(d)
        if get(d, f"/warm{n[0]}").status != 200:
            return False
        try:  # not connected yet: that fill went to L1 only; try another
            return d.wait_metric("cachewarp_l2_writes_total", lambda v: v > w0, timeout=1.0,
                                 outcome="stored")
        except AssertionError:
            return False

    for d in (a, b):
        cw.wait_for(lambda: warm(d), 10 * TF, interval=0.2, what="a node writing to the cluster")
    for i, k in enumerate(("hu", "ht", "hts", "cus", "cp", "cps", "ct")):
        purge_kind(a, b, k, i, k.endswith("s"))
    for d in (a, b):
        with open(d.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        assert "Redis answered" not in log and "groups refused" not in log, log[-3000:]


def l2_entries_of(redis, path):
    """The L2 entry keys whose value holds path."""
    out = []
    for k in l2_keys(redis):
        v = resp(redis.port, "GET", k)
        if v is not None and path in v:
            out.append(k)
    return out


def test_fleet_http_purge_bans_variants(env):
    """An HTTP PURGE of a URL whose route keys on a request header (key_headers) on node A
    bans its variants in L2: node B (its L1 cold for them) and node A (after its own purge)
    fetch them from the origin, never the old variant from L2."""
    o = env.origin()
    r = Redis(env, "redis")
    route = {"key_headers": ["X-Tenant"]}
    a = node(env, o, r, "node-a", route=route)
    b = node(env, o, r, "node-b", route=route)
    wait_ready(a, r, "/warm-a")
    wait_ready(b, r, "/warm-b")
    path = "/kh?cc=max-age%3D600"

    def tget(d, tenant):
        return d.get(path, headers={**SITE, "X-Tenant": tenant})

    for t in ("t1", "t2", "t3"):
        ra = tget(a, t)
        assert ra.status == 200 and ra.header("x-cache") == "MISS", ra
    cw.wait_for(lambda: len(l2_entries_of(r, "/kh?")) == 3, 5 * TF, what="3 variants in L2")
    # The variants are L2 hits on B before the purge.
    rb = tget(b, "t1")
    assert rb.header("x-cache") == "HIT" and "detail=l2" in rb.header("cache-status", ""), rb
    assert o.count(path) == 3

    t0 = time.monotonic()
    rp = a.request(path, method="PURGE", headers=SITE)
    assert rp.status == 200, rp
    # B applied the purge (its L1 copy of t1 is gone): A's L2 ban went before the message.
    deadline = time.monotonic() + 5 * TF
    while True:
        rb = tget(b, "t1")
        if rb.header("x-cache") != "HIT" or "detail=l2" in rb.header("cache-status", ""):
            break
        assert time.monotonic() < deadline, f"node B still answers t1 from L1: {rb}"
        time.sleep(0.001)
    ms = (time.monotonic() - t0) * 1000
    for d, t, rx in (("B", "t1", rb), ("B", "t2", tget(b, "t2")), ("A", "t3", tget(a, "t3"))):
        assert rx.status == 200, rx
        assert "detail=l2" not in rx.header("cache-status", ""), \
            f"node {d} {t}: an old variant came back from L2 after the purge: {rx}"
        assert rx.header("x-cache") == "MISS", f"node {d} {t}: {rx}"
    assert o.count(path) == 6, f"origin saw {o.count(path)} requests, want 6"
    assert rp.body == b'{"purged":3,"soft":false}\n', f"node A purged the 3 variants: {rp}"
    env.note(f"HTTP PURGE of a keyed URL: B fetched its variants anew {ms:.1f} ms after")


def state_lines(d):
    """The lines of d's log that say the L2 state changed (breaker, worker readiness)."""
    with open(d.log_path, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    marks = ("l2: breaker open", "l2: breaker closed", "L2 (Redis) unavailable",
             "L2 (Redis) in use")
    return [ln for ln in log.splitlines() if any(m in ln for m in marks)]


def run_load(d, tag, threads=2):
    """Starts threads of GETs of new keys (every one an L1 miss that asks L2) on d; returns
    (stop event, results list of (t start, elapsed s, status), lock, threads)."""
    stop = threading.Event()
    lock = threading.Lock()
    results = []

    def load(k):
        i = 0
        while not stop.is_set():
            path = f"/{tag}-{k}-{i}"
            i += 1
            t0 = time.monotonic()
            try:
                st = get(d, path, timeout=5).status
            except Exception as e:  # noqa: BLE001 - counted as a failure
                st = repr(e)
            with lock:
                results.append((t0, time.monotonic() - t0, st))

    ts = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    return stop, results, lock, ts


def test_fleet_redis_answering_errors(env):
    """A Redis whose data commands all answer an error (renamed away) while PING works: no
    failed request, the errors counted, the breaker opens, and the log says each change of
    state once, not once per request (a breaker that opens again soon after closing keeps
    doubling its wait)."""
    o = env.origin()
    r = Redis(env, "redis", conf="".join(f'rename-command {c} ""\n'
                                         for c in ("GET", "SET", "EVAL", "EVALSHA")))
    a = node(env, o, r, "node-a")
    cw.wait_for(lambda: sum("L2 (Redis) in use" in ln for ln in state_lines(a)) >= 2,
                10 * TF, what="every worker connected to Redis")
    before = len(state_lines(a))
    stop, results, lock, ts = run_load(a, "err")
    opened = [0]

    def watch():
        opened[0] = max(opened[0], a.metric("cachewarp_l2_breaker_state"))
        return False

    t_end = time.monotonic() + 3.0 * TF
    while time.monotonic() < t_end:
        watch()
        time.sleep(0.05)
    stop.set()
    for t in ts:
        t.join(10)
    failed = [x for x in results if x[2] != 200]
    lines = state_lines(a)[before:]
    errors = a.metric("cachewarp_l2_errors_total")
    env.note(f"{len(results)} requests on a Redis answering errors, {len(failed)} failed, "
             f"{errors:.0f} L2 errors, {len(lines)} state-change log lines")
    assert not failed, f"failed requests: {failed[:5]}"
    assert errors >= 5, errors
    assert opened[0] >= 1, "the breaker never opened"
    assert any("l2: breaker open" in ln for ln in lines), lines
    # Per worker: a few rounds while the wait doubles to its ceiling, then one per 2 s.
    assert len(lines) <= 48, "\n".join(lines[-20:])
    assert len(lines) * 5 < len(results), (len(lines), len(results))


def test_fleet_slow_redis_costs_at_most_one_timeout(env):
    """DEBUG SLEEP 1 on the node's Redis, three times, under steady load of L1 misses: no
    failed request, none slower than the slowest before plus one redis.timeout (the GET and
    the lease take share one budget) and the loaded machine's margin; then, with the breaker
    open, requests skip Redis and add nothing."""
    o = env.origin()
    r = Redis(env, "redis", args=["--enable-debug-command", "yes"])
    a = node(env, o, r, "node-a", workers=1)
    wait_ready(a, r, "/warm-a", workers=1)
    stop, results, lock, ts = run_load(a, "slow", threads=3)
    time.sleep(1.0 * TF)
    with lock:
        n_base = len(results)
        base = sorted(e for _, e, _ in results)
    slept_at = time.monotonic()
    for _ in range(3):
        assert resp(r.port, "DEBUG", "SLEEP", "1", timeout=10) == "OK"
        time.sleep(0.3)
    # The breaker open: a long sleep, measured once the gauge says so.
    sleeper = threading.Thread(target=lambda: resp(r.port, "DEBUG", "SLEEP", "3", timeout=15),
                               daemon=True)
    sleeper.start()
    a.wait_metric("cachewarp_l2_breaker_state", lambda v: v >= 1, timeout=2.5)
    open_at = time.monotonic()
    time.sleep(1.0)
    open_until = time.monotonic()
    stop.set()
    for t in ts:
        t.join(10)
    sleeper.join(15)
    failed = [x for x in results if x[2] != 200]
    during = [e for t0, e, _ in results[n_base:] if t0 < open_at]
    with_open = [e for t0, e, _ in results if open_at <= t0 and t0 + e <= open_until]
    max_base = base[-1]
    slowest = max(during)
    slowest_open = max(with_open) if with_open else 0
    env.note(f"{len(results)} requests, {len(failed)} failed; slowest before {max_base * 1000:.1f}"
             f" ms, during DEBUG SLEEP {slowest * 1000:.1f} ms ({len(during)} requests), with "
             f"the breaker open {slowest_open * 1000:.1f} ms ({len(with_open)} requests)")
    assert not failed, f"failed requests with Redis asleep: {failed[:5]}"
    assert slept_at < open_at
    limit = max_base + (REDIS_TIMEOUT_MS + 100) / 1000 * TF
    assert slowest < limit, f"a request took {slowest * 1000:.0f} ms (limit {limit * 1000:.0f})"
    assert with_open, "no request completed while the breaker was open"
    limit_open = max_base + 0.1 * TF
    assert slowest_open < limit_open, \
        f"breaker open: a request took {slowest_open * 1000:.0f} ms (limit {limit_open * 1000:.0f})"


def test_fleet_tag_sets_are_trimmed(env):
    """A tag's set in Redis does not keep members whose entry is gone: with 500 dead members
    planted in the set of an entry's group, the writes of that entry remove them (a few per
    write) until the set is back under the size where trimming starts (64)."""
    o = env.origin()
    r = Redis(env, "redis")
    a = node(env, o, r, "node-a", workers=1)
    wait_ready(a, r, "/warm-a", workers=1)
    path = "/tagged?sk=trim"
    assert get(a, path).status == 200
    k = wait_key(r, "/tagged?")
    tset = k[:k.index("}") + 1] + "t:trim"
    assert resp(r.port, "SCARD", tset) == 1
    assert resp(r.port, "SADD", tset, *[f"{i:032x}" for i in range(500)]) == 500
    writes = 0
    while resp(r.port, "SCARD", tset) > 65 and writes < 200:
        n = a.metric("cachewarp_l2_writes_total", outcome="stored")
        assert a.request(path, method="PURGE", headers=SITE).status in (200, 404)
        assert get(a, path).status == 200
        a.wait_metric("cachewarp_l2_writes_total", lambda v: v > n, outcome="stored")
        writes += 1
    size = resp(r.port, "SCARD", tset)
    env.note(f"a tag set with 500 dead members planted: {size} members after {writes} writes")
    assert size <= 65, f"the tag set still has {size} members after {writes} writes"
    assert resp(r.port, "SISMEMBER", tset, k[k.index("}") + 1:]) == 1, "the live member went"
