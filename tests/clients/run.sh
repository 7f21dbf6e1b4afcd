#!/usr/bin/env bash
# Generates a Python client (openapi-python-client) and a TypeScript client
# (openapi-typescript + openapi-fetch) from the committed openapi/openapi.json
# into a temporary directory, starts the debug broker on its embedded default,
# and drives it through each generated client. Called by tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/broker.sh

# Generation must not warn (missing operation ids, unnamed schemas…).
fail_on_warnings() {
  if grep -qiE 'warn|error|skipp|unable|cannot' "$1"; then
    echo "client generation reported problems:" >&2
    cat "$1" >&2
    exit 1
  fi
}

python3 -m pip install -q --disable-pip-version-check openapi-python-client==0.29.1 2>&1 | grep -v "^WARNING: Running pip as" || true
openapi-python-client generate --path openapi/openapi.json --output-path "$tmp/py/chatgenius_client" --meta none >"$tmp/py.log" 2>&1
cat "$tmp/py.log"
fail_on_warnings "$tmp/py.log"

(cd tests/clients/ts && npm ci --no-audit --no-fund --loglevel=error)
ts=tests/clients/ts/node_modules/.bin
mkdir -p "$tmp/ts"
"$ts/openapi-typescript" openapi/openapi.json -o "$tmp/ts/schema.d.ts" >"$tmp/ts.log" 2>&1
cat "$tmp/ts.log"
fail_on_warnings "$tmp/ts.log"
cp tests/clients/ts/smoke.ts "$tmp/ts/"
echo '{"type":"module"}' >"$tmp/ts/package.json"
ln -s "$PWD/tests/clients/ts/node_modules" "$tmp/ts/node_modules"
"$ts/tsc" --strict --target es2022 --module nodenext --moduleResolution nodenext --skipLibCheck \
  --outDir "$tmp/ts/out" "$tmp/ts/smoke.ts"
echo '{"type":"module"}' >"$tmp/ts/out/package.json"
ln -s "$PWD/tests/clients/ts/node_modules" "$tmp/ts/out/node_modules"

start_broker

python3 tests/clients/python_smoke.py "$tmp/py" "$base"
node "$tmp/ts/out/smoke.js" "$base"
