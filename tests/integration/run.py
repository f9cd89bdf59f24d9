#!/usr/bin/env python3
"""Runs the CacheWarp integration suite.

    python3 tests/integration/run.py --build build/rel [-k PATTERN] [-v]

Discovers tests/integration/test_*.py and runs every function named test_* in file order,
each with a fresh cw.Env (own temp dir, own processes) and a 120 s timeout. A test passes
when it returns; it fails on any exception, on the timeout, or when stopping its processes
fails (a daemon that does not exit, or leaves a process behind). Prints `ok NAME (Xs)` or
`FAIL NAME (Xs)` with the traceback and the daemon's log tail, then one closing line
`integration: N passed, N failed`; exits 1 when anything failed.

CW_KEEP=1 keeps each test's temp dir (configs and logs) for a post-mortem.
"""

import argparse
import importlib.util
import inspect
import os
import re
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cw  # noqa: E402

TEST_TIMEOUT = 120


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise TestTimeout(f"test timed out after {TEST_TIMEOUT}s")


def discover(pattern):
    tests = []
    for fname in sorted(os.listdir(HERE)):
        if not re.fullmatch(r"test_\w+\.py", fname):
            continue
        mod_name = fname[:-3]
        spec = importlib.util.spec_from_file_location(mod_name, os.path.join(HERE, fname))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        funcs = [
            f
            for name, f in vars(mod).items()
            if name.startswith("test_") and inspect.isfunction(f) and f.__module__ == mod_name
        ]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in funcs:
            full = f"{mod_name}.{f.__name__}"
            if pattern and pattern not in full:
                continue
            tests.append((full, f))
    return tests


def run_one(name, func):
    """Runs one test: (passed, seconds, report text)."""
    env = cw.Env(func.__name__)
    t0 = time.monotonic()
    report = []
    ok = True
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        func(env)
    except BaseException as e:  # noqa: BLE001 - every failure is reported
        if isinstance(e, KeyboardInterrupt):
            signal.alarm(0)
            env.close()
            raise
        ok = False
        report.append(traceback.format_exc().rstrip())
    finally:
        signal.alarm(0)
    # Stop everything, with its own deadline: a daemon that will not stop fails the test.
    signal.alarm(60)
    try:
        env.close()
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        ok = False
        report.append("while stopping the test's processes:\n" + traceback.format_exc().rstrip())
    finally:
        signal.alarm(0)
    took = time.monotonic() - t0
    if not ok:
        tails = env.log_tails()
        if tails:
            report.append(tails)
    env.cleanup()
    if env.notes:
        report.insert(0, "; ".join(env.notes))
    return ok, took, "\n".join(report)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--build", default=os.environ.get("CW_BUILD", "build/rel"),
                    help="build folder holding bin/cachewarpd and bin/cw-test-origin")
    ap.add_argument("-k", dest="pattern", default="", help="run tests whose name contains this")
    args = ap.parse_args()
    cw.set_build(args.build)

    tests = discover(args.pattern)
    passed = failed = 0
    t_all = time.monotonic()
    for name, func in tests:
        ok, took, report = run_one(name, func)
        if ok:
            passed += 1
            print(f"ok {name} ({took:.1f}s)", flush=True)
            if report:
                print(f"    {report}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name} ({took:.1f}s)", flush=True)
            print("    " + report.replace("\n", "\n    "), flush=True)
    print(f"# {len(tests)} tests in {time.monotonic() - t_all:.1f}s", flush=True)
    print(f"integration: {passed} passed, {failed} failed", flush=True)
    return 1 if failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
