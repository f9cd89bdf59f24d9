"""Observability acceptance tests: the stats process (Prometheus text on stats.listen, checked
by promtool), the node_exporter textfile (read by a real prometheus-node-exporter), counters
that match the requests made and survive a killed worker, and the access log (JSON and
combined lines, secrets never logged, reopened on SIGUSR1 after a rename).

promtool (Debian package prometheus) and prometheus-node-exporter are installed by
scripts/deps.sh; when one is missing the test that needs it fails and says so.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import cw

SERIES_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def need_tool(name, package):
    path = shutil.which(name)
    assert path, (f"{name} not found: install the Debian package {package} "
                  f"(scripts/deps.sh does; `make deps`)")
    return path


def parse_metrics(text):
    """{(name, frozenset(labels.items())): float} of an exposition; asserts every line parses."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES_RE.match(line)
        assert m, f"unparsable exposition line {line!r}"
        labels = frozenset(LABEL_RE.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(metrics, name, **labels):
    """The value of the series name{labels} (exact label set), or None."""
    return metrics.get((name, frozenset(labels.items())))


def total(metrics, name, **labels):
    """Sum over the series of name whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def stats_daemon(env, o, stats=None, **kw):
    """A daemon with the stats process on an ephemeral loopback port; returns (d, port)."""
    port = cw.free_port()
    s = {"listen": f"{cw.LOOPBACK}:{port}", "interval": "1s"}
    s.update(stats or {})
    overrides = kw.pop("overrides", {})
    overrides["stats"] = s
    d = env.daemon(o, overrides=overrides, **kw)
    cw.wait_for(lambda: cw.port_accepts(port), 10, what=f"stats listening on {port}")
    return d, port


def scrape(port):
    r = cw.request(port, "/metrics", timeout=5)
    assert r.status == 200, f"/metrics: {r}"
    return r


def two_routes():
    api = {"match": "/api/", "origin": "api", "ttl": "60s", "swr": "0s", "sie": "0s"}
    root = {"match": "/", "origin": "api", "ttl": "60s", "swr": "0s", "sie": "0s"}
    return cw.Raw("( " + cw.lc_group(api) + ", " + cw.lc_group(root) + " )")


def req_count(m, route, result, method="GET"):
    return value(m, "cachewarp_requests_total", route=route, method=method, result=result)


# ---------------------------------------------------------------------------------------
def test_observability_promtool_accepts_metrics(env):
    promtool = need_tool("promtool", "prometheus")
    o = env.origin()
    d, port = stats_daemon(env, o, workers=2)
    assert d.get("/p?cc=max-age%3D60").status == 200
    assert d.get("/p?cc=max-age%3D60").status == 200
    assert d.request("/p", method="POST", body=b"x").status == 200
    assert d.get("/e?status=503").status in (502, 503)
    cw.wait_for(lambda: total(parse_metrics(scrape(port).body.decode()),
                              "cachewarp_requests_total") >= 4, 5, what="4 requests counted")

    r = scrape(port)
    ctype = r.header("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, r
    text = r.body.decode("utf-8")
    p = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True,
                       timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (
        f"promtool check metrics: rc={p.returncode}\n{p.stdout.decode()}{p.stderr.decode()}\n"
        f"--- exposition ---\n{text[:3000]}")
    m = parse_metrics(text)
    for family in ("cachewarp_build_info", "cachewarp_requests_total",
                   "cachewarp_request_duration_seconds", "cachewarp_origin_requests_total",
                   "cachewarp_origin_request_duration_seconds", "cachewarp_coalesced_requests_total",
                   "cachewarp_refreshes_total", "cachewarp_l1_entries", "cachewarp_l1_used_bytes",
                   "cachewarp_l1_evictions_total", "cachewarp_l2_hits_total",
                   "cachewarp_l2_misses_total", "cachewarp_l2_errors_total",
                   "cachewarp_l2_breaker_state", "cachewarp_origin_breaker_state",
                   "cachewarp_worker_restarts_total"):
        assert f"# TYPE {family} " in text, f"family {family} missing:\n{text[:2000]}"
    assert value(m, "cachewarp_build_info", version="0.1.0") == 1
    assert value(m, "cachewarp_origin_requests_total", origin="api", status_class="5xx") >= 1
    assert value(m, "cachewarp_l1_entries") >= 1
    assert value(m, "cachewarp_l2_hits_total") == 0

    h = cw.request(port, "/healthz", timeout=5)
    assert h.status == 200 and h.body == b"ok\n", h
    assert cw.request(port, "/nope", timeout=5).status == 404
    assert cw.request(port, "/metrics", method="POST", body=b"", timeout=5).status == 405


# ---------------------------------------------------------------------------------------
def test_observability_counts_match_requests(env):
    o = env.origin()
    d, port = stats_daemon(env, o, workers=2, overrides={"routes": two_routes()})
    # Route "/api/": 1 miss + 4 hits; route "/": 2 misses + 3 hits. 3 misses, 7 hits in all.
    plan = [("/api/x?cc=max-age%3D300", 5), ("/y?cc=max-age%3D300", 2), ("/z?cc=max-age%3D300", 3)]
    for path, n in plan:
        for i in range(n):
            r = d.get(path)
            assert r.status == 200, r
            assert r.header("x-cache") == ("MISS" if i == 0 else "HIT"), f"{path} #{i}: {r}"

    def settled():
        m = parse_metrics(scrape(port).body.decode())
        return m if total(m, "cachewarp_requests_total") >= 10 else None

    m = cw.wait_for(settled, 5, interval=0.05, what="10 requests counted")
    time.sleep(0.3)  # nothing else may arrive: the counts are exact, not lower bounds
    m = parse_metrics(scrape(port).body.decode())
    want = {("/api/", "miss"): 1, ("/api/", "hit"): 4, ("/", "miss"): 2, ("/", "hit"): 3}
    for (route, result), n in want.items():
        got = req_count(m, route, result)
        assert got == n, f"requests_total route={route} result={result}: {got}, want {n}"
        cnt = value(m, "cachewarp_request_duration_seconds_count", route=route, result=result)
        assert cnt == n, f"duration _count route={route} result={result}: {cnt}, want {n}"
        inf = value(m, "cachewarp_request_duration_seconds_bucket", route=route, result=result,
                    le="+Inf")
        assert inf == n, f"duration +Inf bucket route={route} result={result}: {inf}"
    assert total(m, "cachewarp_requests_total") == 10, m
    assert total(m, "cachewarp_requests_total", result="miss") == 3
    assert total(m, "cachewarp_requests_total", result="hit") == 7
    assert value(m, "cachewarp_origin_requests_total", origin="api", status_class="2xx") == 3
    assert value(m, "cachewarp_origin_request_duration_seconds_count", origin="api") == 3
    assert value(m, "cachewarp_origin_requests_total", origin="api", status_class="error") == 0

    # A HEAD hit and a POST pass are counted by method class.
    assert d.request("/z?cc=max-age%3D300", method="HEAD").status == 200
    assert d.request("/api/post", method="POST", body=b"abc").status == 200
    m = cw.wait_for(lambda: (lambda x: x if total(x, "cachewarp_requests_total") >= 12 else None)(
        parse_metrics(scrape(port).body.decode())), 5, what="12 requests counted")
    assert req_count(m, "/", "hit", method="HEAD") == 1, m
    assert req_count(m, "/api/", "pass", method="other") == 1, m


# ---------------------------------------------------------------------------------------
def test_observability_textfile_read_by_node_exporter(env):
    exporter = need_tool("prometheus-node-exporter", "prometheus-node-exporter")
    o = env.origin()
    tdir = os.path.join(env.dir, "textfile")
    os.mkdir(tdir)
    prom = os.path.join(tdir, "cachewarp.prom")
    port = cw.free_port()
    d = env.daemon(o, workers=2, overrides={
        "stats": {"listen": "", "textfile": prom, "interval": "300ms"}})
    for _ in range(3):
        assert d.get("/t?cc=max-age%3D60").status == 200

    def written():
        try:
            with open(prom) as f:
                m = parse_metrics(f.read())
        except FileNotFoundError:
            return None
        return m if total(m, "cachewarp_requests_total") >= 3 else None

    m = cw.wait_for(written, 10, interval=0.1, what=f"{prom} with 3 requests")
    assert req_count(m, "/", "miss") == 1 and req_count(m, "/", "hit") == 2, m
    assert not [f for f in os.listdir(tdir) if f != "cachewarp.prom" and f.endswith(".prom")]

    log_path = os.path.join(env.dir, "node_exporter.log")
    with open(log_path, "wb") as log:
        ne = subprocess.Popen(
            [exporter, "--collector.disable-defaults", "--collector.textfile",
             f"--collector.textfile.directory={tdir}",
             f"--web.listen-address={cw.LOOPBACK}:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        cw.wait_for(lambda: ne.poll() is not None or cw.port_accepts(port), 10,
                    what="node_exporter listening")
        assert ne.poll() is None, f"node_exporter exited: {cw.tail(log_path)}"
        r = cw.request(port, "/metrics", timeout=10)
        assert r.status == 200, r
        nm = parse_metrics(r.body.decode())
        assert value(nm, "cachewarp_build_info", version="0.1.0") == 1, cw.tail(log_path)
        assert req_count(nm, "/", "hit") >= 2, r.body.decode()[:3000]
        assert value(nm, "node_textfile_scrape_error") == 0, (
            f"node_exporter could not read the textfile:\n{cw.tail(log_path)}")
        # The file keeps being rewritten: a new request shows up through node_exporter.
        assert d.get("/t?cc=max-age%3D60").status == 200

        def updated():
            x = parse_metrics(cw.request(port, "/metrics", timeout=10).body.decode())
            return x if req_count(x, "/", "hit") >= 3 else None

        cw.wait_for(updated, 10, interval=0.2, what="the next textfile through node_exporter")
    finally:
        ne.terminate()
        try:
            ne.wait(10)
        except subprocess.TimeoutExpired:
            ne.kill()
            ne.wait(5)


# ---------------------------------------------------------------------------------------
def counters(m):
    """Every cumulative series: counters, histogram buckets, sums and counts."""
    return {k: v for k, v in m.items()
            if k[0].endswith(("_total", "_bucket", "_count", "_sum"))}


def test_observability_killed_processes_keep_counters(env):
    o = env.origin()
    d, port = stats_daemon(env, o, workers=2)
    before_pids = cw.wait_for(lambda: d.workers() if len(d.workers()) == 2 else None, 5,
                              what="2 workers")
    for i in range(20):
        assert d.get(f"/k{i % 5}?cc=max-age%3D300").status == 200
    m0 = cw.wait_for(lambda: (lambda x: x if total(x, "cachewarp_requests_total") >= 20 else None)(
        parse_metrics(scrape(port).body.decode())), 5, what="20 requests counted")
    before = counters(m0)

    os.kill(before_pids[0], signal.SIGKILL)
    cw.wait_for(lambda: len([p for p in d.workers() if p not in before_pids]) == 1, 10,
                what="a replacement worker")
    m1 = parse_metrics(scrape(port).body.decode())
    after = counters(m1)
    went_back = {k: (v, after.get(k)) for k, v in before.items()
                 if after.get(k) is None or after[k] < v}
    assert not went_back, f"counters went backwards after kill -9 of a worker: {went_back}"
    assert value(m1, "cachewarp_worker_restarts_total") >= 1, m1

    # The stats process itself: killed, restarted, it reads the same segment.
    stats_pids = d.named("cw-stats")
    assert len(stats_pids) == 1, f"cw-stats processes: {stats_pids}"
    os.kill(stats_pids[0], signal.SIGKILL)
    cw.wait_for(lambda: [p for p in d.named("cw-stats") if p != stats_pids[0]], 10,
                what="a replacement cw-stats")

    def served():
        try:
            return parse_metrics(scrape(port).body.decode())
        except (OSError, AssertionError):
            return None

    m2 = cw.wait_for(served, 10, interval=0.1, what="/metrics after the stats restart")
    after2 = counters(m2)
    went_back = {k: (v, after2.get(k)) for k, v in after.items()
                 if after2.get(k) is None or after2[k] < v}
    assert not went_back, f"counters went backwards after kill -9 of cw-stats: {went_back}"
    assert value(m2, "cachewarp_worker_restarts_total") >= 2, m2
    for i in range(5):
        assert d.get(f"/k{i}?cc=max-age%3D300").status == 200
    m3 = cw.wait_for(lambda: (lambda x: x if total(x, "cachewarp_requests_total") >= 25 else None)(
        parse_metrics(scrape(port).body.decode())), 5, what="25 requests counted")
    assert total(m3, "cachewarp_requests_total", result="hit") >= 20


# ---------------------------------------------------------------------------------------
def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8").splitlines()
    except FileNotFoundError:
        return []


def test_observability_access_log_json(env):
    o = env.origin()
    path = os.path.join(env.dir, "access.log")
    d = env.daemon(o, workers=2, overrides={
        "log": {"level": "info", "access": path, "format": "json"}})
    secret_hdrs = {"Authorization": "Bearer s3cr3t-token", "Cookie": "session=c00kie-value",
                   "User-Agent": "cw-test/1.0", "Referer": "http://ref.example/"}
    r1 = d.get("/j?cc=max-age%3D60&q=%22x%22", headers={"User-Agent": "cw-test/1.0"})
    r2 = d.get("/j?cc=max-age%3D60&q=%22x%22", headers=secret_hdrs)
    assert r1.header("x-cache") == "MISS" and r2.header("x-cache") == "HIT", (r1, r2)

    lines = cw.wait_for(lambda: (lambda x: x if len(x) >= 2 else None)(read_lines(path)), 5,
                        interval=0.1, what="2 access-log lines (flushed within ~1 s)")
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 2, lines
    recs.sort(key=lambda x: x["cache"] != "MISS")
    miss, hit = recs
    for rec, resp in ((miss, r1), (hit, r2)):
        assert rec["method"] == "GET" and rec["url"] == "/j?cc=max-age%3D60&q=%22x%22", rec
        assert rec["status"] == 200 and rec["bytes"] == len(resp.body), (rec, resp)
        assert rec["client"] == "127.0.0.1" and rec["route"] == "/", rec
        assert rec["protocol"] == "HTTP/1.1", rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"]), rec
        assert isinstance(rec["duration"], (int, float)) and rec["duration"] >= 0, rec
        assert rec["user_agent"] == "cw-test/1.0", rec
    assert miss["cache"] == "MISS" and miss["origin_time"] is not None, miss
    assert hit["cache"] == "HIT" and hit["origin_time"] is None, hit
    assert hit["referer"] == "http://ref.example/", hit
    with open(path, "rb") as f:
        raw = f.read()
    assert b"s3cr3t" not in raw and b"c00kie" not in raw, "a secret reached the access log"

    # logrotate: rename, SIGUSR1 to the main PID, new lines go to a new file at the old path.
    os.rename(path, path + ".1")
    d.signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(path), "no new access log after SIGUSR1"
    assert d.get("/after-rotate").status == 200
    cw.wait_for(lambda: any("/after-rotate" in x for x in read_lines(path)), 5, interval=0.1,
                what="the next line in the reopened access log")
    assert not any("/after-rotate" in x for x in read_lines(path + ".1"))
    assert len(d.workers()) == 2, "a worker died on SIGUSR1"


def test_observability_access_log_combined(env):
    o = env.origin()
    path = os.path.join(env.dir, "access.log")
    d = env.daemon(o, workers=1, overrides={
        "log": {"level": "info", "access": path, "format": "combined"}})
    assert d.get("/c?cc=max-age%3D60", headers={"User-Agent": 'ua "quoted"'}).status == 200
    raw = cw.raw_request(d.port, b'GET /c"q\x7f HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                         b'Connection: close\r\n\r\n')
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    lines = cw.wait_for(lambda: (lambda x: x if len(x) >= 2 else None)(read_lines(path)), 5,
                        interval=0.1, what="2 access-log lines")
    first = lines[0]
    m = re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                     r'"GET /c\?cc=max-age%3D60 HTTP/1\.1" 200 (\d+) "-" '
                     r'"ua \\x22quoted\\x22" rt=\d+\.\d{6} cache=MISS route="/" ot=\d+\.\d{6}',
                     first)
    assert m, f"combined line: {first!r}"
    assert '"GET /c\\x22q\\x7f HTTP/1.1"' in lines[1], f"escaped target: {lines[1]!r}"
