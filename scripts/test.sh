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

# The third-party OAuth clients of the interop tests (tests/interop/): pinned
# Python packages for the python3 on PATH, and node_modules from the lock
# (npm ci only when the lock changed since the last install).
install_interop_clients() {
  local missing=()
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v npm >/dev/null 2>&1 || missing+=("node and npm")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "the interop tests need ${missing[*]} (CPython 3.11 with pip, Node.js 20)" >&2
    exit 1
  fi
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    python3 -m pip install --quiet -r tests/interop/requirements.txt </dev/null
  local lock=tests/interop/node/package-lock.json
  local stamp=tests/interop/node/node_modules/.latchkey-installed-lock
  if ! cmp -s "$lock" "$stamp"; then
    npm ci --prefix tests/interop/node --no-audit --no-fund --loglevel=error >/dev/null </dev/null
    cp "$lock" "$stamp"
  fi
}
install_interop_clients

# The browser client (clients/browser/): devDependencies from the lock (npm ci
# only when it changed), the minified build within its 3 kB gzip budget, the
# types, the unit tests, and a tarball that installs and imports.
test_browser_client() {
  local dir=clients/browser
  local stamp=$dir/node_modules/.latchkey-installed-lock
  if ! cmp -s "$dir/package-lock.json" "$stamp"; then
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null </dev/null
    cp "$dir/package-lock.json" "$stamp"
  fi
  npm run --prefix "$dir" --silent build </dev/null
  npm run --prefix "$dir" --silent types </dev/null
  npm test --prefix "$dir" --silent </dev/null
  local packed
  packed=$(mktemp -d)
  (cd "$dir" && npm pack --silent --pack-destination "$packed" >/dev/null </dev/null)
  mkdir "$packed/app"
  echo '{"name":"app","private":true,"type":"module"}' >"$packed/app/package.json"
  npm install --prefix "$packed/app" --no-audit --no-fund --loglevel=error "$packed"/latchkey-browser-*.tgz >/dev/null </dev/null
  (cd "$packed/app" && node -e "import('@latchkey/browser').then((m) => { if (typeof m.createLatchkey !== 'function') process.exit(1); })")
  rm -rf "$packed"
}
test_browser_client

# The real-browser tests of the demo (tests/e2e/): Debian's Chromium (never a
# downloaded browser) and playwright-core from the lock.
apt_install chromium
e2e_lock=tests/e2e/package-lock.json
e2e_stamp=tests/e2e/node_modules/.latchkey-installed-lock
if ! cmp -s "$e2e_lock" "$e2e_stamp"; then
  npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error >/dev/null </dev/null
  cp "$e2e_lock" "$e2e_stamp"
fi

cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
# The same HTTP suite again, every in-process server on PostgreSQL (the
# tests of the binary, the interop clients and several nodes pick their
# store themselves).
LATCHKEY_TEST_STORE=postgres cargo test -p latchkey-server --test api -- \
  --skip binary:: --skip interop:: --skip nodes::
# The demo in a real browser: login, silent refresh, two tabs, logout.
cargo build -p latchkey-server -p latchkey-demo
LATCHKEY_BIN_DIR="${CARGO_TARGET_DIR:-target}/debug" node --test tests/e2e/
