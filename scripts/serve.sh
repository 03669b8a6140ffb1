#!/usr/bin/env bash
# Builds latchkey and serves it on its embedded default store (./latchkey.db,
# SQLite), printing where it listens. Extra arguments go to `latchkey serve`.
# Local development over plain HTTP: cookies without `Secure` (never in production).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
ensure_rust
cargo build --release --quiet -p latchkey-server
exec "${CARGO_TARGET_DIR:-target}/release/latchkey" serve --cookie-secure false "$@"
