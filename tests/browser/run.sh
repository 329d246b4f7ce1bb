#!/usr/bin/env bash
# The chat page and the dashboard in headless Chromium (Debian's package,
# driven by puppeteer-core) against the release binary. Installs what it
# needs; skips, saying so, only when the package manager has no Chromium.
# Writes docs/img/chat.png and docs/img/dashboard.png.
set -euo pipefail
cd "$(dirname "$0")"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "apt-get could not install chromium"
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "SKIPPED browser tests: no Chromium at $CHROMIUM and the package manager could not provide one"
  exit 0
fi
"$CHROMIUM" --version 2>/dev/null || true

npm ci --no-audit --no-fund --loglevel=error
(cd ../.. && cargo build --release --quiet)
export CHROMIUM
export RINGCAST_BIN="$PWD/../../target/release/ringcast"
timeout 180 npm test
