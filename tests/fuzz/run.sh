#!/usr/bin/env bash
# Schemathesis against the debug broker on its embedded default, from the
# committed openapi/openapi.json: every operation (/ws too: without an upgrade it is a 400), the
# checks the reliability issue names, a fixed seed so CI is reproducible
# (SCHEMATHESIS_SEED=random for a new one). Called by tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

python3 -m pip install -q --disable-pip-version-check schemathesis==4.32.5 2>&1 | grep -v "^WARNING: Running pip as" || true

source tests/broker.sh
start_broker PRESIGN_RATE_PER_MIN=1000000 CONFIRM_RATE_PER_MIN=1000000 DOWNLOAD_RATE_PER_MIN=1000000 \
  PARTS_RATE_PER_MIN=1000000 DEV_LOGIN_RATE_PER_MIN=1000000

json() { python3 -c "import sys, json; print(json.load(sys.stdin)$1)"; }
token=$(curl -sf "$base/auth/dev-login" -H 'content-type: application/json' -d '{"username":"fuzzer"}' | json "['token']")
auth=(-H "authorization: Bearer $token" -H 'content-type: application/json')
# Something to find: a channel with a message, so ids 1 exist.
curl -sf "$base/channels" "${auth[@]}" -d '{"name":"fuzz"}' >/dev/null
curl -sf "$base/channels/1/messages" "${auth[@]}" -d '{"content":"hello"}' >/dev/null

# Live upload ids for the upload operations (see schemathesis.toml).
while IFS= read -r line; do export "${line?}"; done < <(python3 tests/fuzz/seed.py "$base" "$token")

seed=()
[ "${SCHEMATHESIS_SEED:-1}" != random ] && seed=(--seed "${SCHEMATHESIS_SEED:-1}")
cd "$tmp"
schemathesis --config-file "$OLDPWD/tests/fuzz/schemathesis.toml" run "$OLDPWD/openapi/openapi.json" --url "$base" \
  -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples 100 "${seed[@]}" \
  --report junit --report-dir "$OLDPWD/target/schemathesis"

# The upload core was reached: each seeded operation answered 2xx at least once.
metrics=$(curl -sf "$base/metrics")
for route in 'POST",route="/files/uploads/{upload_id}/confirm' 'POST",route="/files/uploads/{upload_id}/parts' \
  'DELETE",route="/files/uploads/{upload_id}'; do
  line=$(grep -F "method=\"$route\",status=\"2" <<<"$metrics" || true)
  [ -n "$line" ] || { echo "schemathesis never got a 2xx from $route" >&2; exit 1; }
  echo "$line"
done
