#!/usr/bin/env bash
# Try the demo: builds latchkey and the demo social app, starts latchkey
# (SQLite in a temp dir, access tokens of 5 minutes), creates the user `demo`
# with the password `demo password`, starts the demo in front of it and
# prints its URL. Ctrl-C stops both.
#
#   scripts/demo.sh                     # http://localhost:3000
#   DEMO_PORT=4000 scripts/demo.sh
#   DEMO_SMTP_URL=smtp://127.0.0.1:1025 scripts/demo.sh   # "forgot password"
#                                       # and address checks mail through
#                                       # that server (e.g. a local mailpit)
#
# Local development over plain HTTP on loopback: cookies without `Secure`.
# The page is opened as http://localhost (not 127.0.0.1): browsers refuse
# passkeys on an IP address, and localhost is a secure context.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
ensure_rust

demo_port="${DEMO_PORT:-3000}"
demo_origin="http://localhost:${demo_port}"

cargo build --quiet -p latchkey-server -p latchkey-demo
target="${CARGO_TARGET_DIR:-target}/debug"

tmp="$(mktemp -d)"
database_url="sqlite://${tmp}/latchkey.db"
latchkey_pid=""
demo_pid=""
stop() {
  trap - EXIT INT TERM
  [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null || true
  [ -n "$latchkey_pid" ] && kill "$latchkey_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop EXIT INT TERM

# Waits for a process's `listening on http://HOST:PORT` line in its output file.
listening_url() {
  local file="$1" pid="$2" url=""
  for _ in $(seq 1 200); do
    url="$(sed -n 's/^listening on \(http:\/\/[^ ]*\)$/\1/p' "$file" | head -n 1)"
    [ -n "$url" ] && { echo "$url"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "did not start; its log:" >&2
  cat "$file" "$file.err" >&2 || true
  return 1
}

"$target/latchkey" serve \
  --listen 127.0.0.1:0 \
  --database-url "$database_url" \
  --access-ttl 5m \
  --allowed-origins "$demo_origin" \
  --webauthn-rp-id localhost \
  --cookie-secure false \
  ${DEMO_SMTP_URL:+--smtp-url "$DEMO_SMTP_URL"} \
  >"$tmp/latchkey.out" 2>"$tmp/latchkey.out.err" &
latchkey_pid=$!
latchkey_url="$(listening_url "$tmp/latchkey.out" "$latchkey_pid")"

echo 'demo password' | "$target/latchkey" user add demo --database-url "$database_url" >/dev/null
# The demo's API subscribes to the revocation feed as this client: a logout
# is refused there within a second.
feed_secret="$("$target/latchkey" client add demo-api --database-url "$database_url" |
  sed -n 's/.*"client_secret":"\([^"]*\)".*/\1/p')"

LATCHKEY_DEMO_FEED_SECRET="$feed_secret" "$target/latchkey-demo" \
  --listen "127.0.0.1:${demo_port}" \
  --latchkey-url "$latchkey_url" \
  --issuer "$latchkey_url" \
  --feed-client-id demo-api \
  >"$tmp/demo.out" 2>"$tmp/demo.out.err" &
demo_pid=$!
listening_url "$tmp/demo.out" "$demo_pid" >/dev/null

echo "latchkey:  $latchkey_url (database in $tmp)"
echo "the demo:  $demo_origin"
echo "log in as demo / demo password; Ctrl-C stops both"
wait -n "$latchkey_pid" "$demo_pid" || true
