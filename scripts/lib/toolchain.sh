# Shared by the scripts: make sure the tools the project needs are here.

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "latchkey needs a Rust toolchain (cargo, rustc 1.85 or newer): see https://rustup.rs" >&2
    exit 1
  fi
  # C compiler for the crypto and SQLite crates.
  if ! command -v cc >/dev/null 2>&1; then
    apt_install build-essential
  fi
  # OpenSSL's headers for webauthn-rs (passkeys' signature checks).
  if ! pkg-config --exists openssl 2>/dev/null; then
    apt_install pkg-config libssl-dev
  fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
