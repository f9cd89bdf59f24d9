#!/usr/bin/env python3
"""Mutation harness: proves that the suite fails when a pinned behaviour breaks.

    python3 tests/mutate/mutate.py [--build build/rel] [--only NAME] [--no-baseline] [--keep]

Each tests/mutate/mutants/<name>.mut is one named, minimal edit that breaks one behaviour,
written as (file, exact anchor text, replacement) so that it does not depend on line numbers,
plus the tests expected to catch it. For each mutant the harness copies the tree (the files
git knows, tracked or new, and the release build folder with its timestamps, so that only
the mutated file is recompiled) into a temp dir, applies the edit, runs `make all` there, and
runs only the tests the mutant lists. The mutant is KILLED when at least one listed test
fails, SURVIVED when all pass, and ERROR when an anchor is not found exactly once or the
build fails. First (unless --no-baseline) every listed test runs on an unmutated copy and
must pass: a test that fails anyway would "kill" every mutant.

Exit status: 0 when every mutant is killed; 1 when one survived or was an ERROR (the table
says which, with the tests that caught each).

Mutant file format (lines starting with # are comments; blocks may repeat for several edits):

    name: coalescing-off
    breaks: one line saying which behaviour the edit breaks
    tests: test_foundation.test_one_origin_request_for_many_clients unit:test_store_lease
    @@ workers/req_hit.c
    <<<
    exact anchor text (one or more lines, found exactly once in the file)
    ===
    replacement text
    >>>

A test is `unit:<binary>` (build/rel/tests/<binary>, killed on a non-zero exit) or an
integration test `<file>.<function>` (run by tests/integration/run.py -k). When the code is
reshaped and an anchor moves, update the anchor: the run reports it as an ERROR until then.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MUTANTS = os.path.join(HERE, "mutants")


class MutantError(Exception):
    pass


def parse_mutant(path):
    """{name, breaks, tests, edits: [(file, anchor, replacement)]} of one .mut file."""
    m = {"name": os.path.basename(path)[:-4], "breaks": "", "tests": [], "edits": []}
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("@@ "):
            target = line[3:].strip()
            if i + 1 >= len(lines) or lines[i + 1] != "<<<":
                raise MutantError(f"{path}:{i + 2}: '<<<' expected after '@@ {target}'")
            j = i + 2
            anchor, repl = [], []
            cur = anchor
            while j < len(lines) and lines[j] != ">>>":
                if lines[j] == "===" and cur is anchor:
                    cur = repl
                else:
                    cur.append(lines[j])
                j += 1
            if j >= len(lines) or cur is anchor:
                raise MutantError(f"{path}:{i + 1}: edit without '===' and '>>>'")
            m["edits"].append((target, "\n".join(anchor), "\n".join(repl)))
            i = j + 1
            continue
        if line.startswith("#") or not line.strip():
            i += 1
            continue
        k, sep, v = line.partition(":")
        if not sep or k.strip() not in ("name", "breaks", "tests"):
            raise MutantError(f"{path}:{i + 1}: unexpected line {line!r}")
        k, v = k.strip(), v.strip()
        m[k] = v.split() if k == "tests" else v
        i += 1
    if not m["edits"] or not m["tests"]:
        raise MutantError(f"{path}: a mutant needs at least one edit and one test")
    return m


def tree_files():
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], check=True, capture_output=True).stdout
    return [f for f in out.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def make_copy(build):
    """A scratch copy of the tree and of the build folder (timestamps kept)."""
    dst = tempfile.mkdtemp(prefix="cw-mutate-")
    for f in tree_files():
        os.makedirs(os.path.join(dst, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), os.path.join(dst, f))
    src_build = os.path.join(ROOT, build)
    if os.path.isdir(src_build):
        shutil.copytree(src_build, os.path.join(dst, build), symlinks=True)
    return dst


def apply_edits(tree, m):
    for target, anchor, repl in m["edits"]:
        path = os.path.join(tree, target)
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as e:
            raise MutantError(f"{target}: {e.strerror}") from None
        n = text.count(anchor)
        if n != 1:
            first = anchor.strip().split("\n")[0][:70]
            raise MutantError(f"{target}: anchor found {n} times, want 1: {first!r}")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(anchor, repl))
        # Newer than its object, whose copy kept the (earlier) build time.
        now = time.time()
        os.utime(path, (now, now))


def build_tree(tree, build, log):
    r = subprocess.run(["make", "-C", tree, "--no-print-directory", "-j2", "all",
                        f"BUILD={build}"], stdout=log, stderr=subprocess.STDOUT)
    return r.returncode == 0


def run_test(tree, build, test, log):
    """True when the test passed."""
    if test.startswith("unit:"):
        cmd = [os.path.join(tree, build, "tests", test[5:])]
        env = dict(os.environ, CK_DEFAULT_TIMEOUT=os.environ.get("CK_DEFAULT_TIMEOUT", "30"))
    else:
        cmd = [sys.executable, os.path.join(tree, "tests", "integration", "run.py"),
               "--build", os.path.join(tree, build), "-k", test]
        env = dict(os.environ)
    log.write(f"\n==== {test}\n".encode())
    log.flush()
    r = subprocess.run(cmd, cwd=tree, stdout=log, stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0:
        return False
    if not test.startswith("unit:"):
        # run.py exits 1 when nothing matched too; make sure the test really ran and passed.
        with open(log.name, "rb") as f:
            tail = f.read()[-4000:].decode("utf-8", "replace")
        m = re.findall(r"integration: (\d+) passed, (\d+) failed", tail)
        if not m or m[-1][0] == "0":
            raise MutantError(f"integration test {test!r} matched nothing")
    return True


def main():
    ap = argparse.ArgumentParser(description="mutation harness (see the module docstring)")
    ap.add_argument("--build", default="build/rel", help="release build folder to reuse")
    ap.add_argument("--only", action="append", default=[], help="run only this mutant")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies and logs")
    args = ap.parse_args()

    files = sorted(f for f in os.listdir(MUTANTS) if f.endswith(".mut"))
    mutants, rows, failed = [], [], False
    for f in files:
        try:
            m = parse_mutant(os.path.join(MUTANTS, f))
        except MutantError as e:
            rows.append((f[:-4], "ERROR", str(e)))
            failed = True
            continue
        if args.only and m["name"] not in args.only:
            continue
        mutants.append(m)

    logdir = tempfile.mkdtemp(prefix="cw-mutate-logs-")
    print(f"mutate: {len(mutants)} mutants; logs in {logdir}", flush=True)

    if not args.no_baseline and mutants:
        tree = make_copy(args.build)
        with open(os.path.join(logdir, "baseline.log"), "wb") as log:
            if not build_tree(tree, args.build, log):
                print(f"mutate: the unmutated tree does not build: {log.name}")
                return 1
            tests = sorted({t for m in mutants for t in m["tests"]})
            bad = []
            for t in tests:
                try:
                    if not run_test(tree, args.build, t, log):
                        bad.append(t)
                except MutantError as e:
                    bad.append(f"{t} ({e})")
        if not args.keep:
            shutil.rmtree(tree, ignore_errors=True)
        if bad:
            print(f"mutate: listed tests fail WITHOUT a mutant (fix them first): {bad}; "
                  f"see {os.path.join(logdir, 'baseline.log')}")
            return 1
        print(f"mutate: baseline: {len(tests)} listed tests pass unmutated", flush=True)

    for m in mutants:
        t0 = time.monotonic()
        tree = make_copy(args.build)
        log_path = os.path.join(logdir, f"{m['name']}.log")
        with open(log_path, "wb") as log:
            try:
                apply_edits(tree, m)
                if not build_tree(tree, args.build, log):
                    raise MutantError(f"build failed, see {log_path}")
                caught = [t for t in m["tests"] if not run_test(tree, args.build, t, log)]
            except MutantError as e:
                rows.append((m["name"], "ERROR", str(e)))
                failed = True
                caught = None
        if caught is not None:
            if caught:
                rows.append((m["name"], "killed", " ".join(caught)))
            else:
                rows.append((m["name"], "SURVIVED", f"none of {' '.join(m['tests'])}"))
                failed = True
        print(f"mutate: {m['name']}: {rows[-1][1]} ({time.monotonic() - t0:.0f}s)", flush=True)
        if not args.keep:
            shutil.rmtree(tree, ignore_errors=True)

    w = max([len(r[0]) for r in rows] + [6])
    print(f"\n{'mutant':<{w}}  {'result':<8}  tests that caught it")
    for name, result, detail in rows:
        print(f"{name:<{w}}  {result:<8}  {detail}")
    killed = sum(1 for r in rows if r[1] == "killed")
    print(f"\nmutate: {killed} killed, {len(rows) - killed} survived or ERROR")
    if not args.keep and not failed:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
