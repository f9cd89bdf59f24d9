"""cwctl and the control socket: every command against a running daemon, every error path
(daemon down, permission denied, invalid URL, bad flags), the socket's safety rules, reload
with a broken config, sd_notify on a test NOTIFY_SOCKET (WATCHDOG stops while a worker is
SIGSTOPped), and cwctl top in a pseudo-terminal."""

import json
import os
import pty
import re
import select
import signal
import socket
import stat
import time
import urllib.parse

import cw


def q(s):
    return urllib.parse.quote(s, safe="")


def _xc(r):
    return r.header("x-cache")


def _conf_text(d, o, **kw):
    kw.setdefault("overrides", {"control": {"socket": d.control}})
    return cw.config_text(d.tmpdir, port=d.port, origin_port=o.port, **kw)


def _ctl_raw(path, data, timeout=5.0):
    """Sends raw bytes on the control socket and returns the reply line (parsed JSON)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        buf = b""
        while not buf.endswith(b"\n"):
            b = s.recv(65536)
            if not b:
                break
            buf += b
    return json.loads(buf)


def test_ctl_status_stats_and_json(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    p = f"/s?cc={q('max-age=60')}"
    assert _xc(d.get(p)) == "MISS" and _xc(d.get(p)) == "HIT"
    rc, out, err = d.cwctl("status")
    assert rc == 0, err
    assert f"pid {d.pid}" in out and "cachewarpd 0.1.0" in out and d.conf in out, out
    assert re.search(r"L1 .* used of 64\.0 MiB, 1 entries", out), out
    assert "L2        off" in out, out
    assert len(re.findall(r"^worker\s+\d+\s+\d+\s+running", out, re.M)) == 2, out
    assert re.search(r"^refresher\s+0\s+\d+\s+running\s+0", out, re.M), out
    rc, out, err = d.cwctl("--json", "status")
    assert rc == 0, err
    st = json.loads(out)
    assert st["v"] == 1 and st["ok"] and st["pid"] == d.pid and st["config"] == d.conf, st
    assert {c["role"] for c in st["children"]} == {"worker", "refresher"}, st
    assert sorted(c["pid"] for c in st["children"] if c["role"] == "worker") == sorted(d.workers())
    assert st["l1"]["entries"] == 1 and st["l1"]["size_bytes"] == 64 << 20, st
    assert st["l2"] == {"state": "off", "configured": False}, st
    rc, out, err = d.cwctl("stats")
    assert rc == 0, err
    assert "requests     2" in out and "hit 1 miss 1" in out and "hit ratio    50.0 %" in out, out
    assert "origin       1 requests, 0 errors" in out and "evictions    0" in out, out
    rc, out, err = d.cwctl("-j", "stats")
    s = json.loads(out)
    assert s["requests"] == 2 and s["results"]["hit"] == 1 and s["hit_ratio"] == 0.5, s
    assert sum(s["latency_us"]["counts"]) == 2 and s["origins"][0]["name"] == "api", s


def test_ctl_purge_url_prefix_and_tag(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    base = f"http://{cw.LOOPBACK}:{d.port}"
    cc = q("max-age=600")
    paths = {"a": f"/p/a?cc={cc}", "b": f"/p/b?cc={cc}", "c": f"/q/c?cc={cc}",
             "t1": f"/t/1?cc={cc}&sk=red%20blue", "t2": f"/t/2?cc={cc}&sk=blue"}
    for p in paths.values():
        assert _xc(d.get(p)) == "MISS"
        assert _xc(d.get(p)) == "HIT"
    # One URL, as clients ask for it.
    rc, out, err = d.cwctl("purge", base + paths["a"])
    assert rc == 0 and out.strip().startswith("purged 1 entry"), (rc, out, err)
    assert _xc(d.get(paths["a"])) == "MISS" and _xc(d.get(paths["b"])) == "HIT"
    # Purging what is not cached is no error: 0 entries.
    rc, out, err = d.cwctl("--json", "purge", base + "/p/none")
    assert rc == 0 and json.loads(out)["purged"] == 0, (rc, out, err)
    # A prefix: /p/a (cached again above) and /p/b, not /q/c.
    rc, out, err = d.cwctl("purge", "--prefix", base + "/p/")
    assert rc == 0 and "purged 2 entries" in out, (rc, out, err)
    assert _xc(d.get(paths["b"])) == "MISS" and _xc(d.get(paths["c"])) == "HIT"
    # A tag: both entries tagged blue; soft marks them stale (the next GET revalidates).
    rc, out, err = d.cwctl("-j", "purge", "--tag", "blue", "--soft")
    assert rc == 0 and json.loads(out)["purged"] == 2, (rc, out, err)
    assert _xc(d.get(paths["t1"])) != "HIT" and _xc(d.get(paths["c"])) == "HIT"
    rc, out, err = d.cwctl("purge", "--tag", "red")
    assert rc == 0 and "purged 1 entry" in out, (rc, out, err)
    # The host of a URL is matched as keys are: case and the port as given.
    d.get(paths["c"])
    rc, out, err = d.cwctl("purge", f"http://{cw.LOOPBACK.upper()}:{d.port}" + paths["c"])
    assert rc == 0 and "purged 1 entry" in out, (rc, out, err)


def test_ctl_error_paths(env):
    o = env.origin()
    d = env.daemon(o, workers=1)
    # Bad flags and usage: 2, with the usage or the reason.
    for args, want in [((), "no command"), (("--bogus", "status"), "usage"),
                       (("frobnicate",), "unknown command"), (("status", "extra"), "no arguments"),
                       (("purge",), "usage: cwctl purge"), (("purge", "--prefix"), "usage"),
                       (("purge", "--soft", "--what", "x"), "unknown flag"),
                       (("top", "-n", "0"), "-n wants"), (("check", "-x"), "usage")]:
        rc, out, err = d.cwctl(*args)
        assert rc == 2 and want in err, (args, rc, out, err)
    # An invalid URL is refused before anything is sent: 2.
    for bad in ["/no/scheme", "https://a/", "http://a b/", "http://a/#frag", "ftp://x/"]:
        rc, out, err = d.cwctl("purge", bad)
        assert rc == 2 and "invalid URL" in err and "http://host" in err, (bad, rc, err)
    rc, out, err = d.cwctl("purge", "--prefix", "nope")
    assert rc == 2 and "invalid prefix" in err, (rc, err)
    # The daemon refuses: 1, with its reason.
    rc, out, err = cw.run_cwctl(["-s", d.control, "purge", "--tag", "x" * 300])
    assert rc == 1 and "invalid" in err, (rc, err)
    # --help documents every exit status.
    rc, out, err = d.cwctl("--help")
    assert rc == 0 and all(f"  {n}  " in out for n in range(4)), out
    # A protocol error from a raw client: a JSON error, and the daemon carries on.
    r = _ctl_raw(d.control, b'{"v":2,"cmd":"status"}\n')
    assert r["ok"] is False and r["code"] == "version", r
    r = _ctl_raw(d.control, b"status\n")
    assert r["ok"] is False and r["code"] == "bad-request", r
    r = _ctl_raw(d.control, b'{"v":1,"cmd":"purge","url":"http://a/","tag":"x"}\n')
    assert r["ok"] is False and "one of" in r["error"], r
    # Daemon down: 3, and what to do next.
    d.stop()
    assert not os.path.exists(d.control), "a stopped daemon removes its socket"
    rc, out, err = d.cwctl("status")
    assert rc == 3 and "cannot reach cachewarpd" in err and "is it running?" in err, (rc, err)
    open(d.control, "w").close()  # a file that is no socket: still "unreachable"
    os.unlink(d.control)
    with socket.socket(socket.AF_UNIX) as s:  # a stale socket nobody listens on
        s.bind(d.control)
    rc, out, err = d.cwctl("stats")
    assert rc == 3 and "nobody is listening" in err, (rc, err)


def test_ctl_permission_denied(env):
    """The socket is 0660: another user, not in its group, is refused (exit 3). Run as root,
    the test drops to nobody (65534) for the client."""
    o = env.origin()
    d = env.daemon(o, workers=1)
    mode = os.stat(d.control).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660, oct(mode)
    if os.getuid() != 0:
        env.note("not root: permission test runs as this user only (cannot switch uid)")
        rc, out, err = d.cwctl("status")
        assert rc == 0, err
        return
    os.chmod(env.dir, 0o711)  # nobody may reach the file, and then the socket's mode decides
    rc, out, err = cw.run_cwctl(["-s", d.control, "status"], user=65534)
    assert rc == 3 and "permission denied" in err and "control.group" in err, (rc, err)
    rc, out, err = cw.run_cwctl(["-s", d.control, "purge", "--tag", "x"], user=65534)
    assert rc == 3 and "permission denied" in err, (rc, err)
    # The group setting gives the file that group.
    d.stop()
    d2 = env.daemon(o, workers=1, name="grouped",
                    overrides={"control": {"socket": os.path.join(env.dir, "g.sock"),
                                           "group": "nogroup"}})
    st = os.stat(d2.control)
    import grp
    assert grp.getgrgid(st.st_gid).gr_name == "nogroup" and stat.S_IMODE(st.st_mode) == 0o660


def _conf_on_socket(env, o, name, sock, l1):
    """A config of its own (name, cache file l1) whose control socket is sock."""
    return env.config(origin_port=o.port, name=name,
                      overrides={"control": {"socket": sock},
                                 "cache": {"path": os.path.join(env.dir, l1), "size": "16M"}})


def test_ctl_socket_safety(env):
    o = env.origin()
    d = env.daemon(o, workers=1)
    # A second daemon on the same socket is refused, and the first keeps its socket.
    conf2 = _conf_on_socket(env, o, "cachewarpd2.conf", d.control, "l1b.mdb")
    rc, out, err = cw.run_daemon_cmd(["-c", conf2])
    assert rc == 1 and "another daemon is listening" in out + err, (rc, out, err)
    assert d.cwctl("status")[0] == 0
    # A symlink at the path is refused.
    link = os.path.join(env.dir, "link.sock")
    os.symlink("/etc/passwd", link)
    conf3 = _conf_on_socket(env, o, "c3.conf", link, "l1c.mdb")
    rc, out, err = cw.run_daemon_cmd(["-c", conf3])
    assert rc == 1 and "is a symlink" in out + err, (rc, out, err)
    # A world-writable directory without the sticky bit is refused; with it, accepted.
    wdir = os.path.join(env.dir, "open")
    os.mkdir(wdir)
    os.chmod(wdir, 0o777)
    conf4 = _conf_on_socket(env, o, "c4.conf", os.path.join(wdir, "c.sock"), "l1d.mdb")
    rc, out, err = cw.run_daemon_cmd(["-c", conf4])
    assert rc == 1, (rc, out, err)
    assert ("world-writable directory" in out + err or
            "world-writable without the sticky bit" in out + err), (rc, out, err)
    # The same directory with the sticky bit (as /tmp): accepted.
    os.chmod(wdir, 0o1777)
    d4 = env.daemon(o, workers=1, name="sticky",
                    overrides={"control": {"socket": os.path.join(wdir, "c.sock")},
                               "cache": {"path": os.path.join(env.dir, "l1e.mdb"),
                                         "size": "16M"}})
    assert d4.cwctl("status")[0] == 0
    d4.stop()
    # A file that is not a socket at the path is left alone and refused.
    plain = os.path.join(env.dir, "plain.sock")
    with open(plain, "w") as f:
        f.write("keep me\n")
    conf5 = _conf_on_socket(env, o, "c5.conf", plain, "l1f.mdb")
    rc, out, err = cw.run_daemon_cmd(["-c", conf5])
    assert rc == 1 and "is not a socket" in out + err, (rc, out, err)
    assert open(plain).read() == "keep me\n"
    # A stale socket (its daemon killed) is replaced at the next start.
    d.kill_all()
    assert os.path.exists(d.control)
    d2 = env.daemon(o, workers=1, name="again", overrides={"control": {"socket": d.control}})
    assert d2.cwctl("status")[0] == 0
    assert "replacing the stale socket" in cw.tail(d2.log_path, 100)


def test_ctl_slow_and_bad_clients_do_not_block(env):
    o = env.origin()
    d = env.daemon(o, workers=1)
    # A client that sends half a line and waits, and one that fills the line limit.
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(d.control)
    slow.sendall(b'{"v":1,"cmd":')
    big = socket.socket(socket.AF_UNIX)
    big.connect(d.control)
    big.sendall(b"x" * 16384)
    big.settimeout(5)
    reply = big.recv(4096)
    assert b"request line too long" in reply, reply
    t0 = time.monotonic()
    rc, out, err = d.cwctl("status")
    assert rc == 0 and time.monotonic() - t0 < 2, (rc, err)
    # The idle client is dropped after 5 s (CW_LIMIT_CTL_IDLE_MS).
    slow.settimeout(8)
    assert slow.recv(100) == b"", "an idle client is closed"
    # 16 clients at once, the 17th is told to try again; none of it blocks the daemon.
    many = []
    for _ in range(16):
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.control)
        many.append(s)
    time.sleep(0.2)
    extra = socket.socket(socket.AF_UNIX)
    extra.connect(d.control)
    extra.settimeout(5)
    assert b"too many control clients" in extra.recv(4096)
    assert d.get("/x").status == 200
    for s in many + [extra, slow, big]:
        s.close()
    cw.wait_for(lambda: d.cwctl("status")[0] == 0, 5, what="status after the clients left")


def test_ctl_reload_invalid_keeps_old(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 workers")
    before = set(d.workers())
    with open(d.conf, "w") as f:
        f.write(_conf_text(d, o, workers=2, route={"ttl": "3x"}))
    rc, out, err = d.cwctl("reload")
    assert rc == 1, (rc, out, err)
    assert re.search(re.escape(d.conf) + r":\d+: routes\[0\]\.ttl", err), err
    assert "running configuration stays" in err, err
    assert set(d.workers()) == before and d.get("/still").status == 200
    # check -c says the same without a daemon.
    rc, out, err = cw.run_cwctl(["check", "-c", d.conf])
    assert rc == 1 and "routes[0].ttl" in err and "is invalid" in err, (rc, err)
    with open(d.conf, "w") as f:
        f.write(_conf_text(d, o, workers=3))
    rc, out, err = cw.run_cwctl(["-c", d.conf, "check"])
    assert rc == 0 and "is ok" in out, (rc, out, err)
    rc, out, err = cw.run_cwctl(["-c", d.conf, "reload"])  # socket found through the config
    assert rc == 0 and "3 workers" in out, (rc, out, err)
    cw.wait_for(lambda: len(d.workers()) == 3 and not set(d.workers()) & before, 10,
                what="3 new workers")
    rc, out, err = cw.run_cwctl(["check", "-c", os.path.join(env.dir, "missing.conf")])
    assert rc == 1 and "missing.conf" in err, (rc, err)


class Notify:
    """A NOTIFY_SOCKET the test binds: collects the daemon's sd_notify datagrams."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.msgs = []  # (monotonic time, text)

    def drain(self, wait=0.0):
        end = time.monotonic() + wait
        while True:
            left = max(0.0, end - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                return
            self.msgs.append((time.monotonic(), self.sock.recv(4096).decode()))

    def wait(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for _, m in self.msgs:
                if pred(m):
                    return m
            self.drain(0.05)
        raise AssertionError(f"no sd_notify message {what} in {timeout}s: {self.msgs[-10:]}")

    def close(self):
        self.sock.close()


def test_ctl_sd_notify_and_watchdog(env):
    o = env.origin()
    n = Notify(os.path.join(env.dir, "notify.sock"))
    try:
        d = env.daemon(o, workers=2, env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "400000"})
        n.wait(lambda m: "READY=1" in m, 5, "READY=1")
        st = n.wait(lambda m: m.startswith("STATUS="), 5, "STATUS=")
        assert "serving on" in st and "children up" in st, st
        n.wait(lambda m: m == "WATCHDOG=1", 2, "WATCHDOG=1")
        # Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
        n.msgs.clear()
        assert d.cwctl("reload")[0] == 0
        rl = n.wait(lambda m: "RELOADING=1" in m, 5, "RELOADING=1")
        assert re.search(r"MONOTONIC_USEC=\d+", rl), rl
        n.wait(lambda m: "READY=1" in m, 5, "READY=1 after the reload")
        cw.wait_for(lambda: len(d.workers()) == 2, 5, what="2 new workers")
        # A SIGSTOPped worker withholds the watchdog; SIGCONT brings it back.
        n.drain(1.0)
        w = d.workers()[0]
        os.kill(w, signal.SIGSTOP)
        try:
            time.sleep(0.3)  # a tick in flight may still go out
            n.drain(0)
            n.msgs.clear()
            n.drain(1.5)
            pings = [m for _, m in n.msgs if m == "WATCHDOG=1"]
            assert not pings, f"WATCHDOG=1 sent while worker {w} was stopped: {n.msgs}"
            rc, out, err = d.cwctl("status")
            assert re.search(rf"^worker\s+\d+\s+{w}\s+stopped", out, re.M), out
        finally:
            os.kill(w, signal.SIGCONT)
        n.msgs.clear()
        n.wait(lambda m: m == "WATCHDOG=1", 2, "WATCHDOG=1 after SIGCONT")
        assert "withholding the systemd watchdog" in cw.tail(d.log_path, 200)
        d.stop()
        n.wait(lambda m: "STOPPING=1" in m, 2, "STOPPING=1")
    finally:
        n.close()


def _watchdog_wedge(env, thread_prefix, what):
    """Stops one thread of worker 0 whose name starts with thread_prefix (ptrace: the process
    still runs, /proc/PID/stat still says S) and checks that the supervisor withholds
    WATCHDOG=1 within about 3 s + one tick, logs why once, and cwctl status says
    not-answering; that hits are still served; and that the beat and the watchdog come back
    once the thread is released."""
    o = env.origin()
    n = Notify(os.path.join(env.dir, "notify.sock"))
    try:
        d = env.daemon(o, workers=2, env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "400000"})
        n.wait(lambda m: m == "WATCHDOG=1", 5, "WATCHDOG=1")
        w = d.workers()[0]
        tids = cw.wait_for(
            lambda: [t for t, c in cw.threads(w).items() if c.startswith(thread_prefix)], 5,
            what=f"the {thread_prefix} thread of worker {w}")
        assert d.get(f"/wedge?cc={q('max-age=60')}").status == 200  # warm: hits below
        time.sleep(1.5)  # a beat or two in the slot
        stop = cw.ThreadStop(tids[0])
        t0 = time.monotonic()
        try:
            with open(f"/proc/{w}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] != "T", "the whole process stopped"
            n.drain(0)
            n.msgs.clear()
            # The last WATCHDOG=1 before the withhold tells the detection time.
            while time.monotonic() - t0 < 8:
                n.drain(0.05)
                if "withholding the systemd watchdog" in cw.tail(d.log_path, 50):
                    break
            log = cw.tail(d.log_path, 50)
            assert "withholding the systemd watchdog" in log, log
            assert re.search(rf"worker \d+ \(pid {w}\) is not-answering \(no heartbeat", log), log
            n.drain(0.5)
            last = max((t for t, m in n.msgs if m == "WATCHDOG=1"), default=t0)
            detect = last - t0
            env.note(f"{what}: last WATCHDOG=1 {detect:.2f} s after the stop "
                     f"(withheld from then on)")
            assert 2.0 <= detect <= 4.6, f"detection after {detect:.2f} s"
            n.msgs.clear()
            n.drain(1.0)
            assert not [m for _, m in n.msgs if m == "WATCHDOG=1"], n.msgs
            rc, out, err = d.cwctl("status")
            assert re.search(rf"^worker\s+\d+\s+{w}\s+not-answering", out, re.M), out
            # Hits still served (the supervisor steers new connections to the other worker's
            # socket once this one is not-answering; a worker whose fetch loop is
            # stuck still answers hits from its MHD thread).
            for i in range(20):
                assert d.get(f"/wedge?cc={q('max-age=60')}", timeout=5).status == 200
        finally:
            stop.release()
        n.msgs.clear()
        n.wait(lambda m: m == "WATCHDOG=1", 4, "WATCHDOG=1 after the thread resumed")
        assert cw.tail(d.log_path, 400).count("withholding the systemd watchdog") == 1
    finally:
        n.close()


def test_ctl_watchdog_sees_wedged_worker(env):
    """A worker whose MHD thread is stuck while its process runs stops the heartbeat
    (workers/worker_beat.h): the watchdog is withheld (_watchdog_wedge)."""
    _watchdog_wedge(env, "cw-mhd", "wedged worker")


def test_ctl_watchdog_sees_wedged_fetch_loop(env):
    """The heartbeat's other half: a worker whose MHD thread answers but whose fetch loop
    (the cw-fetch thread: origin fetches, leases, L2) is stuck, so that every miss there would
    hang, also stops the heartbeat and the watchdog is withheld (_watchdog_wedge)."""
    _watchdog_wedge(env, "cw-fetch", "wedged fetch loop")


def test_ctl_top_in_pty(env):
    o = env.origin()
    d = env.daemon(o, workers=2)
    stop = [False]

    import threading

    def traffic():
        i = 0
        while not stop[0]:
            i += 1
            # Three URLs at 6:3:1, so that the sampled ranking has an order to get right.
            path = "/top" if i % 10 < 6 else ("/second" if i % 10 < 9 else "/third")
            try:
                d.get(f"{path}?cc={q('max-age=60')}")
            except OSError:
                pass

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(cw.binary("cwctl"), ["cwctl", "-s", d.control, "top"])
    try:
        buf = b""
        frame = None
        end = time.monotonic() + 10
        while time.monotonic() < end and frame is None:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    buf += os.read(fd, 65536)
                except OSError:
                    break
            frames = buf.split(b"\x1b[H\x1b[2J")
            for f in frames[1:]:
                m = re.search(rb"requests/s\s+([\d.]+)\s+hit ratio\s+([\d.]+) %", f)
                if (m and float(m.group(1)) > 0 and b"TOP ROUTES" in f and b"p99" in f
                        and b"TOP URLS" in f and b"/third" in f):
                    frame = f.decode()
        assert frame is not None, f"no frame with a request rate: {buf[-1500:]!r}"
        lines = frame.splitlines()
        assert len(lines) <= 24 and max(len(x) for x in lines) <= 80, frame
        assert re.search(r"hit [\d.]+", frame) and "api" in frame and "*/" in frame, frame
        # Top URLs, from the workers' sampled targets: busiest first, with a rate.
        urls = re.findall(r"^(/\w+)\?cc=max-age%3D60\s+([\d.]+)\s+([\d.]+)\r?$", frame, re.M)
        assert [u for u, _, _ in urls] == ["/top", "/second", "/third"], frame
        assert float(urls[0][1]) > 0 and 40 <= float(urls[0][2]) <= 80, frame
        env.note(re.search(r"requests/s\s+[\d.]+", frame).group(0))
        os.write(fd, b"q")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        stop[0] = True
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
        t.join(5)


def _top_frames(d, until, seconds=10):
    """Runs cwctl top in a pseudo-terminal until a frame satisfies until(frame), then types
    Ctrl-C (the terminal sends SIGINT, as over ssh); returns (frame, exit status)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(cw.binary("cwctl"), ["cwctl", "-s", d.control, "top"])
    frame = None
    try:
        buf = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end and frame is None:
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    buf += os.read(fd, 65536)
                except OSError:
                    break
            for f in buf.split(b"\x1b[H\x1b[2J")[1:]:
                if until(f.decode("utf-8", "replace")):
                    frame = f.decode("utf-8", "replace")
        os.write(fd, b"\x03")
        end = time.monotonic() + 5
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                return frame, status
            time.sleep(0.05)
        raise AssertionError("cwctl top did not exit on Ctrl-C")
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def test_ctl_shows_an_open_breaker(env):
    """An origin whose breaker is open: cwctl --json stats says "breaker": "open", and cwctl
    top's origin line says BREAKER OPEN (its rates alone would say idle); Ctrl-C quits top
    cleanly (exit 0, the terminal restored)."""
    o = env.origin()
    d = env.daemon(o, workers=1, origin_cfg={
        "timeout": "300ms", "breaker": cw.Raw('{ failures = 2; window = "10s"; cooldown = "60s"; }')})
    o.mode("hang")
    for i in range(2):
        assert d.get(f"/t{i}").status == 504
    rc, out, err = d.cwctl("--json", "stats")
    assert rc == 0, (rc, out, err)
    origins = json.loads(out)["origins"]
    assert origins[0]["name"] == "api" and origins[0]["breaker"] == "open", origins
    frame, status = _top_frames(d, lambda f: "BREAKER OPEN" in f)
    assert frame is not None and re.search(r"^api\s.*BREAKER OPEN", frame, re.M), frame
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    o.mode("normal")
