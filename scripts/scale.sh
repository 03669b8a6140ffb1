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
# session comes back only after all the others. Reported per run: req/s,
# p50/p99, latchkey's CPU per request (and PostgreSQL's), latchkey's
# resident memory, the store's size.
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
#
# Settings (environment):
#   ENGINES      space-separated, of sqlite and pg (default "sqlite pg")
#   USERS        users of the big store (default 1000000)
#   SESSIONS     sessions of the big store (default 10000000)
#   LIVE         sessions driven on the big store (default 100000)
#   DURATION     seconds measured per scenario (default 20)
#   CONNECTIONS  keep-alive connections of the load (default 32)
#   PRUNE_TURN   0 skips the prune's turn (default 1)
#   RESULTS      also copy the raw JSON lines to this file
#   CARGO_TARGET_DIR  where cargo builds (default: the workspace's target/)
#
# Disk: about 3 GB per engine for the big store, in $TMPDIR (SQLite) and in
# PostgreSQL's data directory; everything is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ME=scale.sh
ENGINES="${ENGINES:-sqlite pg}"
USERS="${USERS:-1000000}"
SESSIONS="${SESSIONS:-10000000}"
LIVE="${LIVE:-100000}"
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-32}"
PRUNE_TURN="${PRUNE_TURN:-1}"
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

build
log "$(nproc) cores; commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
OUT="$WORK/results.jsonl"
: >"$OUT"

# store_bytes ENGINE DB_URL: the database's size on disk.
store_bytes() {
    case "$1" in
        sqlite)
            local file="${2#sqlite://}"
            du -cb "$file" "$file-wal" 2>/dev/null | tail -n1 | cut -f1
            ;;
        pg)
            psql -h 127.0.0.1 -U root -d postgres -Atc \
                "SELECT pg_database_size('${2##*/}')"
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

# drive ENGINE STORE TOKENS SESSIONS DB_URL [DURING] [SCENARIOS]
drive() {
    local engine="$1" store="$2" tokens="$3" sessions="$4" db="$5" during="${6:-}"
    local scenarios="${7:-refresh,me}" extra=()
    if [ -n "$during" ]; then extra+=(--during "$during"); fi
    if [ "$engine" = pg ]; then extra+=(--database-comm postgres); fi
    "$BENCH" scale run --url "$SERVER_URL" --tokens "$tokens" \
        --scenario "$scenarios" --connections "$CONNECTIONS" --duration "${DURATION}s" \
        --engine "$(engine_name "$engine")" --store "$store" \
        --store-sessions "$sessions" --store-bytes "$(store_bytes "$engine" "$db")" \
        --server-pgid "$SERVER_PID" "${extra[@]}" >>"$OUT"
}

for engine in $ENGINES; do
    for spec in "10k:1000:10000:10000" "100k:10000:$LIVE:$LIVE" "10M:$USERS:$SESSIONS:$LIVE"; do
        IFS=: read -r store users sessions live <<<"$spec"
        new_database "$engine"
        tokens="$WORK/$engine-$store.tokens"
        log "$(engine_name "$engine") $store: filling $users users, $sessions sessions"
        "$BENCH" scale fill --database-url "$DB_URL" --users "$users" \
            --sessions "$sessions" --live "$live" --tokens "$tokens"
        start_server "$engine" "$DB_URL" "$(free_port)"
        log "waiting for the start-up prune: $(wait_pruned)"
        drive "$engine" "$store" "$tokens" "$sessions" "$DB_URL"
        stop_server
        if [ "$store" = 10M ] && [ "$PRUNE_TURN" != 0 ]; then
            log "$(engine_name "$engine") $store: the prune's turn"
            dead="$("$BENCH" scale expire --database-url "$DB_URL")"
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
            psql -h 127.0.0.1 -U root -d postgres -qc "DROP DATABASE ${DB_URL##*/} WITH (FORCE)"
        else
            rm -rf "$(dirname "${DB_URL#sqlite://}")"
        fi
    done
done

if [ -n "${RESULTS:-}" ]; then cp "$OUT" "$RESULTS"; fi
"$BENCH" scale report "$OUT"
