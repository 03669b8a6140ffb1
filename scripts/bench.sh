#!/usr/bin/env bash
# The whole comparison in one command: latchkey against the Express baseline
# in bench/express-seed, in its faithful form (string secrets, one process) and
# its strongest form (KeyObject secrets, 2 cluster workers), and latchkey's
# OAuth endpoints against oidc-provider (bench/oidc-provider, 2 cluster
# workers); same load generator, same run, the servers' CPU per request
# measured; plus bare Argon2id hashing on all cores, the ceiling of any
# login. Prints Markdown tables on stdout (progress on stderr).
#
#   scripts/bench.sh
#   DURATION=10 CONNECTIONS=32 RUNS=3 scripts/bench.sh
#
# Settings (environment):
#   DURATION        seconds measured per scenario (default 10)
#   CONNECTIONS     keep-alive connections = virtual users (default 32)
#   WARMUP          seconds of load before each measured window (default 2)
#   RUNS            rounds of everything; the table shows the median (default 1)
#   SCENARIOS       comma-separated, of me,refresh,login,token-cc,
#                   token-refresh,introspect (default all six); each target
#                   runs those it has: latchkey all, latchkey-pg* me, refresh
#                   and token-refresh, express-* me, refresh and login,
#                   oidc-provider token-cc, token-refresh and introspect
#   TARGETS         space-separated, of latchkey (SQLite), latchkey-pg (one
#                   node on PostgreSQL), latchkey-pg-2nodes (two nodes on one
#                   PostgreSQL database, virtual users spread over them),
#                   express-faithful, express-strongest, oidc-provider
#                   (default all six). With a PostgreSQL target, pgbench also
#                   measures PostgreSQL's own single-row update rate (the
#                   ceiling of a refresh there), and the PostgreSQL
#                   processes' CPU is measured per request
#   HASH            0 skips the bare Argon2id measurement (default 1)
#   CLIENT_THREADS  worker threads of the load generator (default 1)
#   RESULTS         also copy the raw JSON lines to this file
#   CARGO_TARGET_DIR  where cargo builds (default: the workspace's target/)
#   SERVER_LOG      RUST_LOG for latchkey while measured (default warn)
#
# Everything listens on 127.0.0.1 only, and everything started here is
# stopped on exit. The Node servers' sources (server.js, package.json,
# package-lock.json) are copied from bench/express-seed and bench/oidc-provider
# to fresh temporary folders and installed there with `npm ci`, at the exact
# versions of the lock file: every run starts from a clean install, and
# nothing is written into the repository (any node_modules/ left there by hand
# is ignored by git and never copied).
#
# CPU per request: each server runs in its own session (setsid), so its pid is
# its process group; the load generator sums the CPU time of the group's
# processes (Node cluster workers included) over the measured window. The
# PostgreSQL server's own CPU is not counted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
WARMUP="${WARMUP:-2}"
RUNS="${RUNS:-1}"
SCENARIOS="${SCENARIOS:-me,refresh,login,token-cc,token-refresh,introspect}"
TARGETS="${TARGETS:-latchkey latchkey-pg latchkey-pg-2nodes express-faithful express-strongest oidc-provider}"
HASH="${HASH:-1}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
NODE_FILES=(server.js package.json package-lock.json)

for v in DURATION CONNECTIONS WARMUP RUNS CLIENT_THREADS; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "bench.sh: $v must be a positive integer, got '${!v}'" >&2
        exit 2
    fi
done
for t in $TARGETS; do
    case "$t" in
        latchkey | latchkey-pg | latchkey-pg-2nodes | express-faithful | express-strongest | oidc-provider) ;;
        *) echo "bench.sh: unknown target '$t'" >&2; exit 2 ;;
    esac
done
IFS=, read -ra ASKED <<<"$SCENARIOS"
for s in "${ASKED[@]}"; do
    case "$s" in
        me | refresh | login | token-cc | token-refresh | introspect) ;;
        *) echo "bench.sh: unknown scenario '$s' (me, refresh, login, token-cc, token-refresh, introspect)" >&2; exit 2 ;;
    esac
done

# The scenarios each target has.
has_scenarios() {
    case "$1" in
        latchkey) echo "me refresh login token-cc token-refresh introspect" ;;
        latchkey-pg | latchkey-pg-2nodes) echo "me refresh token-refresh" ;;
        express-faithful | express-strongest) echo "me refresh login" ;;
        oidc-provider) echo "token-cc token-refresh introspect" ;;
    esac
}
# scenarios_for TARGET: the asked scenarios it has, comma-separated, in the
# order asked.
scenarios_for() {
    local s out="" has
    has=" $(has_scenarios "$1") "
    for s in "${ASKED[@]}"; do
        if [[ "$has" == *" $s "* && ",$out," != *",$s,"* ]]; then out+="${out:+,}$s"; fi
    done
    echo "$out"
}
# wants TARGET: asked for, with at least one scenario to run.
wants() { [[ " $TARGETS " == *" $1 "* ]] && [ -n "$(scenarios_for "$1")" ]; }
wants_express() { wants express-faithful || wants express-strongest; }
wants_node() { wants_express || wants oidc-provider; }
wants_postgres() { wants latchkey-pg || wants latchkey-pg-2nodes; }

# The work folder, the clean-up on exit, run_bounded and free_port are the
# hardening scripts' own: shared. It also keeps every LATCHKEY_* variable of
# the caller away from latchkey, which is measured at its defaults.
ME=bench.sh
# shellcheck source=scripts/lib/latchkey.sh
. "$ROOT/scripts/lib/latchkey.sh"

measured=0
for t in $TARGETS; do
    if wants "$t"; then
        measured=1
    else
        log "$t has none of the scenarios $SCENARIOS: skipped"
    fi
done
if [ "$measured" = 0 ] && [ "$HASH" = 0 ]; then
    log "nothing to measure: no target has any of the scenarios $SCENARIOS, and HASH=0"
    exit 2
fi

# ---- tools and build ----------------------------------------------------------
ensure_rust
if wants_postgres; then
    ensure_postgres
fi
if wants_node && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
    apt_install nodejs npm
fi
packages=(-p latchkey-bench)
if wants latchkey || wants_postgres; then packages+=(-p latchkey-server); fi
log "building ${packages[*]} (release) into $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release "${packages[@]}" >&2)
BENCH="$CARGO_TARGET_DIR/release/latchkey-bench"
LATCHKEY="$CARGO_TARGET_DIR/release/latchkey"

# ---- the Node servers, installed clean in temporary folders -------------------
# node_install SRC DEST: SRC's server.js and lock files copied to DEST, and
# `npm ci` there.
node_install() {
    local src="$1" dest="$2" f
    mkdir "$dest"
    for f in "${NODE_FILES[@]}"; do
        if [ ! -f "$src/$f" ]; then
            log "no $f in $src"
            exit 1
        fi
        cp "$src/$f" "$dest/"
    done
    log "npm ci of $src in $dest"
    run_bounded 600 npm --prefix "$dest" ci --no-audit --no-fund >&2
}
if wants_express; then
    node_install "$ROOT/bench/express-seed" "$WORK/express"
fi
if wants oidc-provider; then
    node_install "$ROOT/bench/oidc-provider" "$WORK/oidc-provider"
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
# The OAuth client `bench` of the server under load: its secret, or empty
# for a server without OAuth.
CLIENT_SECRET=""
SQLITE_CLIENT_SECRET=""

# new_client DATABASE_URL: registers the OAuth client `bench` in that
# database with the release binary; sets CLIENT_SECRET.
new_client() {
    local out err="$WORK/client-add.err"
    if ! out="$(cd "$WORK" && RUST_LOG="$SERVER_LOG" "$LATCHKEY" --database-url "$1" \
        client add bench 2>"$err")"; then
        log "latchkey client add bench failed:"
        cat "$err" >&2
        return 1
    fi
    # {"client_id":"bench","client_secret":"..."} (no jq needed)
    CLIENT_SECRET="$(sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p' <<<"$out")"
    if [ -z "$CLIENT_SECRET" ]; then
        log "no client_secret in the answer of 'latchkey client add bench': $out"
        return 1
    fi
}

start_latchkey() {
    local out="$WORK/latchkey.out"
    # The SQLite database lives through the rounds: its client is made once.
    if [ -z "$SQLITE_CLIENT_SECRET" ]; then
        new_client "sqlite://$WORK/latchkey.db"
        SQLITE_CLIENT_SECRET="$CLIENT_SECRET"
    fi
    CLIENT_SECRET="$SQLITE_CLIENT_SECRET"
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
    CLIENT_SECRET=""
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

# start_oidc_provider: 2 cluster workers, one per core of the project's
# machine, as express-strongest: oidc-provider's strongest form. Each worker
# keeps its own tokens; a virtual user keeps its connection, so its worker.
start_oidc_provider() {
    local workers=2 port out="$WORK/oidc-provider.out"
    port="$(free_port)"
    CLIENT_SECRET="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    : >"$out"
    (cd "$WORK/oidc-provider" && HOST=127.0.0.1 PORT="$port" CLUSTER_WORKERS="$workers" \
        CLIENT_SECRET="$CLIENT_SECRET" exec setsid node server.js \
        >"$out" 2>"$out.err") &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_for_lines "$SERVER_PID" "$out" "^listening on http://127\.0\.0\.1:$port\$" "$workers"
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
    new_client "$DB_URL"
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

# load TARGET LABEL: LABEL's scenarios against the server(s) in SERVER_URL.
load() {
    local target="$1" label="$2" scenarios n client=()
    scenarios="$(scenarios_for "$label")"
    n=$(($(tr -cd ',' <<<"$scenarios" | wc -c) + 1))
    if [ -n "$CLIENT_SECRET" ]; then
        client=(--client-id bench --client-secret "$CLIENT_SECRET")
    fi
    log "$label: $scenarios at $SERVER_URL, $CONNECTIONS connections, ${WARMUP}s + ${DURATION}s each"
    # Per scenario: setup (bounded by its own timeouts) + warm-up + window.
    # Each server runs in its own session (setsid): its pid is its process
    # group, whose CPU the generator measures (Node cluster workers too).
    if [[ "$label" == latchkey-pg* ]]; then
        client+=(--database-comm postgres)
    fi
    run_bounded $(((WARMUP + DURATION + 200) * n)) "$BENCH" run --target "$target" \
        --url "$SERVER_URL" --server-pgid "${SERVER_PID// /,}" ${client[@]+"${client[@]}"} \
        --scenario "$scenarios" --connections "$CONNECTIONS" \
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
    if wants_postgres; then
        if command -v pgbench >/dev/null; then
            new_database pg
            log "pgbench: PostgreSQL's own single-row UPDATE rate, $CONNECTIONS clients, ${DURATION}s"
            run_bounded $((DURATION + 120)) "$BENCH" pgbench --database-url "$DB_URL" \
                --clients "$CONNECTIONS" --duration "${DURATION}s" >>"$RESULTS_FILE"
        else
            log "no pgbench: PostgreSQL's own update rate is not measured"
        fi
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
    if wants oidc-provider; then
        start_oidc_provider
        load oidc-provider oidc-provider
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
