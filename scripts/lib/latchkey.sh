# shellcheck shell=bash
# shellcheck disable=SC2034 # LATCHKEY, BENCH, DB_URL...: set for the scripts that source this
# Shared by soak.sh, abuse.sh and kill9.sh: a work folder, the release
# binaries, latchkey on a loopback port over SQLite or PostgreSQL (a
# throwaway database), and the clean-up of everything started here, on any
# exit. The caller sets ROOT (the repository) and ME (its name) first.
#
# Settings (environment): SERVER_LOG, RUST_LOG of latchkey (default warn);
# CARGO_TARGET_DIR, where cargo builds (default: the workspace's target/).

# shellcheck source=scripts/lib/toolchain.sh
. "$ROOT/scripts/lib/toolchain.sh"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

SERVER_LOG="${SERVER_LOG:-warn}"
# The PostgreSQL server of new_database (scale.sh starts its own).
PG_PORT=5432
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
READY_TIMEOUT=60

# latchkey gets the settings given here and no other: none of the caller's
# LATCHKEY_* variables reaches it.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^LATCHKEY_' || true)

log() { echo "$ME: $*" >&2; }

# positive_number NAME: NAME's value must be a positive number (decimals allowed).
positive_number() {
    local name="$1"
    if ! [[ "${!name}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ "${!name}" =~ ^0+(\.0+)?$ ]]; then
        log "$name must be a positive number, got '${!name}'"
        exit 2
    fi
}

# positive_integer NAME: NAME's value must be a whole number of at least 1.
positive_integer() {
    local name="$1"
    if ! [[ "${!name}" =~ ^[0-9]+$ ]] || [ "${!name}" -lt 1 ]; then
        log "$name must be a positive integer, got '${!name}'"
        exit 2
    fi
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-$ME.XXXXXX")"
PIDS=()   # processes to stop on exit
PG_DBS=() # databases to drop on exit

stop_pid() {
    # Each server runs in its own session (setsid): signal its process group.
    local pid="$1" _
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# forget_pid PID: PID is stopped (or dead and waited for) already.
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do
        if [ "$p" != "$1" ]; then keep+=("$p"); fi
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

cleanup() {
    local pid db
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    PIDS=()
    for db in "${PG_DBS[@]}"; do
        psql -h 127.0.0.1 -p "$PG_PORT" -U root -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
            >/dev/null 2>&1 || true
    done
    PG_DBS=()
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_bounded SECONDS CMD...: runs CMD under `timeout`, in the background and
# waited for, so that a signal to the script runs its traps at once.
run_bounded() {
    local limit="$1" pid rc=0
    shift
    timeout "$limit" "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# build: the release binaries of latchkey and latchkey-bench; sets LATCHKEY
# and BENCH.
build() {
    ensure_rust
    log "building latchkey-server and latchkey-bench (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release -p latchkey-server -p latchkey-bench >&2)
    LATCHKEY="$CARGO_TARGET_DIR/release/latchkey"
    BENCH="$CARGO_TARGET_DIR/release/latchkey-bench"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# new_database ENGINE: a fresh, empty database; sets DB_URL. ENGINE is
# sqlite (a file in the work folder; its refresh-token secret is the file
# beside it, DB.secret) or pg (a throwaway database on 127.0.0.1:PG_PORT,
# dropped on exit).
new_database() {
    local dir name
    case "$1" in
        sqlite)
            dir="$(mktemp -d "$WORK/db.XXXXXX")"
            DB_URL="sqlite://$dir/latchkey.db"
            ;;
        pg)
            if [ "$PG_PORT" = 5432 ]; then ensure_postgres; fi
            name="latchkey_${ME//[^a-z0-9]/_}_${RANDOM}${RANDOM}"
            psql -h 127.0.0.1 -p "$PG_PORT" -U root -d postgres -qc "CREATE DATABASE $name" >/dev/null
            PG_DBS+=("$name")
            DB_URL="postgres://root@127.0.0.1:$PG_PORT/$name"
            ;;
        *)
            log "unknown engine '$1' (sqlite or pg)"
            exit 2
            ;;
    esac
}

engine_name() {
    case "$1" in
        sqlite) echo "SQLite" ;;
        pg) echo "PostgreSQL" ;;
        *) echo "$1" ;;
    esac
}

# The master key of the PostgreSQL servers: from it comes the refresh-token
# secret, so every start of this run shares it. (SQLite keeps its secret in
# the file beside the database.) A caller that empties it gets the secret
# PostgreSQL keeps in the database.
MASTER_KEY="$(head -c 32 /dev/urandom | base64)"
SERVER_STARTS=0

# start_server ENGINE DB_URL PORT: latchkey on 127.0.0.1:PORT, issuer
# http://127.0.0.1:PORT (the origin the clients send), plain-http cookies;
# sets SERVER_PID and SERVER_URL once it listens. The same arguments give
# the same settings: that is how a restart serves the same sessions.
start_server() {
    local engine="$1" db="$2" port="$3" out
    local settings=(
        "LATCHKEY_LISTEN=127.0.0.1:$port"
        "LATCHKEY_DATABASE_URL=$db"
        "LATCHKEY_ISSUER=http://127.0.0.1:$port"
        "LATCHKEY_COOKIE_SECURE=false"
    )
    if [ "$engine" = pg ] && [ -n "$MASTER_KEY" ]; then
        settings+=("LATCHKEY_MASTER_KEY=$MASTER_KEY")
    fi
    SERVER_STARTS=$((SERVER_STARTS + 1))
    out="$WORK/server-$SERVER_STARTS.out"
    : >"$out"
    (cd "$WORK" && exec env RUST_LOG="$SERVER_LOG" "${settings[@]}" setsid "$LATCHKEY" serve \
        >"$out" 2>"$out.err") &
    SERVER_PID=$!
    # Out of the job table: bash then reaps it silently (no "Killed" notice
    # after a kill -9); stop_pid and reap_server poll it instead.
    disown "$SERVER_PID"
    PIDS+=("$SERVER_PID")
    local deadline=$((SECONDS + READY_TIMEOUT))
    until grep -qE '^listening on http://' "$out" 2>/dev/null; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            log "latchkey ($SERVER_PID) did not start; its output:"
            cat "$out" "$out.err" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.05
    done
    SERVER_URL="$(grep -m1 -oE '^listening on http://[^[:space:]]+' "$out" | sed 's/^listening on //')"
    if [ "$SERVER_URL" != "http://127.0.0.1:$port" ]; then
        log "latchkey listens on '$SERVER_URL', not on http://127.0.0.1:$port"
        return 1
    fi
    if [ "$(cat "/proc/$SERVER_PID/comm" 2>/dev/null)" != latchkey ]; then
        log "process $SERVER_PID is not latchkey itself"
        return 1
    fi
}

stop_server() {
    if [ -n "${SERVER_PID:-}" ]; then
        stop_pid "$SERVER_PID"
        forget_pid "$SERVER_PID"
        SERVER_PID=""
    fi
}

# reap_server: the server was killed (kill -9): wait until it is gone.
reap_server() {
    local _
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "latchkey ($SERVER_PID) still there after its kill"
        return 1
    fi
    forget_pid "$SERVER_PID"
    SERVER_PID=""
}

# server_log_tail: the end of the current server's error output, for the
# record.
server_log_tail() {
    local err="$WORK/server-$SERVER_STARTS.out.err"
    if [ -s "$err" ]; then
        tail -n 20 "$err"
    else
        echo "(none)"
    fi
}
