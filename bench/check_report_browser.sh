#!/usr/bin/env bash
# Render a report in headless Chromium (Debian package 'chromium') and save a full-page
# screenshot, so the report is looked at in a real browser: bench/check_report_browser.sh out/report shot.png
set -euo pipefail
dir=${1:-out/report}
shot=${2:-$dir/screenshot.png}
command -v chromium >/dev/null || { echo "chromium not installed (apt-get install chromium)"; exit 2; }
tmp=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp" --window-size=1200,${3:-6000} --hide-scrollbars \
  --screenshot="$shot" "file://$(realpath "$dir")/index.html" 2>/dev/null
rm -rf "$tmp"
echo "screenshot: $shot"
