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

seed=()
[ "${SCHEMATHESIS_SEED:-1}" != random ] && seed=(--seed "${SCHEMATHESIS_SEED:-1}")
cd "$tmp"
schemathesis run "$OLDPWD/openapi/openapi.json" --url "$base" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,ignored_auth,use_after_free \
  --max-examples 100 "${seed[@]}" \
  --report junit --report-dir "$OLDPWD/target/schemathesis"
