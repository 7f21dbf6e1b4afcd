# Sourced by the scripts that drive the debug binary (tests/clients, tests/fuzz):
# a temporary folder, `start_broker [VAR=value…]` on free ports (sets $base),
# and cleanup of both on exit.
tmp=$(mktemp -d)
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_broker() {
  local http
  http=$(free_port)
  base="http://127.0.0.1:$http"
  env DATA_DIR="$tmp/data" BIND_ADDR="127.0.0.1:$http" EMBEDDED_S3_ADDR="127.0.0.1:$(free_port)" RUST_LOG=error "$@" \
    target/debug/chatgenius-files serve &
  broker_pid=$!
  for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && return 0; sleep 0.1; done
  echo "the broker did not start" >&2
  return 1
}
