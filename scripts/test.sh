#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, store conformance and the
# HTTP integration suite against real servers on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
ensure_rust
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
