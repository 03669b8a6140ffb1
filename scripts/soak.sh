#!/usr/bin/env bash
# Soak: latchkey under a mix of `GET /v1/me`, refresh and login (1%) at half
# of the mix's measured peak for SOAK_MINUTES, with the server's resident
# memory (VmRSS) read every 10 s. Prints a Markdown summary on stdout
# (progress on stderr); exits with 1 on a FAIL (any error, or VmRSS drifting
# more than 20% from its value after the first minute).
#
#   scripts/soak.sh
#   SOAK_MINUTES=1 scripts/soak.sh
#   ENGINE=pg SOAK_MINUTES=30 scripts/soak.sh
#
# Settings (environment):
#   SOAK_MINUTES  length of the soak, in minutes (default 10; decimals allowed)
#   ENGINE        sqlite or pg (PostgreSQL on 127.0.0.1:5432) (default sqlite)
#   CONNECTIONS   keep-alive connections = virtual users (default 32)
#   PEAK_SECONDS  window in which the peak of the mix is measured (default 10)
#   WARMUP        seconds of load before that window (default 2)
#   LOAD          the soak's rate as a fraction of the peak (default 0.5)
#   MIX           shares of the requests (default me=70,refresh=29,login=1)
#   SERVER_LOG    RUST_LOG of latchkey (default warn)
#   CARGO_TARGET_DIR  where cargo builds (default: the workspace's target/)
#
# Everything listens on 127.0.0.1 only; everything started here (server,
# throwaway database, temporary files) is stopped or removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ME=soak.sh
SOAK_MINUTES="${SOAK_MINUTES:-10}"
ENGINE="${ENGINE:-sqlite}"
CONNECTIONS="${CONNECTIONS:-32}"
PEAK_SECONDS="${PEAK_SECONDS:-10}"
WARMUP="${WARMUP:-2}"
LOAD="${LOAD:-0.5}"
MIX="${MIX:-me=70,refresh=29,login=1}"
# shellcheck source=scripts/lib/latchkey.sh
. "$ROOT/scripts/lib/latchkey.sh"

positive_number SOAK_MINUTES
positive_number PEAK_SECONDS
positive_number WARMUP
positive_number LOAD
positive_integer CONNECTIONS

build
new_database "$ENGINE"
start_server "$ENGINE" "$DB_URL" "$(free_port)"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "latchkey $SERVER_URL (pid $SERVER_PID) on $(engine_name "$ENGINE"); $(nproc) cores; commit $commit"

# Bounded: setup, peak, soak, and some slack.
limit="$(awk -v m="$SOAK_MINUTES" -v p="$PEAK_SECONDS" -v w="$WARMUP" 'BEGIN { printf "%d", m * 60 + p + w + 300 }')"
rc=0
run_bounded "$limit" "$BENCH" soak --url "$SERVER_URL" --server-pid "$SERVER_PID" \
    --connections "$CONNECTIONS" --mix "$MIX" --load "$LOAD" \
    --warmup "${WARMUP}s" --peak-window "${PEAK_SECONDS}s" --duration "${SOAK_MINUTES}m" \
    --label "latchkey on $(engine_name "$ENGINE"), commit $commit" \
    || rc=$?
if [ "$rc" -ne 0 ]; then
    log "FAIL (exit $rc); the server's last error lines:"
    server_log_tail >&2
fi
exit "$rc"
