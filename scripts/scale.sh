#!/usr/bin/env bash
# The scale benchmark: does a refresh or a `/v1/me` cost the same when the
# store holds 10 million sessions as when it holds 10 thousand?
#
# For each engine, three stores are filled in bulk (latchkey's own schema,
# migrated by its store; one real Argon2id hash shared by every user):
#   10k   1,000 users, 10,000 sessions, all driven;
#   100k  10,000 users, the live set alone (LIVE sessions), all driven;
#   10M   USERS users, SESSIONS sessions, LIVE of them driven, spread evenly.
# latchkey is started on each (release build, setsid), its start-up prune
# waited for, then refresh and `/v1/me` are driven for DURATION seconds
# each: every request presents a different session, in random order, and a
# session comes back only after all the others. Before each, the store is
# read once (SQLite: the files; PostgreSQL: pg_prewarm into the operating
# system's cache): the server measured is one whose store is in memory, as
# a server that has run for a while has it, not one whose machine has just
# reclaimed its page cache (virtual machines do: this project's reclaims
# file pages untouched for a minute).
#
# Reported per run: req/s, p50/p99, latchkey's CPU per request (and
# PostgreSQL's), latchkey's resident memory, the store's size.
#
# PostgreSQL is a server of the script's own (initdb into a temporary
# folder, a free loopback port), configured as docs/operations.md advises
# for a large store (PG_CONF); the machine's PostgreSQL is not touched.
#
# Then the prune's turn, on the 10M store: about half of the sessions never
# driven are made idle for 60 days (about 4.95M of 10M), latchkey is
# restarted (its prune starts at once) and refresh is driven while the prune
# runs; the prune's longest batch and total time come from its log line.
#
# Prints Markdown tables on stdout (progress on stderr).
#
#   scripts/scale.sh
#   ENGINES=sqlite SESSIONS=1000000 USERS=100000 scripts/scale.sh
#   ENGINES=sqlite STORES=10M scripts/scale.sh     (the prune's turn alone)
#
# Settings (environment):
#   ENGINES      space-separated, of sqlite and pg (default "sqlite pg")
#   STORES       space-separated, of 10k 100k 10M (default all three; the
#                ratios need the 10k and 100k stores, the prune's turn only
#                the 10M store)
#   USERS        users of the big store (default 1000000)
#   SESSIONS     sessions of the big store (default 10000000)
#   LIVE         sessions driven on the big store (default 100000)
#   DURATION     seconds measured per scenario (default 20)
#   CONNECTIONS  keep-alive connections of the load (default 32)
#   PRUNE_TURN   0 skips the prune's turn (default 1)
#   RESULTS      also copy the raw JSON lines to this file
#   PG_CONF      postgresql.conf lines of the script's PostgreSQL, separated
#                by ';' (default: shared_buffers=2GB, room for the live
#                set's pages; max_wal_size=8GB, min_wal_size=4GB and
#                checkpoint_timeout=15min: checkpoints far apart)
#   CARGO_TARGET_DIR  where cargo builds (default: the workspace's target/)
#
# Disk: about 6 GB per engine for the big store, in $TMPDIR; everything is
# removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ME=scale.sh
ENGINES="${ENGINES:-sqlite pg}"
STORES="${STORES:-10k 100k 10M}"
USERS="${USERS:-1000000}"
SESSIONS="${SESSIONS:-10000000}"
LIVE="${LIVE:-100000}"
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-32}"
PRUNE_TURN="${PRUNE_TURN:-1}"
PG_CONF="${PG_CONF:-shared_buffers=2GB;max_wal_size=8GB;min_wal_size=4GB;checkpoint_timeout=15min}"
# The prune's summary is an info line of latchkey_server::app.
SERVER_LOG="${SERVER_LOG:-warn,latchkey_server::app=info}"
# shellcheck source=scripts/lib/latchkey.sh
. "$ROOT/scripts/lib/latchkey.sh"
# The fill mints the live set's refresh tokens from the secret the store
# keeps: no master key (it would derive another).
MASTER_KEY=""

for n in USERS SESSIONS LIVE DURATION CONNECTIONS; do positive_integer "$n"; done
if [ "$SESSIONS" -lt "$LIVE" ]; then
    log "SESSIONS ($SESSIONS) must be at least LIVE ($LIVE)"
    exit 2
fi
for engine in $ENGINES; do
    case "$engine" in
        sqlite | pg) ;;
        *) log "unknown engine '$engine' (sqlite or pg)"; exit 2 ;;
    esac
done
for store in $STORES; do
    case "$store" in
        10k | 100k | 10M) ;;
        *) log "unknown store '$store' (10k, 100k or 10M)"; exit 2 ;;
    esac
done

# start_postgres: a PostgreSQL server of this run's own, on a free loopback
# port (PG_PORT), trust auth for root, PG_CONF applied; stopped and removed
# on exit. It runs as the postgres user when the script runs as root.
PG_DATA=""
start_postgres() {
    local bin as=()
    bin="$(pg_config --bindir 2>/dev/null || true)"
    if [ ! -x "$bin/initdb" ]; then
        bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)"
    fi
    if [ ! -x "$bin/initdb" ]; then
        ensure_postgres
        bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n1)"
    fi
    PG_DATA="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-scale-pg.XXXXXX")"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$PG_DATA"
        as=(runuser -u postgres --)
    fi
    PG_BIN="$bin"
    PG_AS=("${as[@]+"${as[@]}"}")
    PG_PORT="$(free_port)"
    "${as[@]+"${as[@]}"}" "$bin/initdb" -D "$PG_DATA/data" --auth=trust --username=root \
        -E UTF8 >/dev/null
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PG_PORT"
        echo "unix_socket_directories = '$PG_DATA'"
        tr ';' '\n' <<<"$PG_CONF"
    } >>"$PG_DATA/data/postgresql.conf"
    "${as[@]+"${as[@]}"}" "$bin/pg_ctl" -D "$PG_DATA/data" -l "$PG_DATA/log" -w start >/dev/null
    # A new server makes its WAL files as it goes, zero-filling each: the
    # first store measured would pay for that and the others not. About
    # 2 GB of WAL written and checkpointed leaves files to recycle
    # (min_wal_size keeps them).
    psql -h 127.0.0.1 -p "$PG_PORT" -U root -d postgres -q >/dev/null <<'SQL'
CREATE TABLE wal_warm AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 8000000) g;
DROP TABLE wal_warm;
CHECKPOINT;
SQL
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT: $PG_CONF"
}
stop_postgres() {
    if [ -n "$PG_DATA" ]; then
        "${PG_AS[@]+"${PG_AS[@]}"}" "$PG_BIN/pg_ctl" -D "$PG_DATA/data" -m immediate stop \
            >/dev/null 2>&1 || true
        rm -rf "$PG_DATA"
        PG_DATA=""
    fi
}
trap 'cleanup; stop_postgres' EXIT

build
log "$(nproc) cores; commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
OUT="$WORK/results.jsonl"
: >"$OUT"
case " $ENGINES " in *" pg "*) start_postgres ;; esac

# store_bytes ENGINE DB_URL: the database's size on disk.
store_bytes() {
    case "$1" in
        sqlite)
            local file="${2#sqlite://}"
            du -cb "$file" "$file-wal" 2>/dev/null | tail -n1 | cut -f1
            ;;
        pg)
            psql -h 127.0.0.1 -p "$PG_PORT" -U root -d postgres -Atc \
                "SELECT pg_database_size('${2##*/}')"
            ;;
    esac
}

# settle ENGINE DB_URL: after writing a store in bulk, its pages on disk
# (PostgreSQL: checkpointed first), so that the measurement does not pay
# for the bulk write's writeback.
settle() {
    if [ "$1" = pg ]; then
        psql -h 127.0.0.1 -p "$PG_PORT" -U root -d "${2##*/}" -qc CHECKPOINT
    fi
    sync
}

# warm ENGINE DB_URL: reads the whole store once, into the operating
# system's cache.
warm() {
    case "$1" in
        sqlite)
            local file="${2#sqlite://}"
            cat "$file" "$file-wal" >/dev/null 2>&1 || true
            ;;
        pg)
            psql -h 127.0.0.1 -p "$PG_PORT" -U root -d "${2##*/}" -qAt >/dev/null <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
SELECT sum(pg_prewarm(c.oid, 'read')) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i');
SQL
            ;;
    esac
}

# wait_pruned: until the current server logged the end of a prune (it
# starts one at once); prints that line.
wait_pruned() {
    local err="$WORK/server-$SERVER_STARTS.out.err" deadline=$((SECONDS + 1800))
    until grep -q ' pruned' "$err" 2>/dev/null; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            log "latchkey's prune did not finish; its log:"
            server_log_tail >&2
            return 1
        fi
        sleep 0.5
    done
    grep -m1 ' pruned' "$err" | sed 's/\x1b\[[0-9;]*m//g'
}

# field NAME LINE: the value of NAME=... in a log line.
field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$2"; }

# drive ENGINE STORE TOKENS SESSIONS DB_URL DURING SCENARIOS, on a warm store
drive() {
    local engine="$1" store="$2" tokens="$3" sessions="$4" db="$5" during="${6:-}"
    local scenarios="$7" extra=()
    if [ -n "$during" ]; then extra+=(--during "$during"); fi
    if [ "$engine" = pg ]; then extra+=(--database-comm postgres); fi
    warm "$engine" "$db"
    "$BENCH" scale run --url "$SERVER_URL" --tokens "$tokens" \
        --scenario "$scenarios" --connections "$CONNECTIONS" --duration "${DURATION}s" \
        --engine "$(engine_name "$engine")" --store "$store" \
        --store-sessions "$sessions" --store-bytes "$(store_bytes "$engine" "$db")" \
        --server-pgid "$SERVER_PID" "${extra[@]}" >>"$OUT"
}

for engine in $ENGINES; do
    for spec in "10k:1000:10000:10000" "100k:10000:$LIVE:$LIVE" "10M:$USERS:$SESSIONS:$LIVE"; do
        IFS=: read -r store users sessions live <<<"$spec"
        case " $STORES " in *" $store "*) ;; *) continue ;; esac
        new_database "$engine"
        tokens="$WORK/$engine-$store.tokens"
        log "$(engine_name "$engine") $store: filling $users users, $sessions sessions"
        "$BENCH" scale fill --database-url "$DB_URL" --users "$users" \
            --sessions "$sessions" --live "$live" --tokens "$tokens"
        if [ "$engine" = pg ]; then
            # As after any bulk load: otherwise autovacuum would do it, its
            # CPU counted in a measurement.
            psql -h 127.0.0.1 -p "$PG_PORT" -U root -d "${DB_URL##*/}" -qc "VACUUM (ANALYZE)"
        fi
        settle "$engine" "$DB_URL"
        start_server "$engine" "$DB_URL" "$(free_port)"
        log "waiting for the start-up prune: $(wait_pruned)"
        # One scenario per run of the load: each on a store just warmed.
        for scenario in refresh me; do
            drive "$engine" "$store" "$tokens" "$sessions" "$DB_URL" "" "$scenario"
        done
        stop_server
        if [ "$store" = 10M ] && [ "$PRUNE_TURN" != 0 ]; then
            log "$(engine_name "$engine") $store: the prune's turn"
            dead="$("$BENCH" scale expire --database-url "$DB_URL")"
            settle "$engine" "$DB_URL"
            start_server "$engine" "$DB_URL" "$(free_port)"
            drive "$engine" "$store" "$tokens" "$sessions" "$DB_URL" prune refresh
            line="$(wait_pruned)"
            took="$(field took_ms "$line")"
            if [ "$took" -lt $(((DURATION + 3) * 1000)) ]; then
                log "the prune ended after ${took} ms, before the measured window did"
            fi
            printf '{"engine":"%s","store":"%s","sessions_deleted":%s,"longest_batch_ms":%s,"took_ms":%s}\n' \
                "$(engine_name "$engine")" "$store" "$(field sessions "$line")" \
                "$(field longest_batch_ms "$line")" "$took" >>"$OUT"
            log "made dead: $dead; $line"
            stop_server
        fi
        if [ "$engine" = pg ]; then
            psql -h 127.0.0.1 -p "$PG_PORT" -U root -d postgres -qc "DROP DATABASE ${DB_URL##*/} WITH (FORCE)"
        else
            rm -rf "$(dirname "${DB_URL#sqlite://}")"
        fi
    done
done

if [ -n "${RESULTS:-}" ]; then cp "$OUT" "$RESULTS"; fi
"$BENCH" scale report "$OUT"
