"""What the Python SDK checks share: where pollgate and the sim are, how to count what reached
each of them, and a tiny runner that prints the one summary line.

Counting is the point of most checks, so it is done outside the SDK: the sim's own counters
(`GET /_sim/stats`, what reached the upstream) and pollgate's metrics (`GET /metrics` on the
admin listener, what reached pollgate and how it was answered).
"""

import json
import os
import sys
import time
import traceback
import urllib.request

PG = os.environ["POLLGATE_URL"]
SIM = os.environ["SIM_URL"]
ADMIN = os.environ["POLLGATE_ADMIN_URL"]

TOKEN_A = "sk-tenant-a"
TOKEN_B = "sk-tenant-b"

# Bounded waits: long enough for a loaded 2-core machine, short enough to fail fast.
WAIT_LIMIT_S = 10.0


def _http(method, url):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=WAIT_LIMIT_S) as r:
        return r.read().decode()


def sim_control(path):
    """POST to one of the sim's `/_sim/...` control endpoints (never counted by the sim)."""
    return json.loads(_http("POST", SIM + path))


def clear_fault():
    _http("DELETE", SIM + "/_sim/fault")


def upstream(route):
    """Requests the sim has answered on one route (`v1_items`, `v2_get`, ...)."""
    return json.loads(_http("GET", SIM + "/_sim/stats"))["routes"][route]


def metric(series):
    """One series of pollgate's metrics, e.g. `pollgate_backoffs_started_total`."""
    wanted = series + " "
    for line in _http("GET", ADMIN + "/metrics").splitlines():
        if line.startswith(wanted):
            return int(float(line[len(wanted):]))
    return 0


def pollgate(route, result):
    """Client requests pollgate answered on `route` with `result` (hit, miss, backed_off...)."""
    return metric(f'pollgate_requests_total{{route="{route}",result="{result}"}}')


ANSWERS = ("miss", "collapsed", "hit", "stale", "backed_off", "relayed", "error")


def answers(route):
    """How pollgate has answered `route` so far, by result (for failure messages)."""
    return {result: pollgate(route, result) for result in ANSWERS}


def answers_since(route, before):
    now = answers(route)
    return ", ".join(f"{r} {now[r] - before[r]}" for r in ANSWERS if now[r] != before[r])


def report(what, counts):
    """Counts worth quoting (429, pollers); on stderr, so stdout keeps its one summary line."""
    print(f"  {what}: {counts}", file=sys.stderr)


def wait_until(what, condition):
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def dump(models):
    """Models as plain data, so pages read through pollgate compare with pages read direct."""
    return [m.model_dump(mode="json") for m in models]


def expect_equal(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


class Suite:
    """Runs checks in order; a failing check is reported on stderr and the run goes on."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, fn):
        name = fn.__name__
        started = time.monotonic()
        try:
            fn()
            self.passed += 1
            status = "ok"
        except Exception:  # noqa: BLE001 - any failure is a failed check
            self.failed += 1
            status = "FAILED"
            print(f"--- {name}\n{traceback.format_exc()}", file=sys.stderr)
        finally:
            clear_fault()
        if os.environ.get("SDK_SUITE_VERBOSE"):
            print(f"  {status} {name} ({time.monotonic() - started:.2f} s)", file=sys.stderr)
        return fn

    def finish(self, label):
        print(f"{label}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
