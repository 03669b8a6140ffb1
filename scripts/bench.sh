#!/usr/bin/env bash
# The whole comparison in one command: latchkey against the Express baseline
# in bench/express-seed, in its faithful form (string secrets, one process) and
# its strongest form (KeyObject secrets, 2 cluster workers), same load
# generator, same run; plus bare Argon2id hashing on all cores, the
# ceiling of any login; the servers' CPU per request measured. Prints a
# Markdown table on stdout (progress on stderr).
#
#   scripts/bench.sh
#   DURATION=10 CONNECTIONS=32 RUNS=3 scripts/bench.sh
#
# Settings (environment):
#   DURATION        seconds measured per scenario (default 10)
#   CONNECTIONS     keep-alive connections = virtual users (default 32)
#   WARMUP          seconds of load before each measured window (default 2)
#   RUNS            rounds of everything; the table shows the median (default 1)
#   SCENARIOS       comma-separated, of me,refresh,login (default all three)
#   TARGETS         space-separated, of latchkey (SQLite), latchkey-pg (one
#                   node on PostgreSQL), latchkey-pg-2nodes (two nodes on one
#                   PostgreSQL database, virtual users spread over them),
#                   express-faithful, express-strongest (default all five)
#   HASH            0 skips the bare Argon2id measurement (default 1)
#   CLIENT_THREADS  worker threads of the load generator (default 1)
#   RESULTS         also copy the raw JSON lines to this file
#   CARGO_TARGET_DIR  where cargo builds (default: the workspace's target/)
#   SERVER_LOG      RUST_LOG for latchkey while measured (default warn)
#
# Everything listens on 127.0.0.1 only, and everything started here is
# stopped on exit. The baseline's sources (server.js, package.json,
# package-lock.json) are copied from bench/express-seed to a fresh temporary
# folder and installed there with `npm ci`, at the exact versions of the lock
# file: every run starts from a clean install, and nothing is written into the
# repository (any node_modules/ left in bench/express-seed by hand is ignored
# by git and never copied).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP="${WARMUP:-2}"
RUNS="${RUNS:-1}"
SCENARIOS="${SCENARIOS:-me,refresh,login}"
TARGETS="${TARGETS:-latchkey latchkey-pg latchkey-pg-2nodes express-faithful express-strongest}"
HASH="${HASH:-1}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
BASELINE_SRC="$ROOT/bench/express-seed"
BASELINE_FILES=(server.js package.json package-lock.json)

for v in DURATION CONNECTIONS WARMUP RUNS CLIENT_THREADS; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "bench.sh: $v must be a positive integer, got '${!v}'" >&2
        exit 2
    fi
done
for t in $TARGETS; do
    case "$t" in
        latchkey | latchkey-pg | latchkey-pg-2nodes | express-faithful | express-strongest) ;;
        *) echo "bench.sh: unknown target '$t'" >&2; exit 2 ;;
    esac
done
wants() { [[ " $TARGETS " == *" $1 "* ]]; }
wants_express() { wants express-faithful || wants express-strongest; }
wants_postgres() { wants latchkey-pg || wants latchkey-pg-2nodes; }

# The work folder, the clean-up on exit, run_bounded and free_port are the
# hardening scripts' own: shared. It also keeps every LATCHKEY_* variable of
# the caller away from latchkey, which is measured at its defaults.
ME=bench.sh
# shellcheck source=scripts/lib/latchkey.sh
. "$ROOT/scripts/lib/latchkey.sh"

# ---- tools and build ----------------------------------------------------------
ensure_rust
if wants_postgres; then
    ensure_postgres
fi
if wants_express && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
    apt_install nodejs npm
fi
packages=(-p latchkey-bench)
if wants latchkey || wants_postgres; then packages+=(-p latchkey-server); fi
log "building ${packages[*]} (release) into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release "${packages[@]}" >&2)
BENCH="$CARGO_TARGET_DIR/release/latchkey-bench"
LATCHKEY="$CARGO_TARGET_DIR/release/latchkey"

# ---- the baseline, installed clean in a temporary folder ----------------------
if wants_express; then
    mkdir "$WORK/express"
    for f in "${BASELINE_FILES[@]}"; do
        if [ ! -f "$BASELINE_SRC/$f" ]; then
            log "no $f in $BASELINE_SRC"
            exit 1
        fi
        cp "$BASELINE_SRC/$f" "$WORK/express/"
    done
    log "npm ci of the baseline in $WORK/express"
    run_bounded 600 npm --prefix "$WORK/express" ci --no-audit --no-fund >&2
fi

# ---- servers ------------------------------------------------------------------
# wait_for_lines PID LOGFILE PATTERN COUNT: until COUNT lines of LOGFILE match
# PATTERN, the process dies, or READY_TIMEOUT seconds pass.
wait_for_lines() {
    local pid="$1" file="$2" pattern="$3" count="$4" deadline=$((SECONDS + READY_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ "$(grep -cE "$pattern" "$file" 2>/dev/null || true)" -ge "$count" ]; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "server $pid exited before it was ready; its output:"
            cat "$file" "$file.err" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    log "server $pid not ready within ${READY_TIMEOUT}s; its output:"
    cat "$file" "$file.err" >&2 2>/dev/null || true
    return 1
}

SERVER_PID=""
SERVER_URL=""

start_latchkey() {
    local out="$WORK/latchkey.out"
    : >"$out"
    (cd "$WORK" && RUST_LOG="$SERVER_LOG" exec setsid "$LATCHKEY" serve \
        --listen 127.0.0.1:0 \
        --database-url "sqlite://$WORK/latchkey.db" \
        --cookie-secure false \
        >"$out" 2>"$out.err") &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_for_lines "$SERVER_PID" "$out" '^listening on http://' 1
    SERVER_URL="$(grep -m1 -oE '^listening on http://[^[:space:]]+' "$out" | sed 's/^listening on //')"
    case "$SERVER_URL" in
        http://127.0.0.1:*) ;;
        *) log "latchkey listens on '$SERVER_URL', not on 127.0.0.1"; return 1 ;;
    esac
}

# start_express WORKERS KEYOBJECT
start_express() {
    local workers="$1" keyobject="$2" port out="$WORK/express.out" want=1
    port="$(free_port)"
    : >"$out"
    (cd "$WORK/express" && HOST=127.0.0.1 PORT="$port" CLUSTER_WORKERS="$workers" \
        SECRET_KEYOBJECT="$keyobject" ROTATE=0 LOG=0 exec setsid node server.js \
        >"$out" 2>"$out.err") &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    if [ "$workers" -gt 0 ]; then want="$workers"; fi
    wait_for_lines "$SERVER_PID" "$out" "listening on http://127\.0\.0\.1:$port\$" "$want"
    SERVER_URL="http://127.0.0.1:$port"
}

# stop_servers: the server, or every node of the deployment, in SERVER_PID.
stop_servers() {
    local pid
    for pid in $SERVER_PID; do
        stop_pid "$pid"
        forget_pid "$pid"
    done
    SERVER_PID=""
}

# start_latchkey_pg NODES: NODES servers on one fresh PostgreSQL database
# (dropped on exit), with one issuer and each other's origins allowed;
# SERVER_URL lists them all.
start_latchkey_pg() {
    local nodes="$1" ports=() origins="" port out pid
    new_database pg
    for _ in $(seq 1 "$nodes"); do ports+=("$(free_port)"); done
    for port in "${ports[@]}"; do origins+="${origins:+,}http://127.0.0.1:$port"; done
    SERVER_PID=""
    for port in "${ports[@]}"; do
        out="$WORK/latchkey-$port.out"
        : >"$out"
        (cd "$WORK" && RUST_LOG="$SERVER_LOG" exec setsid "$LATCHKEY" serve \
            --listen "127.0.0.1:$port" \
            --database-url "$DB_URL" \
            --issuer "http://latchkey.bench" --allowed-origins "$origins" \
            --cookie-secure false \
            >"$out" 2>"$out.err") &
        pid=$!
        PIDS+=("$pid")
        SERVER_PID+="${SERVER_PID:+ }$pid"
        wait_for_lines "$pid" "$out" '^listening on http://' 1
    done
    SERVER_URL="$origins"
}

RESULTS_FILE="$WORK/results.jsonl"
: >"$RESULTS_FILE"
n_scenarios=$(($(tr -cd ',' <<<"$SCENARIOS" | wc -c) + 1))
# Per generator run: setup (bounded by its own timeouts) + warm-up + window.
RUN_LIMIT=$(((WARMUP + DURATION + 200) * n_scenarios))

load() {
    local target="$1" label="$2"
    log "$label: $SCENARIOS at $SERVER_URL, $CONNECTIONS connections, ${WARMUP}s + ${DURATION}s each"
    # Each server runs in its own session (setsid): its pid is its process
    # group, whose CPU the generator measures (Node cluster workers too).
    run_bounded "$RUN_LIMIT" "$BENCH" run --target "$target" --url "$SERVER_URL" \
        --server-pgid "${SERVER_PID// /,}" \
        --scenario "$SCENARIOS" --connections "$CONNECTIONS" \
        --duration "${DURATION}s" --warmup "${WARMUP}s" --threads "$CLIENT_THREADS" \
        --label "$label" >>"$RESULTS_FILE"
}

log "$(nproc) cores; node $(node --version 2>/dev/null || echo absent); commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
for run in $(seq 1 "$RUNS"); do
    log "round $run of $RUNS"
    if wants latchkey; then
        start_latchkey
        load latchkey latchkey
        stop_servers
    fi
    if wants latchkey-pg; then
        start_latchkey_pg 1
        load latchkey latchkey-pg
        stop_servers
    fi
    if wants latchkey-pg-2nodes; then
        start_latchkey_pg 2
        load latchkey latchkey-pg-2nodes
        stop_servers
    fi
    if wants express-faithful; then
        start_express 0 0
        load express express-faithful
        stop_servers
    fi
    if wants express-strongest; then
        start_express 2 1
        load express express-strongest
        stop_servers
    fi
    if [ "$HASH" != 0 ]; then
        log "bare Argon2id hashing on $(nproc) threads, ${DURATION}s"
        run_bounded $((DURATION + 60)) "$BENCH" hash --threads "$(nproc)" \
            --duration "${DURATION}s" >>"$RESULTS_FILE"
    fi
done

if [ -n "${RESULTS:-}" ]; then
    cp "$RESULTS_FILE" "$RESULTS"
fi
echo
"$BENCH" report "$RESULTS_FILE"
