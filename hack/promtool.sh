#!/usr/bin/env bash
# Print the path of a promtool (Prometheus' rule checker and unit tester), installing it under
# ~/.cache/tether/tools on first use: from PATH if there is one, else extracted from Debian's
# `prometheus` package (downloaded, not installed: no service is set up). The chart's alert
# rules are checked and unit-tested with it (tests/unit/test_chart_render.py).
set -euo pipefail
TOOLS="${TETHER_CACHE:-$HOME/.cache/tether}/tools"
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
if [ -x "$TOOLS/promtool" ]; then echo "$TOOLS/promtool"; exit 0; fi
mkdir -p "$TOOLS"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download prometheus >/dev/null 2>&1 \
    || { echo "hack/promtool.sh: cannot download Debian's prometheus package" >&2; exit 1; }
fi
dpkg-deb -x prometheus_*.deb root
install -m 0755 root/usr/bin/promtool "$TOOLS/promtool.new"
mv "$TOOLS/promtool.new" "$TOOLS/promtool"
"$TOOLS/promtool" --version >/dev/null
echo "$TOOLS/promtool"
