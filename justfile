# Switchboard's command surface. CI runs `just test` (see .ci/run), nothing else.

set shell := ["bash", "-euo", "pipefail", "-c"]

export CARGO_TERM_COLOR := "never"

# List the recipes.
default:
    @just --list

# Run everything on this machine: NATS, event store, services, gateway, sandbox.
dev *ARGS: ensure-nats-server
    cargo run -p switchboard -- dev {{ARGS}}

# Format check, clippy with -D warnings, and every test (needs nats-server; installed when missing).
test: ensure-nats-server lint test-browser
    cargo test --workspace --all-targets --no-fail-fast

# The agent desktop in Debian's chromium (playwright-core) against a real `switchboard dev` on free ports; screenshots in target/browser-test-output/.
test-browser: ensure-nats-server
    #!/usr/bin/env bash
    set -euo pipefail
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    if [ ! -x /usr/bin/chromium ]; then
        $sudo_cmd apt-get update -qq
        $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    fi
    [ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund)
    cargo build -p switchboard
    tests/browser/run.sh

# Formatting and clippy, warnings are errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Install nats-server with apt-get when it is missing (tests start their own on free ports).
ensure-nats-server:
    #!/usr/bin/env bash
    set -euo pipefail
    if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then exit 0; fi
    if command -v apt-get >/dev/null 2>&1; then
        echo "nats-server is missing: installing it with apt-get"
        sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
    else
        echo "nats-server is missing. Install NATS server 2.9+ (https://docs.nats.io/running-a-nats-service/introduction/installation) and put it on PATH, or set NATS_SERVER_BIN." >&2
        exit 1
    fi


# Event store benchmark: durable appends/s and p50/p99 from 1, 16 and 256 writers over HTTP, the disk's fsync rate, and 1,000,000 events read back from $all (about 30 s).
bench-eventlog *ARGS:
    cargo run --release -p eventlog --bin eventlog-bench -- {{ARGS}}

# Every benchmark (prints tables; nothing asserts wall-clock times).
bench: bench-eventlog
