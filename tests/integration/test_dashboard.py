"""The Grafana dashboard works: a real Prometheus (Debian's prometheus, installed by
scripts/deps.sh) scrapes a running cachewarpd's stats listener every second, the test sends
traffic of every kind the panels show (misses, hits, a stale answer, passes, origin 5xx), and
then every panel query of etc/grafana/cachewarp.json, and each template variable's query, is
evaluated through Prometheus's HTTP API: each must return at least one series with a finite
value. Grafana's variables are replaced as Grafana would with "All" selected ($instance and
$route -> ".*") and $__rate_interval -> 15s (four scrape intervals or more, as Grafana picks).
"""

import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import cw

DASHBOARD = os.path.join(cw.REPO, "etc", "grafana", "cachewarp.json")
VARS = {"instance": ".*", "route": ".*", "__rate_interval": "15s", "__interval": "1s",
        "__range": "1m"}


def panel_queries(dash):
    """[(panel title, refId, expr)] of every panel, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t.get("refId", "?"), t["expr"]))

    walk(dash.get("panels", []))
    return out


def substitute(expr):
    def one(m):
        name = m.group(1) or m.group(2)
        assert name in VARS, f"dashboard variable ${name} has no test value: {expr}"
        return VARS[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


def prom_get(port, path, **params):
    url = f"http://{cw.LOOPBACK}:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body.get("status") == "success", f"{path} {params}: {body}"
    return body["data"]


def finite_values(data):
    """The finite sample values of an instant-query result (vector or scalar)."""
    if data["resultType"] == "scalar":
        vals = [data["result"][1]]
    else:
        vals = [s["value"][1] for s in data["result"]]
    return [float(v) for v in vals if math.isfinite(float(v))]


class Prometheus:
    def __init__(self, tmpdir, target_port):
        exe = shutil.which("prometheus")
        assert exe, "prometheus not found: install the Debian package prometheus (scripts/deps.sh)"
        self.port = cw.free_port()
        conf = os.path.join(tmpdir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n"
                    "  - job_name: cachewarp\n"
                    f"    static_configs: [{{targets: ['{cw.LOOPBACK}:{target_port}']}}]\n")
        self.log_path = os.path.join(tmpdir, "prometheus.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [exe, f"--config.file={conf}", f"--storage.tsdb.path={tmpdir}/prom-data",
             f"--web.listen-address={cw.LOOPBACK}:{self.port}", "--log.level=warn",
             "--web.enable-lifecycle"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_target_up(self, timeout=20):
        def up():
            assert self.proc.poll() is None, f"prometheus exited: {cw.tail(self.log_path)}"
            try:
                res = prom_get(self.port, "/api/v1/query", query='up{job="cachewarp"}')["result"]
            except OSError:
                return False
            return res and res[0]["value"][1] == "1"

        cw.wait_for(up, timeout, interval=0.2, what="prometheus scraping cachewarpd (up == 1)")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def traffic(d):
    """Every kind of answer the panels plot, a few times each."""
    for i in range(3):
        for k in range(5):
            assert d.get(f"/k{k}?cc=max-age%3D300").status == 200          # miss, then hits
        assert d.get(f"/s?cc=max-age%3D0%2C%20stale-while-revalidate%3D60").status == 200
        assert d.request("/post", method="POST", body=b"x").status == 200  # pass
        assert d.get(f"/e{i}?status=503").status in (502, 503)            # origin 5xx


def test_dashboard_every_panel_query_returns_data(env):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    queries = panel_queries(dash)
    assert len(queries) >= 10, f"only {len(queries)} panel queries found in {DASHBOARD}"

    o = env.origin()
    d = env.daemon(o, workers=2, stats=True)
    prom = Prometheus(env.dir, d.stats_port)
    try:
        prom.wait_target_up()
        t0 = time.monotonic()
        traffic(d)
        d.wait_metric("cachewarp_requests_total", lambda v: v >= 24)  # 3 x 8 requests
        # Two scrapes after the traffic: every rate() window then holds an increase.
        time.sleep(2.5)
        traffic(d)
        time.sleep(2.5)

        # The template variables' queries find this node and its route.
        for var in dash.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q or "")
            assert m, f"variable {var.get('name')}: unexpected query {q!r}"
            vals = prom_get(prom.port, f"/api/v1/label/{m.group(2)}/values",
                            **{"match[]": m.group(1)})
            assert vals, f"variable {var['name']}: {q} returned nothing"

        empty = []
        for title, ref, expr in queries:
            q = substitute(expr)
            deadline = time.monotonic() + 10
            while True:
                data = prom_get(prom.port, "/api/v1/query", query=q)
                if finite_values(data) or time.monotonic() >= deadline:
                    break
                traffic(d)
                time.sleep(1.0)
            if not finite_values(data):
                empty.append(f"{title} [{ref}]: {q}\n    -> {data['result']}")
        assert not empty, "panel queries without data:\n  " + "\n  ".join(empty)
        env.note(f"{len(queries)} panel queries with data, {time.monotonic() - t0:.1f}s")
    finally:
        prom.stop()
