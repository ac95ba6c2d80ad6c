#!/usr/bin/env bash
# User-space CPU instructions per cache hit (valgrind callgrind "Ir"): pollgate vs nginx
# proxy_cache, each with its access log off and on. Instruction counts do not depend on other
# load on the machine, so this is the stable efficiency figure on a shared box.
#
#   benches/load/instr-per-hit.sh                  # pollgate and nginx, logs off and on
#   PG_ONLY=1 benches/load/instr-per-hit.sh        # pollgate only (quick check of a change)
#   PROFILE=profiling ANNOTATE=1 benches/load/...  # a profile with line tables, and the top
#                                                  # functions (callgrind_annotate) per run
#
# pollgate runs twice per log setting: with the default runtime (server.workers = 0) and with
# one event loop (server.workers = 1, the shape of nginx's single worker measured here).
#
# Method (the same as ../shared/tools/instr-per-hit.sh): start the server under callgrind, send
# 50 warm-up hits on one keep-alive connection, zero the counters, send N hits (default 3000) of
# the small page (limit=10, 3.7 KB; `PAGE` overrides the path), dump; Ir of the dump / N.
# pollgate writes its access lines to a file (log.access_log_path); nginx uses `combined`
# with `buffer=64k`. Kernel work (syscalls, copies) is not counted.
# Needs valgrind, nginx, python3, curl; built binaries (cargo build --release --workspace).
set -u
cd "$(dirname "$0")/../.."
N=${N:-3000}
PROFILE=${PROFILE:-release}
PAGE=${PAGE:-/api/v1/beta/batch-processing/job-a-running/items?limit=10}
PG="target/$PROFILE/pollgate"; SIM="target/$PROFILE/pollgate-sim"
for b in "$PG" "$SIM"; do [ -x "$b" ] || { echo "missing $b: cargo build --profile $PROFILE --workspace" >&2; exit 2; }; done
need="valgrind callgrind_control python3 curl"; [ -n "${PG_ONLY:-}" ] || need="$need nginx"
for c in $need; do command -v "$c" >/dev/null || { echo "missing $c (apt-get install -y valgrind nginx curl)" >&2; exit 2; }; done
work=$(mktemp -d); SIMPID=
trap '[ -n "$SIMPID" ] && kill $SIMPID 2>/dev/null; rm -rf "$work"' EXIT
"$SIM" --listen 127.0.0.1:18201 >"$work/sim.log" 2>&1 & SIMPID=$!
for _ in $(seq 1 50); do curl -s -o /dev/null http://127.0.0.1:18201/_sim/stats && break; sleep 0.1; done

client() { python3 - "$1" "$2" "$PAGE" <<'PY'
import http.client, sys
port, n, page = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
h = {"Authorization": "Bearer sk-tenant-a"}
for _ in range(n):
    c.request("GET", page, headers=h)
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit(f"status {r.status}")
PY
}

# run_one LABEL PORT READY_URL CMD...
run_one() {
  local label=$1 port=$2 ready=$3; shift 3
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$label.%p" "$@" >"$work/$label.log" 2>&1 &
  local vg=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null "$ready" && break; sleep 0.2; done
  client "$port" 50 || { echo "$label: warm-up failed"; kill $vg; return; }
  callgrind_control -z $vg >/dev/null
  client "$port" "$N"
  callgrind_control -d $vg >/dev/null
  sleep 0.5; kill $vg; wait $vg 2>/dev/null
  local f; f=$(ls "$work"/cg.$label.*.1 2>/dev/null | head -1)
  local ir; ir=$(grep -h "^summary:\|^totals:" "$f" 2>/dev/null | head -1 | awk '{print $2}')
  printf '%-22s %8d instructions/hit\n' "$label" "$(( ${ir:-0} / N ))"
  if [ -n "${ANNOTATE:-}" ] && [ -n "$f" ]; then
    callgrind_annotate --threshold=90 "$f" 2>/dev/null | sed -n '/file:function/,$p' | head -40 | cut -c1-150
  fi
}

for log in false true; do
  # server.workers: 0 (the default, one work-stealing runtime) and 1 (one event loop, like
  # nginx's one worker); WORKERS="0" measures the default only.
  for w in ${WORKERS:-0 1}; do
    printf '[server]\nworkers = %s\n[log]\naccess_log = %s\naccess_log_path = "%s"\n' \
      "$w" $log "$work/pg-access-$log-$w.log" >"$work/pg-$log-$w.toml"
    run_one "pollgate_w${w}_log_$log" 18203 http://127.0.0.1:18293/healthz \
      "$PG" serve --config "$work/pg-$log-$w.toml" --listen 127.0.0.1:18203 --admin-listen 127.0.0.1:18293 \
      --upstream http://127.0.0.1:18201 --ttl 3600s
    if [ $log = true ]; then
      lines=$(wc -l <"$work/pg-access-$log-$w.log" 2>/dev/null || echo 0)
      echo "  (pollgate wrote $lines access lines)"
    fi
  done
  [ -n "${PG_ONLY:-}" ] && continue
  mkdir -p "$work/ngx-$log/cache" "$work/ngx-$log/tmp"
  if [ $log = true ]; then al="access_log $work/ngx-$log/access.log combined buffer=64k;"; else al="access_log off;"; fi
  cat >"$work/ngx-$log/nginx.conf" <<NGX
worker_processes 1; master_process off; daemon off;
pid $work/ngx-$log/nginx.pid; error_log $work/ngx-$log/error.log warn;
events { worker_connections 1024; }
http {
  $al
  keepalive_requests 1000000;
  client_body_temp_path $work/ngx-$log/tmp/b; proxy_temp_path $work/ngx-$log/tmp/p;
  proxy_cache_path $work/ngx-$log/cache levels=1:2 keys_zone=api:16m inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:18201; keepalive 8; }
  server {
    listen 127.0.0.1:18213;
    location / {
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache api; proxy_cache_key "\$http_authorization|\$request_uri";
      proxy_cache_valid 200 3600s; proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;
      proxy_cache_lock on;
    }
  }
}
NGX
  run_one "nginx_log_$log" 18213 http://127.0.0.1:18213/ nginx -c "$work/ngx-$log/nginx.conf"
done
