#!/usr/bin/python3
"""Runs switchd's integration tests.

    SWITCHD_BUILD=build /usr/bin/python3 tests/integration/run.py [-k PATTERN]...

Discovers `def test_xxx(ctx)` in tests/integration/test_*.py (files in name
order, tests in file order), runs each with a fresh harness.Context, and ends
with the line `N passed, N failed` (exit status 1 if any failed). A test fails
on an exception, on exceeding its time limit (harness.timeout, default 30 s),
or when switchd does not exit with status 0 on SIGTERM or its stderr holds a
sanitizer report. With SWITCHD_BUILD=build-asan the sanitizer options are set
by the harness.

  -k PATTERN   run only tests whose name (or file:name) contains PATTERN, or
               matches it as a regular expression; repeatable (any matches)
  -x           stop at the first failure
  --list       list the selected tests and exit
  --keep       keep the temporary folders of failed tests
"""

import argparse
import importlib.util
import os
import re
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

DEFAULT_TIMEOUT = 30


def _import_failure(modname, tb):
    def test_import(ctx):
        raise AssertionError("%s.py does not import:\n%s" % (modname, tb))
    test_import.__module__ = modname
    return test_import


def discover():
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        modname = fn[:-3]
        spec = importlib.util.spec_from_file_location(modname, os.path.join(HERE, fn))
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:  # noqa: a broken file is one failed test, not a crash
            tests.append((modname, _import_failure(modname, traceback.format_exc())))
            continue
        funcs = [f for n, f in vars(mod).items()
                 if n.startswith("test_") and callable(f)
                 and getattr(f, "__module__", None) == modname]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in funcs:
            tests.append((modname, f))
    return tests


def selected(tests, patterns):
    if not patterns:
        return tests
    out = []
    for mod, f in tests:
        full = "%s:%s" % (mod, f.__name__)
        for p in patterns:
            if p in full:
                out.append((mod, f))
                break
            try:
                if re.search(p, full):
                    out.append((mod, f))
                    break
            except re.error:
                pass
    return out


def on_alarm(signum, frame):
    raise harness.TestTimeout("test exceeded its time limit")


def run_one(mod, f, keep):
    name = f.__name__
    limit = getattr(f, "timeout", DEFAULT_TIMEOUT) * (2 if harness.is_asan() else 1)
    ctx = harness.Context(name)
    err = None
    t0 = time.time()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(limit) + 1)
    try:
        f(ctx)
    except BaseException as e:  # noqa: the test failed, whatever it raised
        if isinstance(e, KeyboardInterrupt):
            signal.alarm(0)
            ctx.teardown()
            raise
        err = traceback.format_exc()
    finally:
        signal.alarm(0)
    # Teardown has its own bounded waits; give it a fresh alarm in case.
    signal.alarm(int(30 * harness.SLOW))
    try:
        exit_errors = ctx.teardown()
    except harness.TestTimeout:
        exit_errors = ["teardown exceeded its time limit"]
    finally:
        signal.alarm(0)
    dt = time.time() - t0
    failed = err is not None or bool(exit_errors)
    if failed:
        print("FAIL %s:%s (%.1fs)" % (mod, name, dt))
        if err:
            print(err.rstrip())
        for e in exit_errors:
            print("switchd exit: %s" % e)
        rep = ctx.report()
        if rep:
            print(rep)
        if keep:
            print("(kept %s)" % ctx.dir)
        print(flush=True)
    else:
        print("ok   %s:%s (%.1fs)" % (mod, name, dt), flush=True)
    ctx.cleanup(keep=failed and keep)
    return not failed


def main():
    ap = argparse.ArgumentParser(description="switchd integration tests")
    ap.add_argument("-k", action="append", default=[], metavar="PATTERN")
    ap.add_argument("-x", action="store_true", help="stop at the first failure")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tests = selected(discover(), args.k)
    if args.list:
        for mod, f in tests:
            print("%s:%s" % (mod, f.__name__))
        return 0

    binary = harness.binary()
    print("switchd integration tests: %d tests, binary %s%s" % (
        len(tests), binary, " (ASan+UBSan)" if harness.is_asan() else ""), flush=True)
    if not os.access(binary, os.X_OK):
        print("warning: %s is not an executable file; every test will fail" % binary,
              flush=True)
    passed = failed = 0
    failures = []
    t0 = time.time()
    for mod, f in tests:
        if run_one(mod, f, args.keep):
            passed += 1
        else:
            failed += 1
            failures.append("%s:%s" % (mod, f.__name__))
            if args.x:
                break
    if failures:
        print("failed: " + " ".join(failures))
    print("time: %.1fs" % (time.time() - t0))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
