#!/usr/bin/env python3
"""Cold-burst client: N identical GET requests released at the same instant.

Python 3.11+, stdlib only. All N connections are opened first (HTTP/1.1 over
asyncio.open_connection), then every request is written in the same event-loop
turn, so the server sees N concurrent requests for one (cold) cache key.

Latency is measured per request from the moment its bytes are written until
its whole body has been read (Content-Length, chunked, or read-to-EOF).
The whole run is bounded by --timeout seconds (default 10); requests still
outstanding then are counted as timeouts.

Prints one JSON object on stdout:
  {"n":500,"connected":500,"ok":500,"status":{"200":500},"errors":{},
   "timeouts":0,"p50_ms":..,"p99_ms":..,"max_ms":..,"min_ms":..,
   "connect_ms":..,"wall_ms":..,"body_bytes":{"3512":500}}

Usage:
  burst.py --port 8080 --path '/api/...?...' [--host 127.0.0.1] [-n 500]
           [-H 'Authorization: Bearer sk-tenant-a'] [--timeout 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter


def percentile(sorted_vals: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one HTTP/1.1 response; return (status, body length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        if n:
            await reader.readexactly(n)
        return status, n
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers until empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return status, total
            await reader.readexactly(size + 2)
            total += size
    if status in (204, 304) or 100 <= status < 200:
        return status, 0
    body = await reader.read()  # until EOF
    return status, len(body)


class Result:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.status: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.sizes: Counter[str] = Counter()
        self.done = 0


async def one(host: str, port: int, request: bytes, go: asyncio.Event,
              connected: list[int], res: Result) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except Exception as e:  # noqa: BLE001 - report any connect failure
        res.errors["connect:" + type(e).__name__] += 1
        return
    connected[0] += 1
    try:
        await go.wait()
        t0 = time.perf_counter()
        writer.write(request)
        await writer.drain()
        status, size = await read_response(reader)
        res.latencies.append((time.perf_counter() - t0) * 1000.0)
        res.status[str(status)] += 1
        res.sizes[str(size)] += 1
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001
        res.errors[type(e).__name__] += 1
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001
            pass


async def main_async(args: argparse.Namespace) -> dict:
    hdrs = [f"GET {args.path} HTTP/1.1", f"Host: {args.host}:{args.port}",
            "User-Agent: pollgate-burst/1", "Accept: application/json"]
    hdrs += args.header
    request = ("\r\n".join(hdrs) + "\r\n\r\n").encode("latin-1")

    res = Result()
    go = asyncio.Event()
    connected = [0]
    deadline = time.perf_counter() + args.timeout
    t_start = time.perf_counter()
    tasks = [asyncio.create_task(one(args.host, args.port, request, go, connected, res))
             for _ in range(args.n)]

    # Phase 1: wait until every connection is established (or failed), bounded.
    while connected[0] + sum(v for k, v in res.errors.items() if k.startswith("connect:")) < args.n:
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.005)
    connect_ms = (time.perf_counter() - t_start) * 1000.0

    # Phase 2: release all requests together.
    t_go = time.perf_counter()
    go.set()
    remaining = max(0.1, deadline - time.perf_counter())
    _, pending = await asyncio.wait(tasks, timeout=remaining)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    wall_ms = (time.perf_counter() - t_go) * 1000.0

    lat = sorted(res.latencies)
    ok = sum(v for k, v in res.status.items() if k.startswith("2"))

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "n": args.n,
        "connected": connected[0],
        "ok": ok,
        "status": dict(res.status),
        "errors": dict(res.errors),
        "timeouts": len(pending),
        "min_ms": r(lat[0] if lat else None),
        "p50_ms": r(percentile(lat, 50)),
        "p99_ms": r(percentile(lat, 99)),
        "max_ms": r(lat[-1] if lat else None),
        "connect_ms": r(connect_ms),
        "wall_ms": r(wall_ms),
        "body_bytes": dict(res.sizes),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("-H", "--header", action="append", default=[],
                    help="extra request header, repeatable")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("burst.py: refusing non-loopback host", file=sys.stderr)
        return 2
    out = asyncio.run(main_async(args))
    print(json.dumps(out, sort_keys=False))
    return 0 if out["ok"] == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
