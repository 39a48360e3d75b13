#!/usr/bin/env bash
# Starts a real `switchboard dev` on free ports with a temp data dir and runs the browser tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/target/debug/switchboard"
out="$root/target/browser-test-output"
mkdir -p "$out"
data="$(mktemp -d)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gw=$(port); sb=$(port); es=$(port); nats=$(port)
export SWITCHBOARD_DATA_DIR="$data" SWITCHBOARD_NATS_URL="nats://127.0.0.1:$nats" \
  SWITCHBOARD_EVENTSTORE_URL="http://127.0.0.1:$es" SWITCHBOARD_GATEWAY_LISTEN="127.0.0.1:$gw" \
  SWITCHBOARD_SANDBOX_LISTEN="127.0.0.1:$sb" SWITCHBOARD_JWT_SECRET="browser-test-jwt-secret-0123456789" \
  SWITCHBOARD_WHATSAPP_APP_SECRET="browser-test-app-secret"
"$bin" dev >"$out/dev.log" 2>&1 &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$gw/api/v1/openapi.json" >/dev/null 2>&1 && break
  kill -0 $dev 2>/dev/null || { echo "switchboard dev exited:"; tail -30 "$out/dev.log"; exit 1; }
  sleep 0.5
done
cd "$root/tests/browser"
SB_GATEWAY="http://127.0.0.1:$gw" SB_BIN="$bin" SB_OUT="$out" node --test --test-concurrency=1 desktop.test.mjs
