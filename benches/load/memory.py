#!/usr/bin/env python3
"""Memory cost of cached pages: RSS growth per cached small page.

Starts pollgate-sim and pollgate (release binaries) on 127.0.0.1, fills the cache
with N distinct small-page keys (limit=10 plus a distinct unknown parameter, which
pollgate keeps in the key and the sim ignores, so every body is the same ~3.7 KB),
and reports (RSS after - RSS before) / N against the body size.

    python3 benches/load/memory.py            # N=10000
    N=20000 python3 benches/load/memory.py
Loopback only; bounded (every request has a 10 s timeout; the run stops after N).
"""
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = int(os.environ.get("N", "10000"))
TOKEN = "sk-tenant-a"
PATH = "/api/v1/beta/batch-processing/job-a-running/items?limit=10&k={}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_up(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never came up")


def fetch(conn, i):
    conn.request("GET", PATH.format(i), headers={"Authorization": f"Bearer {TOKEN}"})
    res = conn.getresponse()
    body = res.read()
    if res.status != 200:
        raise RuntimeError(f"status {res.status}: {body[:200]!r}")
    return len(body), res.getheader("cache-status")


def main():
    sim_port, pg_port, admin_port = free_port(), free_port(), free_port()
    env = dict(os.environ, RUST_LOG="warn")
    for k in list(env):
        if k.startswith("POLLGATE_"):
            del env[k]
    workdir = tempfile.mkdtemp(prefix="pollgate-mem-")
    with open(os.path.join(workdir, "bench.toml"), "w") as f:
        f.write('[cache]\nttl = "1h"\n[log]\naccess_log = false\n')
    sim = subprocess.Popen([f"{ROOT}/target/release/pollgate-sim", "--listen", f"127.0.0.1:{sim_port}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pg = subprocess.Popen([f"{ROOT}/target/release/pollgate", "--config", "bench.toml",
                           "--listen", f"127.0.0.1:{pg_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
                           "--upstream", f"http://127.0.0.1:{sim_port}"],
                          cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(sim_port)
        wait_up(pg_port)
        conn = http.client.HTTPConnection("127.0.0.1", pg_port, timeout=10)
        # Warm up: the connection, allocator arenas, the first entries.
        for i in range(200):
            size, _ = fetch(conn, -1 - i)
        time.sleep(0.5)
        before = rss_kib(pg.pid)
        started = time.time()
        for i in range(N):
            size, status = fetch(conn, i)
            if not status.startswith("pollgate; fwd=miss; stored"):
                raise RuntimeError(f"key {i} was not stored: {status}")
        elapsed = time.time() - started
        time.sleep(0.5)
        after = rss_kib(pg.pid)
        # Every key must still be there (a hit), or the cache evicted and the number means nothing.
        _, status = fetch(conn, 0)
        if not status.startswith("pollgate; hit"):
            raise RuntimeError(f"key 0 no longer cached: {status}")
        per_entry = (after - before) * 1024 / N
        print(f"entries: {N} distinct small pages, body {size} B, filled in {elapsed:.1f} s")
        print(f"RSS before: {before} KiB, after: {after} KiB, growth: {after - before} KiB")
        print(f"RSS growth per cached page: {per_entry:.0f} B = body + {per_entry - size:.0f} B "
              f"(target: body + 1024 B) -> {'met' if per_entry - size <= 1024 else 'missed'}")
    finally:
        for p in (pg, sim):
            p.terminate()
        for p in (pg, sim):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
