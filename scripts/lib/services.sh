# Shared by the scripts: the services the test suite talks to.

# PostgreSQL on 127.0.0.1:5432 with trust auth for the current user (the
# PostgreSQL store's tests create a database each and drop it after).
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    return 0
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    echo "PostgreSQL is installed but has no cluster" >&2
    return 1
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.2
  done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
  return 1
}
