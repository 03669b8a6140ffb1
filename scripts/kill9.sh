#!/usr/bin/env bash
# kill -9 under refresh load, on SQLite and on PostgreSQL: SESSIONS sessions
# refresh concurrently, the server gets SIGKILL after KILL_AFTER seconds,
# restarts at once on the same database with the same settings and secret
# (SQLite: the file beside the database; PostgreSQL: one LATCHKEY_MASTER_KEY
# for the run), and each session's last refresh token received in a
# complete 200 is presented again, inside the 10 s grace window: every one
# must be accepted. ROUNDS kills per engine, on the same database (each
# restarted server is the next round's victim). Prints a Markdown table on
# stdout (progress on stderr); exits with 1 if any token was refused.
#
#   scripts/kill9.sh
#   ENGINES=sqlite ROUNDS=1 scripts/kill9.sh
#
# Settings (environment):
#   ENGINES     space-separated, of sqlite and pg (default "sqlite pg")
#   ROUNDS      kills per engine (default 3)
#   SESSIONS    sessions refreshing at once, one connection each (default 64)
#   KILL_AFTER  seconds of refresh load before the kill (default 5)
#   SERVER_LOG  RUST_LOG of latchkey (default warn)
#   CARGO_TARGET_DIR  where cargo builds (default: the workspace's target/)
#
# Everything listens on 127.0.0.1 only; everything started here (servers,
# throwaway databases, temporary files) is stopped or removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ME=kill9.sh
ENGINES="${ENGINES:-sqlite pg}"
ROUNDS="${ROUNDS:-3}"
SESSIONS="${SESSIONS:-64}"
KILL_AFTER="${KILL_AFTER:-5}"
# shellcheck source=scripts/lib/latchkey.sh
. "$ROOT/scripts/lib/latchkey.sh"

positive_integer ROUNDS
positive_integer SESSIONS
positive_number KILL_AFTER
for engine in $ENGINES; do
    case "$engine" in
        sqlite | pg) ;;
        *) log "unknown engine '$engine' (sqlite or pg)"; exit 2 ;;
    esac
done

build
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "$(nproc) cores; commit $commit"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
# Per step: setup (bounded by its own time-outs), the load, and slack.
STEP_LIMIT="$(awk -v k="$KILL_AFTER" 'BEGIN { printf "%d", k + 200 }')"

for engine in $ENGINES; do
    name="$(engine_name "$engine")"
    new_database "$engine"
    port="$(free_port)"
    start_server "$engine" "$DB_URL" "$port"
    log "$name: latchkey $SERVER_URL (pid $SERVER_PID)"
    for round in $(seq 1 "$ROUNDS"); do
        state="$WORK/state-$engine-$round.json"
        run_bounded "$STEP_LIMIT" "$BENCH" kill9 load --url "$SERVER_URL" \
            --server-pid "$SERVER_PID" --sessions "$SESSIONS" --kill-after "${KILL_AFTER}s" \
            --state "$state" --label "$name" --round "$round"
        reap_server
        start_server "$engine" "$DB_URL" "$port"
        log "$name round $round: restarted as pid $SERVER_PID"
        run_bounded 60 "$BENCH" kill9 check --url "$SERVER_URL" --state "$state" >>"$RESULTS"
    done
    stop_server
done

echo
rc=0
"$BENCH" kill9 report "$RESULTS" || rc=$?
if [ "$rc" -ne 0 ]; then
    log "FAIL: the last server's error output:"
    server_log_tail >&2
fi
echo
echo "Commit $commit, $(nproc) cores, loopback."
exit "$rc"
