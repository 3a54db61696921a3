#!/usr/bin/env bash
# Grafana's dashboard schema (npm @grafana/schema) and TypeScript, at the versions pinned in
# tests/grafana_schema/package-lock.json, into .cache/grafana-schema/ for the dashboard test.
set -euo pipefail
cd "$(dirname "$0")/../.."

pinned=tests/grafana_schema
target=.cache/grafana-schema
if [ -x "$target/node_modules/.bin/tsc" ] && cmp -s "$pinned/package-lock.json" "$target/package-lock.json"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing npm from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || true
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "warning: npm missing; Grafana's schema not installed, the dashboard schema test skips (or fails under CI)" >&2
  exit 0
fi
mkdir -p "$target"
cp "$pinned/package.json" "$pinned/package-lock.json" "$target/"
if ! npm ci --prefix "$target" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null; then
  rm -f "$target/package-lock.json"
  echo "warning: npm ci of Grafana's schema failed; the dashboard schema test skips (or fails under CI)" >&2
  exit 0
fi
