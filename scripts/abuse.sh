#!/usr/bin/env bash
# Abuse while serving: a normal client (GET /v1/me and refresh, closed loop)
# measured alone for BASELINE seconds, then for ATTACK seconds while a second
# client sends, as fast as the server answers, (a) requests whose method is
# 8,000 random letters, to random paths, and (b) 64 KiB forms of ~13,900
# distinct parameters to /oauth2/token, /oauth2/introspect and
# /oauth2/revoke, alternately; then RECOVERY seconds after. Prints a
# Markdown summary on stdout (progress on stderr): the normal client's
# throughput under attack against the baseline, the server's VmRSS before,
# at the end of the attack and after, the size of /metrics before and after,
# and the attack's answers and rate. Exits with 1 on a FAIL (throughput
# under attack below half the baseline, or VmRSS not back within 20%).
#
#   scripts/abuse.sh
#   BASELINE=5 ATTACK=10 RECOVERY=5 scripts/abuse.sh
#
# Settings (environment):
#   ENGINE              sqlite or pg (PostgreSQL on 127.0.0.1:5432) (default sqlite)
#   CONNECTIONS         the normal client's keep-alive connections (default 8)
#   MIX                 the normal client's requests (default me=50,refresh=50)
#   WARMUP              seconds before the baseline (default 2)
#   BASELINE            seconds of the normal client alone (default 20)
#   ATTACK              seconds of attack (default 60)
#   RECOVERY            seconds after the attack (default 30)
#   ATTACK_CONNECTIONS  the attacker's connections, each alternating the two
#                       attacks (default: the number of cores, enough to keep
#                       every core of the server busy with attack requests)
#   MAX_SERVER_RSS_MIB  the attack stops early if the server's VmRSS passes
#                       this, to protect the machine (default 4096)
#   SERVER_LOG          RUST_LOG of latchkey (default warn)
#   CARGO_TARGET_DIR    where cargo builds (default: the workspace's target/)
#
# Everything listens on 127.0.0.1 only; everything started here (server,
# throwaway database, temporary files) is stopped or removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ME=abuse.sh
ENGINE="${ENGINE:-sqlite}"
CONNECTIONS="${CONNECTIONS:-8}"
MIX="${MIX:-me=50,refresh=50}"
WARMUP="${WARMUP:-2}"
BASELINE="${BASELINE:-20}"
ATTACK="${ATTACK:-60}"
RECOVERY="${RECOVERY:-30}"
ATTACK_CONNECTIONS="${ATTACK_CONNECTIONS:-$(nproc)}"
MAX_SERVER_RSS_MIB="${MAX_SERVER_RSS_MIB:-4096}"
# shellcheck source=scripts/lib/latchkey.sh
. "$ROOT/scripts/lib/latchkey.sh"

for v in WARMUP BASELINE ATTACK RECOVERY; do positive_number "$v"; done
for v in CONNECTIONS ATTACK_CONNECTIONS MAX_SERVER_RSS_MIB; do positive_integer "$v"; done

build
new_database "$ENGINE"
start_server "$ENGINE" "$DB_URL" "$(free_port)"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "latchkey $SERVER_URL (pid $SERVER_PID) on $(engine_name "$ENGINE"); $(nproc) cores; commit $commit"

# Bounded: setup, the windows, reading /metrics, and some slack.
limit="$(awk -v a="$WARMUP" -v b="$BASELINE" -v c="$ATTACK" -v d="$RECOVERY" \
    'BEGIN { printf "%d", a + b + c + d + 400 }')"
rc=0
run_bounded "$limit" "$BENCH" abuse --url "$SERVER_URL" --server-pid "$SERVER_PID" \
    --connections "$CONNECTIONS" --mix "$MIX" --warmup "${WARMUP}s" \
    --baseline "${BASELINE}s" --attack "${ATTACK}s" --recovery "${RECOVERY}s" \
    --attack-connections "$ATTACK_CONNECTIONS" --max-server-rss-mib "$MAX_SERVER_RSS_MIB" \
    --label "latchkey on $(engine_name "$ENGINE"), commit $commit" \
    || rc=$?
if [ "$rc" -ne 0 ]; then
    log "FAIL (exit $rc); the server's last error lines:"
    server_log_tail >&2
fi
exit "$rc"
