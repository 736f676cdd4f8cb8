#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, from Debian's packages:
# - nats-server (JetStream, 2.9.x), for the weir-nats tests and the scale-out test;
# - chromium (headless), for the console's browser test
#   (weir/tests/console_browser.rs).
# Idempotent: installs only what is missing from PATH (or /usr/sbin for
# nats-server); runs `apt-get update` only if a package is not known yet. Fails
# loudly if an install fails or leaves the program missing.
set -euo pipefail

missing=()
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    echo "nats-server present: $( (command -v nats-server || echo /usr/sbin/nats-server) )"
else
    missing+=(nats-server)
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium present: $(command -v chromium || command -v chromium-browser)"
else
    missing+=(chromium)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
for package in "${missing[@]}"; do
    if ! apt-cache show "$package" >/dev/null 2>&1; then
        $SUDO apt-get update
        break
    fi
done
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
nats-server --version 2>/dev/null || /usr/sbin/nats-server --version
# Debian's launcher script prints a harmless shell warning on some machines.
chromium --version 2>/dev/null || chromium-browser --version
