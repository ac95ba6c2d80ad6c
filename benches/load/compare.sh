#!/usr/bin/env bash
# Side-by-side load comparison: pollgate vs nginx proxy_cache vs Varnish vs a
# static-file ceiling, all fronting the same pollgate-sim on 127.0.0.1.
#
#   benches/load/compare.sh                 # full run (3 rounds x 10 s per cell, ~10 min)
#   QUICK=1 benches/load/compare.sh         # smoke test (1 round x 3 s per cell, ~2 min)
#   PIN=1 benches/load/compare.sh           # servers on CPU 0, wrk -t1 on CPU 1 (1 worker each)
#   LOGS=1 benches/load/compare.sh          # access logs on, on every side (to a file)
#
# See benches/load/README.md for what is measured and the caveats. Every knob is
# an environment variable (defaults below). Nothing is built; nothing listens on
# anything but 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

# ---------------------------------------------------------------- knobs ------
if [[ "${QUICK:-0}" == 1 ]]; then
    DURATION=${DURATION:-3}
    ROUNDS=${ROUNDS:-1}
fi
DURATION=${DURATION:-10}          # seconds per wrk run
ROUNDS=${ROUNDS:-3}               # interleaved repetitions of every cell
CONNS=${CONNS:-"64 256"}          # wrk -c values
# PIN=1: every server (all its threads) on SERVER_CPU, wrk (and the sim) on LOAD_CPU
export PG_WORKERS PIN=${PIN:-0} SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1} LOGS=${LOGS:-0}
# LOGS=1: access logs on: pollgate to a file, nginx `combined` buffer=64k
# PG_WORKERS: pollgate's server.workers (default 0, one work-stealing runtime; PIN=1 sets 1,
# one event loop, the shape of nginx's one worker)
if [[ "$PIN" == 1 ]]; then
    THREADS=${THREADS:-1}
    SRV_PIN=(taskset -c "$SERVER_CPU"); LOAD_PIN=(taskset -c "$LOAD_CPU"); NGX_WORKERS=1
    PG_WORKERS=${PG_WORKERS:-1}
else
    SRV_PIN=(); LOAD_PIN=(); NGX_WORKERS=auto
fi
THREADS=${THREADS:-2}             # wrk -t
PAGES=${PAGES:-"small large"}     # small = limit=10 (~3.5 KB), large = limit=1000 (~350 KB)
TARGETS=${TARGETS:-"pollgate nginx varnish static"}
TTL=${TTL:-2}                     # cache TTL in seconds, identical for every cache
GRACE=${GRACE:-10}                # stale window: varnish grace + pollgate stale_while_revalidate (pollgate default 10s)
BURST=${BURST:-1}                 # run the cold-burst test (0 to skip)
BURST_N=${BURST_N:-500}           # concurrent identical requests per burst
BURST_LATENCY_MS=${BURST_LATENCY_MS:-200}
INSTALL=${INSTALL:-1}             # apt-get install wrk/nginx-light/varnish if missing (root only)
TOKEN=${TOKEN:-sk-tenant-a}
JOB=${JOB:-job-a-running}
ITEMS_PER_JOB=${ITEMS_PER_JOB:-2500}
POLLGATE_BIN=${POLLGATE_BIN:-$ROOT/target/release/pollgate}
SIM_BIN=${SIM_BIN:-$ROOT/target/release/pollgate-sim}
PG_EXTRA_ARGS=${PG_EXTRA_ARGS:-}  # extra pollgate flags, word-split
PG_CONFIG=${PG_CONFIG:-1}         # 1: pass a generated bench.toml (SWR=GRACE, access_log=false); 0: flags only
SIM_ITEMS_FIELD=${SIM_ITEMS_FIELD:-item_lists}   # counter in GET /_sim/stats
VARNISH_ARGS=${VARNISH_ARGS:-}    # extra varnishd args, word-split (e.g. "-p thread_pool_min=300")
KEEP_WORKDIR=${KEEP_WORKDIR:-0}
OUT=${OUT:-}                      # optional file to also write the markdown report to

AUTH="Authorization: Bearer $TOKEN"
ITEMS_PATH="/api/v1/beta/batch-processing/$JOB/items"
declare -A PAGE_PATH=([small]="$ITEMS_PATH?limit=10" [large]="$ITEMS_PATH?limit=1000")
declare -A STATIC_PATH=([small]="/small" [large]="/large")

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Rough upper bound on the whole run; a watchdog ends the script after it.
n_targets=$(wc -w <<<"$TARGETS"); n_conns=$(wc -w <<<"$CONNS"); n_pages=$(wc -w <<<"$PAGES")
EST=$(( ROUNDS * n_targets * n_conns * n_pages * (DURATION + 3) + 120 ))
MAX_SECONDS=${MAX_SECONDS:-$(( EST * 2 + 120 ))}

# ---------------------------------------------------------- prerequisites ----
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v varnishd >/dev/null || need_pkgs+=(varnish)
if ((${#need_pkgs[@]})); then
    if [[ "$INSTALL" == 1 && $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${need_pkgs[*]} with apt-get (optional step; INSTALL=0 to skip)"
        # Wait (bounded) for another apt/dpkg to release the lock.
        timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${need_pkgs[@]}" >&2 \
            || die "apt-get install ${need_pkgs[*]} failed"
        # The Debian packages start system services; we run our own instances.
        for svc in nginx varnish; do
            command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null || true
        done
    else
        die "missing ${need_pkgs[*]}: install them (apt-get install wrk nginx-light varnish) or run as root with INSTALL=1"
    fi
fi
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 (3.11+) is required for burst.py and the report"

missing_bin=()
[[ -x "$SIM_BIN" ]] || missing_bin+=("$SIM_BIN")
if [[ " $TARGETS " == *" pollgate "* && ! -x "$POLLGATE_BIN" ]]; then missing_bin+=("$POLLGATE_BIN"); fi
if ((${#missing_bin[@]})); then
    die "missing ${missing_bin[*]}; run: (cd $ROOT && cargo build --release --workspace --bins --examples)   [this script builds nothing]"
fi

read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN {exit !(l > 0.7)}'; then
    log "WARNING: load average is $load1 before starting; something else is using the CPU (cargo build?). Numbers will be noisy."
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CLK_TCK=$(getconf CLK_TCK)

# --------------------------------------------------------- process control ---
WORK=$(mktemp -d /tmp/pollgate-load.XXXXXX)
chmod 755 "$WORK"   # nginx workers / varnish child run as other users
declare -A PID=()   # target name -> pid of the process we started
WATCHDOG=

alive() {  # running (not exited, not a zombie awaiting wait)
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

descendants() {  # pid and all its descendants
    local p=$1 c
    [[ -d /proc/$p ]] || return 0
    echo "$p"
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do descendants "$c"; done
}

stop_pid() {  # TERM a pid we started, wait up to 5 s, then KILL it and its leftovers
    local p=$1 i kids
    [[ -n "$p" ]] && alive "$p" || { [[ -n "$p" ]] && wait "$p" 2>/dev/null; return 0; }
    kids=$(descendants "$p" | tail -n +2 | tr '\n' ' ')
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$p" || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
    wait "$p" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local name
    for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
    [[ -n "$WATCHDOG" ]] && stop_pid "$WATCHDOG"
    if [[ "$KEEP_WORKDIR" == 1 || $rc -ne 0 ]]; then
        log "work dir kept: $WORK (logs, rendered configs, raw wrk output)"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

( sleep "$MAX_SECONDS"; log "watchdog: run exceeded ${MAX_SECONDS}s, aborting"; kill -TERM $$ ) 2>/dev/null &
WATCHDOG=$!

USED_PORTS=" "
free_port() {  # sets FREE_PORT to a free port in 127.0.0.1:20000-32000 (below the ephemeral range)
    local p
    p=$(python3 - "$USED_PORTS" <<'PY'
import random, socket, sys
used = set(sys.argv[1].split())
for _ in range(500):
    p = random.randint(20000, 32000)
    if str(p) in used:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
)
    [[ -n "$p" ]] || die "no free port found"
    USED_PORTS+="$p "
    FREE_PORT=$p
}

wait_port() {  # wait_port PORT NAME SECONDS
    local port=$1 name=$2 secs=${3:-15} i
    for ((i = 0; i < secs * 10; i++)); do
        if [[ -n "${PID[$name]:-}" ]] && ! alive "${PID[$name]}"; then return 1; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

cpu_ticks() {  # utime+stime (clock ticks) summed over a pid and its descendants
    local total=0 p v
    for p in $(descendants "$1"); do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
        total=$(( total + ${v:-0} ))
    done
    echo "$total"
}

render() {  # render TEMPLATE OUT KEY=VALUE...
    local tmpl=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$tmpl" >"$out"
    if grep -v '^ *#' "$out" | grep -q '@[A-Z_]*@'; then die "unrendered placeholder in $out"; fi
}

sim_ctl() {  # sim_ctl METHOD PATH -> body on stdout
    curl -sS --max-time 5 -X "$1" "http://127.0.0.1:$SIM_PORT$2"
}

sim_items() {  # current value of the sim's item-list counter, or "?"
    sim_ctl GET /_sim/stats 2>/dev/null | python3 -c '
import json, sys
field = sys.argv[1]
try:
    d = json.load(sys.stdin)
except Exception:
    print("?"); sys.exit()
v = d
for part in field.split("."):
    v = v.get(part) if isinstance(v, dict) else None
print(v if isinstance(v, int) else "?")' "$SIM_ITEMS_FIELD" || echo "?"
}

# ------------------------------------------------------------------ start ----
USER_LINE=""
[[ $EUID -eq 0 ]] && USER_LINE="user root;"

free_port; SIM_PORT=$FREE_PORT
log "work dir $WORK; TTL=${TTL}s grace=${GRACE}s; ${ROUNDS} round(s) x ${DURATION}s; conns: $CONNS; pages: $PAGES"
log "starting pollgate-sim on 127.0.0.1:$SIM_PORT"
RUST_LOG=warn "${LOAD_PIN[@]}" "$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --latency 0ms --items-per-job "$ITEMS_PER_JOB" \
    >"$WORK/sim.log" 2>&1 &
PID[sim]=$!
wait_port "$SIM_PORT" sim 20 || { cat "$WORK/sim.log" >&2; die "pollgate-sim did not start"; }
log "sim stats: $(sim_ctl GET /_sim/stats || true)"
[[ "$(sim_items)" == "?" ]] && log "WARNING: field '$SIM_ITEMS_FIELD' not found in /_sim/stats; upstream counts will show '?' (set SIM_ITEMS_FIELD)"

# Reference bodies straight from the sim; these also feed the static ceiling.
mkdir -p "$WORK/static/www"
for page in small large; do
    code=$(curl -sS --max-time 10 -o "$WORK/static/www/$page.json" -w '%{http_code}' -H "$AUTH" \
        "http://127.0.0.1:$SIM_PORT${PAGE_PATH[$page]}") || code=000
    [[ "$code" == 200 ]] || die "sim answered $code for ${PAGE_PATH[$page]}: $(head -c 300 "$WORK/static/www/$page.json")"
    log "reference $page page: $(stat -c %s "$WORK/static/www/$page.json") bytes"
done
chmod -R a+rX "$WORK/static"

declare -A PORT=()
declare -A STATUS=()   # target -> "ok" | reason it is n/a

start_pollgate() {
    free_port; PORT[pollgate]=$FREE_PORT
    free_port; ADMIN_PORT=$FREE_PORT
    local dir="$WORK/pollgate" v unset_args=() cfg_args=()
    mkdir -p "$dir"   # empty cwd: no ./config.toml is picked up by accident
    # Drop any POLLGATE_* from the caller's environment so only what is below counts.
    for v in $(compgen -e | grep '^POLLGATE_' || true); do unset_args+=(-u "$v"); done
    if [[ "$PG_CONFIG" == 1 ]]; then
        # Explicit small config: stale window = varnish grace, access log off.
        # Listen/upstream/admin/ttl come from flags (flags win over the file).
        cat >"$dir/bench.toml" <<EOF
[server]
workers = ${PG_WORKERS:-0}

[cache]
stale_while_revalidate = "${GRACE}s"

[log]
access_log = $([[ "$LOGS" == 1 ]] && echo true || echo false)
access_log_path = "$dir/access.log"
EOF
        cfg_args=(--config "$dir/bench.toml")
    fi
    # shellcheck disable=SC2086
    (cd "$dir" && exec "${SRV_PIN[@]}" env "${unset_args[@]}" RUST_LOG=warn "$POLLGATE_BIN" "${cfg_args[@]}" \
        --listen "127.0.0.1:${PORT[pollgate]}" \
        --upstream "http://127.0.0.1:$SIM_PORT" \
        --admin-listen "127.0.0.1:$ADMIN_PORT" \
        --ttl "${TTL}s" \
        --log-format text $PG_EXTRA_ARGS) >"$dir/pollgate.log" 2>&1 &
    PID[pollgate]=$!
    if ! wait_port "${PORT[pollgate]}" pollgate 20 && [[ "$PG_CONFIG" == 1 ]] \
        && grep -qi 'config' "$dir/pollgate.log"; then
        log "WARNING: pollgate rejected bench.toml ($(tail -n 1 "$dir/pollgate.log")); retrying with flags only (PG_CONFIG=0)"
        stop_pid "${PID[pollgate]}"
        mv "$dir/pollgate.log" "$dir/pollgate.config-error.txt"
        PG_CONFIG=0
        start_pollgate
        return
    fi
    alive "${PID[pollgate]}" && wait_port "${PORT[pollgate]}" pollgate 1
}

start_nginx() {  # start_nginx NAME TEMPLATE
    local name=$1 tmpl=$2 dir="$WORK/$1" ngx_log=off
    [[ "$LOGS" == 1 ]] && ngx_log="$dir/access.log combined buffer=64k"
    free_port; PORT[$name]=$FREE_PORT
    mkdir -p "$dir/tmp" "$dir/cache"
    render "$tmpl" "$dir/nginx.conf" "USER_LINE=$USER_LINE" "DIR=$dir" "PORT=${PORT[$name]}" \
        "SIM_PORT=$SIM_PORT" "TTL=$TTL" "WORKERS=$NGX_WORKERS" "ACCESS_LOG=$ngx_log"
    nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" 2>>"$dir/error.log" || return 1
    "${SRV_PIN[@]}" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >>"$dir/stdout.log" 2>&1 &
    PID[$name]=$!
    wait_port "${PORT[$name]}" "$name" 15
}

start_varnish() {
    local dir="$WORK/varnish"
    free_port; PORT[varnish]=$FREE_PORT
    mkdir -p "$dir"
    render "$HERE/default.vcl.tmpl" "$dir/default.vcl" "SIM_PORT=$SIM_PORT" "TTL=$TTL" "GRACE=$GRACE"
    chmod -R a+rX "$dir"
    # -F: foreground (mgt process = our child; the cache child is its child).
    # -T none: no management port. -n: private instance dir. default_grace/ttl also
    # set so nothing falls back to the 120 s default.
    "${SRV_PIN[@]}" varnishd -F -a "127.0.0.1:${PORT[varnish]}" -T none -n "$dir/inst" -f "$dir/default.vcl" \
        -s malloc,512m -p default_ttl="$TTL" -p default_grace="$GRACE" -p default_keep=0 $VARNISH_ARGS \
        >"$dir/varnishd.log" 2>&1 &
    PID[varnish]=$!
    wait_port "${PORT[varnish]}" varnish 30
}

url_for() {  # url_for TARGET PAGE
    if [[ "$1" == static ]]; then echo "http://127.0.0.1:${PORT[static]}${STATIC_PATH[$2]}"
    else echo "http://127.0.0.1:${PORT[$1]}${PAGE_PATH[$2]}"; fi
}

log_tail() {  # last lines of a target's log(s), for diagnostics
    local f
    for f in "$WORK/$1"/*.log; do [[ -s "$f" ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
    return 0
}

warm_and_check() {  # warm a target and verify it returns the sim's bytes; per-page status
    local t=$1 page url code hdrs i good=0
    for page in $PAGES; do
        url=$(url_for "$t" "$page")
        code=000
        for i in 1 2 3; do
            code=$(curl -sS --max-time 10 -D "$WORK/$t.$page.hdr" -o "$WORK/$t.$page.body" \
                -w '%{http_code}' -H "$AUTH" "$url" 2>>"$WORK/curl.err") || code=000
            [[ "$code" == 200 ]] || break
        done
        if [[ "$code" != 200 ]]; then
            STATUS[$t:$page]="HTTP $code on warm-up"
            log "WARNING: $t answered HTTP $code for the $page page; its $page rows will be n/a ($(head -c 200 "$WORK/$t.$page.body" 2>/dev/null | tr -d '\n'))"
            continue
        fi
        STATUS[$t:$page]=ok
        good=1
        if ! cmp -s "$WORK/$t.$page.body" "$WORK/static/www/$page.json"; then
            log "WARNING: $t $page body differs from the sim's ($(stat -c %s "$WORK/$t.$page.body") vs $(stat -c %s "$WORK/static/www/$page.json") bytes)"
        fi
        hdrs=$(tr -d '\r' <"$WORK/$t.$page.hdr" | grep -iE '^(cache-status|x-cache|x-cache-status|age):' | tr '\n' ' ' || true)
        log "  $t $page: 200, $(stat -c %s "$WORK/$t.$page.body") bytes; ${hdrs:-no cache headers}"
        if [[ "$t" == pollgate && "${hdrs,,}" != *hit* ]]; then
            log "WARNING: pollgate's 3rd identical request carried no 'Cache-Status: ...hit' header"
        fi
    done
    if ((good)); then STATUS[$t]=ok; else STATUS[$t]="failed warm-up"; return 1; fi
}

for t in $TARGETS; do
    ok=0
    case $t in
        pollgate) start_pollgate && ok=1 ;;
        nginx)    start_nginx nginx "$HERE/nginx.conf.tmpl" && ok=1 ;;
        static)   start_nginx static "$HERE/nginx-static.conf.tmpl" && ok=1 ;;
        varnish)  start_varnish && ok=1 ;;
        *) die "unknown target $t (known: pollgate nginx varnish static)" ;;
    esac
    if ((ok)); then
        log "$t listening on 127.0.0.1:${PORT[$t]} (pid ${PID[$t]}); warming"
        warm_and_check "$t" || { log "WARNING: $t failed warm-up on every page; its rows will be n/a"; log_tail "$t"; }
    else
        STATUS[$t]="did not start"
        log "WARNING: $t did not start; its rows will be n/a"
        log_tail "$t"
        [[ -n "${PID[$t]:-}" ]] && stop_pid "${PID[$t]}"
        unset "PID[$t]"
    fi
done

# -------------------------------------------------------------- throughput ---
RESULTS="$WORK/results.tsv"
printf 'page\tconns\ttarget\tround\trps\tp50_ms\tp99_ms\tcpu_us_req\trequests\terrors\tupstream\tmbps\n' >"$RESULTS"

to_ms() {  # wrk duration (e.g. 512.00us, 1.23ms, 2.00s, 1.00m) -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

to_mbps() {  # wrk transfer (e.g. 43.21MB) -> MB/s
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "B") n /= 1048576; else if (u == "KB") n /= 1024; else if (u == "GB") n *= 1024;
        printf "%.1f", n }'
}

run_wrk() {  # run_wrk TARGET PAGE CONNS ROUND
    local t=$1 page=$2 c=$3 r=$4 url out c0 c1 u0 u1 rc=0
    out="$WORK/wrk.$page.c$c.$t.r$r.txt"
    if [[ "${STATUS[$t]}" != ok || "${STATUS[$t:$page]:-}" != ok ]] || ! alive "${PID[$t]}"; then
        [[ "${STATUS[$t]}" == ok ]] && ! alive "${PID[$t]}" && STATUS[$t]="process exited"
        printf '%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n' "$page" "$c" "$t" "$r" >>"$RESULTS"
        return 0
    fi
    url=$(url_for "$t" "$page")
    u0=$(sim_items); c0=$(cpu_ticks "${PID[$t]}")
    "${LOAD_PIN[@]}" timeout -k 5 $((DURATION + 30)) wrk -t"$THREADS" -c"$c" -d"${DURATION}s" --timeout 5s --latency \
        -H "$AUTH" "$url" >"$out" 2>&1 || rc=$?
    c1=$(cpu_ticks "${PID[$t]}"); u1=$(sim_items)
    local rps p50 p99 reqs non2xx sockerr transfer cpu_us upstream errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    reqs=$(awk '/ requests in / {print $1}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    transfer=$(awk '/^Transfer\/sec:/ {print $2}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sockerr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")
    errors=$(( ${non2xx:-0} + ${sockerr:-0} ))
    if [[ $rc -ne 0 || -z "$rps" || -z "$reqs" || "$reqs" == 0 ]] || (( errors * 100 > reqs )); then
        log "  $t $page c=$c round $r: FAILED (wrk rc=$rc, requests=${reqs:-0}, errors=$errors) - see $out"
        printf '%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\t%s\t%s\tNA\tNA\n' "$page" "$c" "$t" "$r" "${reqs:-0}" "$errors" >>"$RESULTS"
        return 0
    fi
    cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d * 1e6 / hz / n}')
    upstream="?"
    [[ "$u0" != "?" && "$u1" != "?" ]] && upstream=$((u1 - u0))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$page" "$c" "$t" "$r" "$rps" \
        "$(to_ms "$p50")" "$(to_ms "$p99")" "$cpu_us" "$reqs" "$errors" "$upstream" "$(to_mbps "${transfer:-0B}")" >>"$RESULTS"
    log "  $t $page c=$c round $r: ${rps} req/s, p50 $p50, p99 $p99, ${cpu_us} us CPU/req, errors $errors, upstream item lists $upstream"
}

targets_arr=($TARGETS)
nt=${#targets_arr[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    for page in $PAGES; do
        for c in $CONNS; do
            log "round $r/$ROUNDS: $page page, $c connections"
            # Rotate the target order every round so no server always runs first/last.
            for ((i = 0; i < nt; i++)); do
                t=${targets_arr[$(( (i + r - 1) % nt ))]}
                run_wrk "$t" "$page" "$c" "$r"
                sleep 1
            done
        done
    done
done

# -------------------------------------------------------------- cold burst ---
BURSTS="$WORK/burst.tsv"
printf 'target\tupstream\tmax_in_flight\tok\tp50_ms\tp99_ms\tmax_ms\tnote\n' >"$BURSTS"
if [[ "$BURST" == 1 ]]; then
    log "cold burst: sim latency ${BURST_LATENCY_MS} ms, $BURST_N concurrent identical requests per cache"
    sim_ctl POST "/_sim/latency?ms=$BURST_LATENCY_MS" >/dev/null || log "WARNING: could not set sim latency"
    sleep $((TTL + 1))   # let anything refreshed in the background settle
    # `direct`: the same burst straight at the upstream, the floor every cache is measured against.
    PORT[direct]=$SIM_PORT; STATUS[direct]=ok; PID[direct]=${PID[sim]}
    for t in $TARGETS direct; do
        [[ "$t" == static ]] && continue
        if [[ "${STATUS[$t]}" != ok ]] || ! alive "${PID[$t]}"; then
            printf '%s\tNA\tNA\tNA\tNA\tNA\tNA\t%s\n' "$t" "${STATUS[$t]:-not running}" >>"$BURSTS"
            continue
        fi
        key="burst-$t-$$-$RANDOM"
        path="${PAGE_PATH[small]}&burst=$key"
        # Reset the sim's counters so item_lists / max_in_flight cover this burst only
        # (nothing else is sending traffic now; older keys are not being refreshed).
        sim_ctl POST /_sim/reset >/dev/null 2>&1 || true
        u0=$(sim_items)
        bout="$WORK/burst.$t.json"
        # The Rust client (examples/burst.rs) when built: its per-response cost is microseconds,
        # so it measures the servers, not itself. burst.py is the dependency-free fallback.
        if [[ -x "$ROOT/target/release/examples/burst" ]]; then
            timeout -k 5 40 "$ROOT/target/release/examples/burst" "127.0.0.1:${PORT[$t]}" "$path" "$BURST_N" \
                "$AUTH" >"$bout" 2>"$WORK/burst.$t.err" || true
        else
            timeout -k 5 40 python3 "$HERE/burst.py" --port "${PORT[$t]}" --path "$path" -n "$BURST_N" \
                -H "$AUTH" --timeout 10 >"$bout" 2>"$WORK/burst.$t.err" || true
        fi
        sleep 0.5
        u1=$(sim_items)
        stats=$(sim_ctl GET /_sim/stats 2>/dev/null || echo '{}')
        python3 - "$t" "$u0" "$u1" "$bout" "$stats" >>"$BURSTS" <<'PY'
import json, sys
t, u0, u1, path, stats = sys.argv[1:6]
up = str(int(u1) - int(u0)) if u0.lstrip("-").isdigit() and u1.lstrip("-").isdigit() else "?"
try:
    mif = json.loads(stats).get("max_in_flight", "?")
except Exception:
    mif = "?"
try:
    b = json.load(open(path))
except Exception as e:
    print(f"{t}\t{up}\t{mif}\tNA\tNA\tNA\tNA\tburst client failed ({type(e).__name__})")
    sys.exit()
note = []
bad = {k: v for k, v in b["status"].items() if not k.startswith("2")}
if bad: note.append("status " + ",".join(f"{k}x{v}" for k, v in bad.items()))
if b["errors"]: note.append("errors " + ",".join(f"{k}x{v}" for k, v in b["errors"].items()))
if b["timeouts"]: note.append(f"{b['timeouts']} timed out")
if b["connected"] < b["n"]: note.append(f"only {b['connected']} connected")
f = lambda x: "NA" if x is None else f"{x:.1f}"
print(f"{t}\t{up}\t{mif}\t{b['ok']}/{b['n']}\t{f(b['p50_ms'])}\t{f(b['p99_ms'])}\t{f(b['max_ms'])}\t{'; '.join(note)}")
PY
        log "  $t: $(tail -n 1 "$BURSTS" | tr '\t' ' ')"
    done
    sim_ctl POST "/_sim/latency?ms=0" >/dev/null || true
    # `direct` is the sim under another name: stopped once, as the sim.
    unset 'PID[direct]'
fi

# pollgate's own view (cache hits/misses, coalescing), kept for the curious.
if [[ "${STATUS[pollgate]:-}" == ok ]] && alive "${PID[pollgate]}"; then
    if curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$WORK/pollgate/metrics.txt" 2>/dev/null; then
        log "pollgate /metrics after the run (non-zero cache/upstream series; full dump in $WORK/pollgate/metrics.txt):"
        grep -v '^#' "$WORK/pollgate/metrics.txt" | grep -iE 'cache|hit|miss|coalesc|upstream' \
            | awk '$NF != 0' | head -n 25 | sed 's/^/    /' >&2 || true
    else
        log "WARNING: could not read pollgate /metrics on 127.0.0.1:$ADMIN_PORT"
    fi
fi

# ------------------------------------------------------------------ report ---
python3 - "$RESULTS" "$BURSTS" "$TTL" "$DURATION" "$ROUNDS" "$THREADS" "$BURST_N" "$BURST_LATENCY_MS" \
    "$(nproc)" "$TARGETS" "$(declare -p STATUS)" "$(stat -c %s "$WORK/static/www/small.json")" \
    "$(stat -c %s "$WORK/static/www/large.json")" "$load1" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY' | { if [[ -n "$OUT" ]]; then tee "$OUT"; else cat; fi; }
import csv, statistics, sys
from collections import defaultdict
res, bursts, ttl, dur, rounds, threads, burst_n, burst_lat, ncpu, targets, status_decl, small_b, large_b, load_start, load_end = sys.argv[1:16]
targets = targets.split()
status = {}
# parse `declare -A STATUS=([k]="v" ...)`
import re
for k, v in re.findall(r'\[([^\]]+)\]="([^"]*)"', status_decl):
    status[k] = v

rows = defaultdict(list)
order = []
with open(res) as f:
    for r in csv.DictReader(f, delimiter="\t"):
        key = (r["page"], int(r["conns"]))
        if key not in order:
            order.append(key)
        rows[key + (r["target"],)].append(r)

def med(vals):
    vals = [float(v) for v in vals if v not in ("NA", "?", "")]
    return statistics.median(vals) if vals else None

def fmt(v, nd=0):
    return "n/a" if v is None else f"{v:,.{nd}f}"

label = {"pollgate": "pollgate", "nginx": "nginx proxy_cache", "varnish": "Varnish",
         "static": "static file (ceiling)", "direct": "direct to the upstream (no cache)"}
size = {"small": f"small page (limit=10, {int(small_b):,} B)", "large": f"large page (limit=1000, {int(large_b):,} B)"}

import datetime
print(f"\n## pollgate load comparison ({datetime.datetime.now():%Y-%m-%d %H:%M})\n")
import os
if os.environ.get("PIN") == "1":
    print(f"Pinned: every server (all its threads; nginx 1 worker, pollgate server.workers = "
          f"{os.environ.get('PG_WORKERS')}) on CPU {os.environ.get('SERVER_CPU')}, "
          f"wrk -t{threads} on CPU {os.environ.get('LOAD_CPU')}. ", end="")
else:
    print(f"{ncpu} CPUs shared by wrk (-t{threads}) and the server under test. ", end="")
print("Access logs " + ("ON (pollgate to a file; nginx `combined` buffer=64k; Varnish has none in-process). "
      if os.environ.get("LOGS") == "1" else "off on every server. ") + "Loopback only. "
      f"TTL {ttl}s for every cache (so at most ~1 upstream fetch per {ttl}s per cache: negligible). "
      f"{rounds} round(s) x {dur}s per cell, targets interleaved; medians over rounds; upstream fetches summed over rounds. "
      f"CPU = server utime+stime (all its processes) / requests completed. "
      f"Load average before/after: {load_start}/{load_end}"
      + (" - the box was busy, numbers are noisy" if max(float(load_start), float(load_end)) > 3.5 else "") + ".\n")
for page, conns in order:
    print(f"### {size.get(page, page)}, {conns} connections\n")
    print("| server | req/s (median) | req/s range | p50 ms | p99 ms | CPU µs/req | MB/s | vs nginx | errors | upstream fetches |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = med(r["rps"] for r in rows.get((page, conns, "nginx"), []))
    for t in targets:
        rs = rows.get((page, conns, t), [])
        rps = med(r["rps"] for r in rs)
        good = [float(r["rps"]) for r in rs if r["rps"] != "NA"]
        rng = f"{min(good):,.0f}–{max(good):,.0f}" if len(good) > 1 else ("n/a" if not good else "–")
        ratio = "n/a" if rps is None or not base else f"{rps / base:.2f}x"
        errs = sum(int(r["errors"]) for r in rs if r["errors"] not in ("NA", ""))
        ups = [r["upstream"] for r in rs if r["upstream"] not in ("NA", "?", "")]
        up = str(sum(int(u) for u in ups)) if ups and t != "static" else ("–" if t == "static" else "?")
        name = label.get(t, t)
        if rps is None:
            up = "n/a"
            why = status.get(t, "failed")
            if why == "ok":
                why = status.get(f"{t}:{page}", "ok")
            name += f" ({why})" if why != "ok" else " (run failed)"
        print(f"| {name} | {fmt(rps)} | {rng} | {fmt(med(r['p50_ms'] for r in rs), 2)} | "
              f"{fmt(med(r['p99_ms'] for r in rs), 2)} | {fmt(med(r['cpu_us_req'] for r in rs), 1)} | "
              f"{fmt(med(r['mbps'] for r in rs), 0)} | {ratio} | {errs if rs and rps is not None else 'n/a'} | {up} |")
    print()

with open(bursts) as f:
    brs = list(csv.DictReader(f, delimiter="\t"))
if brs:
    print(f"### cold burst: {burst_n} concurrent identical requests on a cold key, sim latency {burst_lat} ms\n")
    print("| server | upstream item-list fetches | upstream max in flight | 2xx | p50 ms | p99 ms | max ms | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for b in brs:
        cells = [("n/a" if b[k] == "NA" else b[k]) for k in
                 ("upstream", "max_in_flight", "ok", "p50_ms", "p99_ms", "max_ms")]
        print(f"| {label.get(b['target'], b['target'])} | " + " | ".join(cells) + f" | {b['note']} |")
    print()
PY
log "done (raw wrk output and logs: $WORK$( [[ "$KEEP_WORKDIR" == 1 ]] || echo ', removed on exit; KEEP_WORKDIR=1 keeps it'))"
