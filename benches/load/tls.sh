#!/usr/bin/env bash
# Cache-hit throughput over TLS next to plain HTTP, in the same run, and how long a
# configuration reload takes.
#
#   benches/load/tls.sh                    # 5 interleaved rounds x 10 s per protocol
#   ROUNDS=3 DURATION=5 benches/load/tls.sh
#
# Two pollgate processes in front of one pollgate-sim, identical but for [server.tls]
# (a self-signed P-256 certificate made with openssl). Each gateway is pinned to CPU 0
# (`taskset -c 0`), wrk to CPU 1; rounds alternate plain, TLS, plain, TLS, ... so drift on a
# shared machine hits both alike. wrk keeps its connections open (TLS 1.3 handshakes are
# amortised; the cost measured is record encryption, not handshakes). The page is a warm,
# 3.5 KB item list (limit=10). Medians are reported, and their ratio.
# Then POST /reload is timed 20 times (curl's total time) and the gateway's own
# took_ms is read from the answer.
#
# Needs release builds (cargo build --release -p pollgate -p pollgate-sim), wrk, openssl,
# curl, taskset. Loopback only; everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
TARGET_DIR=${TARGET_DIR:-$ROOT/target}
POLLGATE_BIN=${POLLGATE_BIN:-$TARGET_DIR/release/pollgate}
SIM_BIN=${SIM_BIN:-$TARGET_DIR/release/pollgate-sim}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TOKEN=sk-tenant-a
PATH_Q="/api/v1/beta/batch-processing/job-a-running/items?limit=10"

for tool in wrk openssl curl taskset python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
for bin in "$POLLGATE_BIN" "$SIM_BIN"; do
    [[ -x "$bin" ]] || { echo "missing $bin: cargo build --release -p pollgate -p pollgate-sim" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url [curl args]
    local url=$1; shift
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$@" "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no answer from $url" >&2; exit 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

SIM_PORT=$(free_port)
RUST_LOG=warn "$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --latency 0ms >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIM_PORT/_sim/stats"

start_gateway() { # name extra-toml
    local name=$1 extra=$2 port admin
    port=$(free_port); admin=$(free_port)
    cat >"$WORK/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
$extra
[admin]
listen = "127.0.0.1:$admin"
[upstream]
url = "http://127.0.0.1:$SIM_PORT"
[cache]
ttl = "1h"
terminal_ttl = "1h"
[log]
access_log = false
filter = "warn"
TOML
    taskset -c "$SERVER_CPU" "$POLLGATE_BIN" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "${name}_PORT=$port; ${name}_ADMIN=$admin"
}
start_gateway plain ""
start_gateway tls "[server.tls]
cert_file = \"$WORK/cert.pem\"
key_file = \"$WORK/key.pem\""
wait_http "http://127.0.0.1:$plain_ADMIN/healthz"
wait_http "http://127.0.0.1:$tls_ADMIN/healthz"

PLAIN_URL="http://127.0.0.1:$plain_PORT$PATH_Q"
TLS_URL="https://127.0.0.1:$tls_PORT$PATH_Q"
# Warm both caches; check the TLS listener really answers over TLS.
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$PLAIN_URL"
curl -fsS -o /dev/null -k -H "Authorization: Bearer $TOKEN" "$TLS_URL"
proto=$(curl -sS -o /dev/null -k -w '%{http_version} %{ssl_verify_result}' -H "Authorization: Bearer $TOKEN" "$TLS_URL")
tls_version=$(openssl s_client -connect "127.0.0.1:$tls_PORT" -servername localhost </dev/null 2>/dev/null \
    | awk '/^ *Protocol *:/ { print $3; exit } /^New, / { print $2; exit }' | tr -d ',')
echo "TLS listener answers (curl HTTP version, verify result): $proto; OpenSSL negotiates $tls_version" >&2

rps() { # url
    taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        -H "Authorization: Bearer $TOKEN" "$1" | awk '/^Requests\/sec/ { print $2 }'
}
plain=(); tls=()
for r in $(seq 1 "$ROUNDS"); do
    p=$(rps "$PLAIN_URL"); t=$(rps "$TLS_URL")
    plain+=("$p"); tls+=("$t")
    echo "round $r: plain $p req/s, TLS $t req/s" >&2
done

echo "== reload: 20 x POST /reload (the TLS gateway: config and certificate)" >&2
reload_times=(); took=()
for _ in $(seq 1 20); do
    out=$(curl -sS -X POST -w '\n%{time_total}' "http://127.0.0.1:$tls_ADMIN/reload")
    reload_times+=("$(tail -n1 <<<"$out")")
    took+=("$(head -n1 <<<"$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["took_ms"])')")
done

python3 - "$ROUNDS" "$DURATION" "$CONNS" "${plain[*]}" "${tls[*]}" "${reload_times[*]}" "${took[*]}" "$tls_version" <<'PY'
import statistics, sys
rounds, duration, conns = sys.argv[1:4]
version = sys.argv[8] or "TLS"
plain = [float(x) for x in sys.argv[4].split()]
tls = [float(x) for x in sys.argv[5].split()]
rt = [float(x) * 1000 for x in sys.argv[6].split()]
took = [float(x) for x in sys.argv[7].split()]
mp, mt = statistics.median(plain), statistics.median(tls)
print(f"warm hits, {rounds} interleaved rounds x {duration}s, wrk -c{conns}, server on 1 CPU:")
print(f"  plain HTTP/1.1 : median {mp:,.0f} req/s  (rounds: {', '.join(f'{x:,.0f}' for x in plain)})")
print(f"  {version + ' (HTTP/1.1)':<15}: median {mt:,.0f} req/s  (rounds: {', '.join(f'{x:,.0f}' for x in tls)})")
ratios = [t / p for p, t in zip(plain, tls)]
print(f"  TLS / plain    : {mt / mp:.2f} (medians); per round {', '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}")
print(f"reload (POST /reload on a TLS gateway, 20 times):")
print(f"  round trip     : median {statistics.median(rt):.2f} ms, max {max(rt):.2f} ms")
print(f"  took_ms (own)  : median {statistics.median(took):.2f} ms, max {max(took):.2f} ms")
PY
