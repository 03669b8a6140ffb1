#!/usr/bin/env bash
# How long a logout takes to reach an API server through the revocation
# feed: LOGOUTS sessions are opened on latchkey, a latchkey-verify verifier
# subscribes to the feed, and each session in turn is checked, logged out,
# and timed until the verifier refuses its token. On SQLite (one node) and
# on PostgreSQL with two nodes (logouts on one, the verifier subscribed to
# the other). Prints a Markdown table on stdout (progress on stderr).
#
#   scripts/feed-latency.sh
#   ENGINES=sqlite LOGOUTS=200 scripts/feed-latency.sh
#
# Settings (environment):
#   ENGINES     space-separated, of sqlite and pg (default "sqlite pg")
#   LOGOUTS     logouts timed per engine (default 1000)
#   SERVER_LOG  RUST_LOG of latchkey (default warn)
#   CARGO_TARGET_DIR  where cargo builds (default: the workspace's target/)
#
# Everything listens on 127.0.0.1 only; everything started here (servers,
# throwaway databases, temporary files) is stopped or removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ME=feed-latency.sh
ENGINES="${ENGINES:-sqlite pg}"
LOGOUTS="${LOGOUTS:-1000}"
# shellcheck source=scripts/lib/latchkey.sh
. "$ROOT/scripts/lib/latchkey.sh"

positive_integer LOGOUTS
for engine in $ENGINES; do
    case "$engine" in
        sqlite | pg) ;;
        *) log "unknown engine '$engine' (sqlite or pg)"; exit 2 ;;
    esac
done

build
log "$(nproc) cores; commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# client_secret DB_URL: a new confidential client `feed-bench`; prints its secret.
client_secret() {
    "$LATCHKEY" client add feed-bench --database-url "$1" 2>"$WORK/client.err" |
        sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p'
}

for engine in $ENGINES; do
    new_database "$engine"
    secret="$(client_secret "$DB_URL")"
    if [ -z "$secret" ]; then
        log "client add failed:"
        cat "$WORK/client.err" >&2
        exit 1
    fi
    start_server "$engine" "$DB_URL" "$(free_port)"
    node_a="$SERVER_URL"
    servers=("$SERVER_PID")
    feed="$node_a"
    label="SQLite, one node"
    if [ "$engine" = pg ]; then
        start_server "$engine" "$DB_URL" "$(free_port)"
        servers+=("$SERVER_PID")
        feed="$SERVER_URL"
        label="PostgreSQL, logout on node A, verifier subscribed to node B"
    fi
    log "$label: $LOGOUTS logouts"
    LATCHKEY_BENCH_CLIENT_SECRET="$secret" run_bounded $((LOGOUTS + 300)) \
        "$BENCH" feed-latency --url "$node_a" --feed-url "$feed" \
        --client-id feed-bench --logouts "$LOGOUTS" --label "$label" >>"$RESULTS"
    for pid in "${servers[@]}"; do
        stop_pid "$pid"
        forget_pid "$pid"
    done
    SERVER_PID=""
done

echo
echo "| deployment | logouts | p50 | p99 | max |"
echo "|---|---:|---:|---:|---:|"
python3 - "$RESULTS" <<'PY'
import json, sys
def fmt(us):
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us} µs"
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"| {r['label']} | {r['logouts']} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} | {fmt(r['max_us'])} |")
PY
