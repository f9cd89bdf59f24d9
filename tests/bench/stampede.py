#!/usr/bin/env python3
"""The cold-key stampede, repeated: N clients at once on one cold key, origin D ms.

    python3 tests/bench/stampede.py [--build build/rel] [--rounds 10] [--clients 200]
                                    [--delay-ms 50] [--workers 2]

One daemon (2 workers) and one test origin; each round uses a new cold key and new
connections, accepted by both workers before the requests are written (as
test_stampede_one_origin_request does). Per round it prints the origin requests, the owner's
(MISS) latency and the waiters' p50/p99/max past the origin delay; at the end the medians
(and min-max) over the rounds, and the waiters' p99 past the owner's answer, which is what
the wake-up adds. Latencies are the kernel's receive timestamps (cw.collect).
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import cw  # noqa: E402


def ms(s):
    return f"{s * 1000:.1f}"


def one_round(d, o, i, clients, delay):
    path = f"/stampede-bench-{i}?delay_ms={int(delay * 1000)}&cc=max-age%3D60"
    socks = cw.connect_many(d.port, clients)
    cw.socket_owners(socks, d.port, d.workers(), timeout=5)
    batch = cw.send_all(socks, [cw.request_bytes(d.port, path)] * clients)
    res = cw.collect(batch, timeout=10, settle=delay + 0.15)
    bad = [x for x in res if isinstance(x, Exception) or x.status != 200]
    if bad:
        raise SystemExit(f"round {i}: {len(bad)} failed, e.g. {bad[0]!r}")
    owner = [x for x in res if x.header("x-cache") == "MISS"]
    waiters = [x.since_release for x in res if x.header("x-cache") != "MISS"]
    own = owner[0].since_release if owner else float("nan")
    p50, p99 = cw.percentile(waiters, 50), cw.percentile(waiters, 99)
    return {"origin": o.count(path), "owner": own, "p50": p50 - delay, "p99": p99 - delay,
            "max": max(waiters) - delay, "after_owner": p99 - own}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("CW_BUILD", "build/rel"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--delay-ms", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    cw.set_build(a.build)
    delay = a.delay_ms / 1000.0
    env = cw.Env("stampede-bench")
    rows = []
    try:
        o = env.origin()
        d = env.daemon(o, workers=a.workers)
        cw.wait_for(lambda: len(d.workers()) == a.workers, 5, what="workers")
        assert d.get("/warm-up").status == 200
        for i in range(a.rounds):
            r = one_round(d, o, i, a.clients, delay)
            rows.append(r)
            print(f"round {i}: origin {r['origin']}; owner {ms(r['owner'])} ms; waiters past "
                  f"the origin's {a.delay_ms} ms: p50 {ms(r['p50'])} p99 {ms(r['p99'])} max "
                  f"{ms(r['max'])} ms; p99 past the owner's answer {ms(r['after_owner'])} ms",
                  flush=True)
    finally:
        env.close()
        env.cleanup()

    def agg(k):
        v = [r[k] for r in rows]
        return f"{ms(statistics.median(v))} ({ms(min(v))}-{ms(max(v))})"

    print(f"{a.build}: {a.rounds} rounds, {a.clients} clients, origin {a.delay_ms} ms: "
          f"origin requests {sorted({r['origin'] for r in rows})}; waiters past the origin, "
          f"median (min-max) ms: p50 {agg('p50')}, p99 {agg('p99')}, max {agg('max')}; "
          f"p99 past the owner's answer {agg('after_owner')}")


if __name__ == "__main__":
    main()
