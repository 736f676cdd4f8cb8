#!/usr/bin/env bash
# Regenerates docs/img/console.png: the browser test
# (weir/tests/console_browser.rs) runs the console of a graph with a broadcast,
# a pool and a slow sink in headless Chromium, and copies its screenshot
# (1400x900) there. Needs Chromium: .ci/install-deps.sh installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/img
WEIR_CONSOLE_SCREENSHOT="$PWD/docs/img/console.png" \
    cargo test -p weir --test console_browser -- --nocapture
echo "docs/img/console.png regenerated"
