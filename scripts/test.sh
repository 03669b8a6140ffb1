#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, store conformance and the
# HTTP integration suite against real servers on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
. scripts/lib/services.sh
ensure_rust
# The PostgreSQL store's tests make a database each on 127.0.0.1:5432.
ensure_postgres
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
# The same HTTP suite again, every in-process server on PostgreSQL.
LATCHKEY_TEST_STORE=postgres cargo test -p latchkey-server --test api "$@"
