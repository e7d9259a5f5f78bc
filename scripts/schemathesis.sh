#!/usr/bin/env bash
# Property-based tests of the management API with Schemathesis, against its own OpenAPI document.
#
#   bash scripts/schemathesis.sh            # about 3 to 4 minutes on 2 cores
#
# Builds dist/ when the sources changed, starts the compiled server on a free 127.0.0.1 port with a
# temporary embedded data directory and a bootstrap admin client, takes a client-credentials token
# holding every management scope, and runs `schemathesis run` over /v2/openapi.json with every check
# (--checks all) and the examples, coverage, fuzzing and stateful phases. Exits non-zero when any
# check fails. Everything binds to and talks to 127.0.0.1 only.
#
# The bootstrap client is on the enterprise plan, whose limits (RATE_LIMIT_ENTERPRISE_*) and the
# anonymous budget (RATE_LIMIT_ANONYMOUS_*, spent by the ignored_auth check) are set to the largest
# values the settings take, so no request is refused for its rate; the hooks keep the run from
# changing that client or that plan (scripts/schemathesis-hooks.py). scripts/schemathesis.toml says
# which statuses count as accepting schema-valid data.
#
# Schemathesis (pinned below) is installed once into a virtualenv under the cache directory
# ($XDG_CACHE_HOME/latchkey or ~/.cache/latchkey) and reused.
#
# Settings (environment):
#   SCHEMATHESIS_MAX_TIME      time budget of the run in seconds (default 180)
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   SCHEMATHESIS_SEED          random seed (default: a fixed one, so CI runs alike; "random" for none)
#   SCHEMATHESIS_WORKERS       concurrent workers (default 1, see below)
#   SCHEMATHESIS_ARGS          extra arguments for `schemathesis run` (e.g. --report junit)
#   KEEP_SCHEMATHESIS_LOG=1    print the server's warnings and errors at the end (always on failure)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/latchkey"
VENV="$CACHE/schemathesis-venv"
NODE="node_modules/.bin/node"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-180}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-40}"
SEED="${SCHEMATHESIS_SEED:-20260120}"
# One worker: with two, Hypothesis describes strategies from two threads at once and CPython 3.11's
# AST validation trips over its own recursion counter ("AST constructor recursion depth mismatch"),
# failing the run with a runtime error that is no finding; the server shares the two cores anyway.
WORKERS="${SCHEMATHESIS_WORKERS:-1}"
HOOKS="$PWD/scripts/schemathesis-hooks.py"
CONFIG="$PWD/scripts/schemathesis.toml"

log() { printf '[schemathesis] %s\n' "$*" >&2; }

install_schemathesis() {
  if [ -x "$VENV/bin/schemathesis" ] &&
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" = "$SCHEMATHESIS_VERSION" ]; then
    return 0
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV (once)"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" || {
    log "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    return 1
  }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

free_port() {
  "$NODE" -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

install_schemathesis
"$NODE" scripts/ensure-built.mjs

WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-schemathesis.XXXXXX")"
SERVER_PID=
cleanup() {
  local status=$?
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "${KEEP_SCHEMATHESIS_LOG:-}" = 1 ] || { [ "$status" -ne 0 ] && [ -s "$WORK/server.log" ]; }; then
    log "---- server log (errors and warnings)"
    grep -E '"level":"(warn|error|fatal)"' "$WORK/server.log" | tail -n 50 | cut -c1-2000 >&2 || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT INT TERM

PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
CLIENT_ID=schemathesis-admin
CLIENT_SECRET="$("$NODE" -e "console.log(require('crypto').randomBytes(32).toString('base64url'))")"

# No request is refused for its rate (see the top); nothing else differs from a development server.
log "starting the server on $BASE (data in $WORK/data)"
env NODE_ENV=development HOST=127.0.0.1 PORT="$PORT" ISSUER="$BASE" DATA_DIR="$WORK/data" \
  LOG_LEVEL=warn METRICS_ENABLED=false \
  BOOTSTRAP_ADMIN_CLIENT_ID="$CLIENT_ID" BOOTSTRAP_ADMIN_CLIENT_SECRET="$CLIENT_SECRET" \
  RATE_LIMIT_ENTERPRISE_PER_HOUR=1000000000 RATE_LIMIT_ENTERPRISE_BURST=10000000 \
  RATE_LIMIT_ANONYMOUS_PER_HOUR=1000000000 RATE_LIMIT_ANONYMOUS_BURST=10000000 \
  "$NODE" dist/main.js >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 300); do
  if curl -fsS "$BASE/health/ready" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || {
    log "the server exited during start-up:"
    cat "$WORK/server.log" >&2
    exit 1
  }
  sleep 0.1
done
curl -fsS "$BASE/health/ready" >/dev/null

SCOPES="$("$NODE" --input-type=module -e "import { ADMIN_SCOPES } from './dist/oidc/scopes.js'; console.log(ADMIN_SCOPES.join(' '))")"
TOKEN="$(curl -fsS -u "$CLIENT_ID:$CLIENT_SECRET" "$BASE/oauth/token" \
  -d grant_type=client_credentials --data-urlencode "scope=$SCOPES" |
  "$NODE" -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).access_token')"
[ -n "$TOKEN" ] && [ "$TOKEN" != undefined ] || {
  log "no access token"
  exit 1
}

SEED_ARGS=()
[ "$SEED" = random ] || SEED_ARGS=(--seed "$SEED")

log "schemathesis $SCHEMATHESIS_VERSION: every check; phases examples, coverage, fuzzing, stateful; ${MAX_TIME}s, $MAX_EXAMPLES examples"
started=$SECONDS
set +e
# shellcheck disable=SC2086
(cd "$WORK" && env SCHEMATHESIS_HOOKS="$HOOKS" LATCHKEY_ST_CLIENT_ID="$CLIENT_ID" LATCHKEY_ST_PLAN=enterprise \
  "$VENV/bin/schemathesis" --config-file "$CONFIG" run "$BASE/v2/openapi.json" \
  --url "$BASE" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --header "Authorization: Bearer $TOKEN" \
  --workers "$WORKERS" \
  --max-examples "$MAX_EXAMPLES" \
  --max-time "$MAX_TIME" \
  --request-timeout 10 \
  --generation-database none \
  --no-color \
  "${SEED_ARGS[@]}" \
  ${SCHEMATHESIS_ARGS:-})
status=$?
set -e
log "schemathesis finished in $((SECONDS - started))s with status $status"
exit "$status"
