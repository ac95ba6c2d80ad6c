#!/usr/bin/env bash
# The SDK conformance suite: the official Python and TypeScript SDKs, each generation at its
# pinned version, against pollgate in front of pollgate-sim. Prints one line per SDK
# ("python 2.19.0 (v2): N passed, M failed") and exits non-zero if any check failed.
#
# Environments are built from the committed pins (python/*/requirements.txt,
# ts/*/package-lock.json) under target/sdk-cache, keyed on the pins' hash, and reused while
# the pins are unchanged. To try a newer release in place of the pinned newest generation:
#   SDK_VERSION_PY=2.20.0 SDK_VERSION_TS=2.17.0 tests/sdk/run.sh
# SDK_SUITE_VERBOSE=1 prints each check with its time and the counts the checks measured;
# SDK_SUITES="py-v2 ts-v2" runs only those.
set -euo pipefail
cd "$(dirname "$0")/../.."
sdk=tests/sdk
cache=${SDK_CACHE_DIR:-$PWD/target/sdk-cache}
logs=$cache/logs
mkdir -p "$logs"

cargo build --workspace --bins --quiet
bin=target/debug

# Every server this run starts is listed here (one file per SDK), so an interrupted run leaves
# none behind.
cleanup() { cat "$logs"/*.pids 2>/dev/null | xargs -r kill 2>/dev/null || true; }
trap cleanup EXIT
rm -f "$logs"/*.pids

# --- Environments, one per SDK generation, built from the pins on first use.

# The first 16 hex digits of the SHA-256 of its arguments' files (plus the runtime's version).
pins_hash() { { "$1" --version; cat "${@:2}"; } | sha256sum | cut -c1-16; }

python_env() { # generation -> the venv's directory
  local gen=$1 req=$sdk/python/$1/requirements.txt dir spec
  if [[ $gen == v2 && -n ${SDK_VERSION_PY:-} ]]; then
    dir=$cache/py-v2-$SDK_VERSION_PY spec=("llama-cloud==$SDK_VERSION_PY")
  else
    dir=$cache/py-$gen-$(pins_hash python3 "$req") spec=(-r "$req")
  fi
  if [[ ! -f $dir/.ready ]]; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "${spec[@]}"
    touch "$dir/.ready"
  fi
  echo "$dir"
}

node_env() { # generation -> the node project's directory
  local gen=$1 pins=$sdk/ts/$1 dir
  if [[ $gen == v2 && -n ${SDK_VERSION_TS:-} ]]; then
    dir=$cache/ts-v2-$SDK_VERSION_TS
  else
    dir=$cache/ts-$gen-$(pins_hash node "$pins/package.json" "$pins/package-lock.json")
  fi
  if [[ ! -f $dir/.ready ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    if [[ $gen == v2 && -n ${SDK_VERSION_TS:-} ]]; then
      echo '{"private": true}' >"$dir/package.json"
      (cd "$dir" &&
        npm install --silent --no-audit --no-fund "@llamaindex/llama-cloud@$SDK_VERSION_TS")
    else
      cp "$pins/package.json" "$pins/package-lock.json" "$dir/"
      (cd "$dir" && npm ci --silent --no-audit --no-fund)
    fi
    touch "$dir/.ready"
  fi
  echo "$dir"
}

# Built side by side (a cold run is mostly downloads); each one's output kept for failures.
read -ra suites <<<"${SDK_SUITES:-py-v1 py-v2 ts-v1 ts-v2}"
for s in "${suites[@]}"; do
  case $s in
    py-*) python_env "${s#py-}" ;;
    ts-*) node_env "${s#ts-}" ;;
  esac >"$logs/$s.env" 2>"$logs/$s.setup" &
done
for s in "${suites[@]}"; do
  if ! wait -n; then
    for f in "$logs"/*.setup; do cat "$f" >&2; done
    echo "sdk suite: building an SDK environment failed" >&2
    exit 1
  fi
done

# --- Each SDK against its own sim and pollgate (the checks cancel jobs), on ephemeral ports.
# The four run side by side: most of their time is spent waiting out back-offs.

# Waits (bounded) until file $1 has a line matching $2, then prints that line.
wait_for_line() {
  local deadline=$((SECONDS + 20))
  until grep -m1 -E "$2" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || { cat "$1" >&2; echo "sdk suite: no '$2' in $1" >&2; exit 1; }
    sleep 0.05
  done
}

start_servers() { # suite -> SIM_URL, POLLGATE_URL, POLLGATE_ADMIN_URL
  local sim_log=$logs/$1.sim.log pg_log=$logs/$1.pollgate.log started
  RUST_LOG=warn,pollgate_sim=info $bin/pollgate-sim --listen 127.0.0.1:0 >"$sim_log" 2>&1 &
  echo $! >>"$logs/$1.pids"
  SIM_URL=$(wait_for_line "$sim_log" 'listening on' | grep -oE 'http://127\.0\.0\.1:[0-9]+')
  RUST_LOG=warn,pollgate=info $bin/pollgate --config $sdk/pollgate.toml --upstream "$SIM_URL" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$pg_log" 2>&1 &
  echo $! >>"$logs/$1.pids"
  started=$(wait_for_line "$pg_log" 'pollgate started')
  POLLGATE_URL=http://$(grep -oE ' listen=[0-9.:]+' <<<"$started" | cut -d= -f2)
  POLLGATE_ADMIN_URL=http://$(grep -oE ' admin=[0-9.:]+' <<<"$started" | cut -d= -f2)
  export SIM_URL POLLGATE_URL POLLGATE_ADMIN_URL
}

# A bound on one SDK's checks (they take seconds), so a hung SDK fails the run, never stalls it.
CHECKS_TIMEOUT=180s

run_suite() { # suite -> its summary line on stdout, the checks' stderr in $logs/$1.log
  local s=$1 env_dir gen=${1#*-} run
  env_dir=$(cat "$logs/$s.env")
  # Fresh log files, so that the addresses read are this run's (never the last run's).
  rm -f "$logs/$s".{sim.log,pollgate.log,log}
  start_servers "$s"
  case $s in
    py-*) run=(env -C $sdk/python PYTHONDONTWRITEBYTECODE=1
                   "$env_dir/bin/python" "check_$gen.py") ;;
    ts-*) run=(env NODE_PATH="$env_dir/node_modules" node "$sdk/ts/check_$gen.cjs") ;;
  esac
  local line status=0
  line=$(timeout "$CHECKS_TIMEOUT" "${run[@]}" 2>"$logs/$s.log") || status=$?
  echo "${line:-$s: did not finish (0 passed, 1 failed)}"
  xargs -r kill <"$logs/$s.pids" 2>/dev/null || true
  return $status
}

declare -A runs
for s in "${suites[@]}"; do
  run_suite "$s" >"$logs/$s.line" 2>"$logs/$s.err" &
  runs[$s]=$!
done
failed=0
for s in "${suites[@]}"; do
  status=0
  wait "${runs[$s]}" || status=$?
  if [[ -s $logs/$s.line ]]; then
    cat "$logs/$s.line"
  else
    echo "$s: did not start (0 passed, 1 failed)"
  fi
  if ((status)); then
    failed=1
    sed 's/^/    /' "$logs/$s.err" "$logs/$s.log" >&2
    echo "    (servers' logs: $logs/$s.sim.log, $logs/$s.pollgate.log)" >&2
  elif [[ -n ${SDK_SUITE_VERBOSE:-} ]]; then
    sed 's/^/    /' "$logs/$s.log" >&2
  fi
done
exit $failed
