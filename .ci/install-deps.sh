#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain: nats-server (JetStream),
# for the weir-nats tests and the scale-out test (Debian's package, 2.9.x).
# Idempotent: does nothing when nats-server is already on PATH (or in
# /usr/sbin); runs `apt-get update` only if the package is not known yet.
set -euo pipefail

if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    echo "nats-server present: $( (command -v nats-server || echo /usr/sbin/nats-server) )"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show nats-server >/dev/null 2>&1; then
    $SUDO apt-get update
fi
$SUDO apt-get install -y --no-install-recommends nats-server
nats-server --version 2>/dev/null || /usr/sbin/nats-server --version
