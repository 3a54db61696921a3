#!/usr/bin/env bash
# Prometheus 3 beside Debian stable's 2.x: Debian unstable's `prometheus` package, fetched with
# a private apt configuration and unpacked into .cache/prometheus3/; nothing is installed
# system-wide. `prometheus` and `promtool` (a package of its own there) are Go binaries that need
# only libc (2.34 or later, which Debian stable has), so the rest of their dependencies is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=.cache/prometheus3
if [ -x "$target/usr/bin/prometheus" ] && [ -x "$target/usr/bin/promtool" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "warning: apt-get or dpkg-deb missing; Prometheus 3 not installed, its tests skip (or fail under CI)" >&2
  exit 0
fi

# The same archive host the machine's own apt sources use.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
  2>/dev/null | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n 1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}

apt_root=$(pwd)/.cache/apt-sid
mkdir -p "$apt_root/lists/partial" "$apt_root/archives/partial" "$apt_root/etc/preferences.d" \
  "$apt_root/etc/apt.conf.d" "$apt_root/download"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $mirror sid main" > "$apt_root/etc/sources.list"
: > "$apt_root/status"
apt_options=(
  -o "Dir::Etc::SourceList=$apt_root/etc/sources.list"
  -o "Dir::Etc::SourceParts=$apt_root/etc/sources.list.d"
  -o "Dir::Etc::Preferences=$apt_root/etc/preferences"
  -o "Dir::Etc::PreferencesParts=$apt_root/etc/preferences.d"
  -o "Dir::State=$apt_root"
  -o "Dir::State::Lists=$apt_root/lists"
  -o "Dir::State::status=$apt_root/status"
  -o "Dir::Cache=$apt_root"
  -o "Dir::Cache::Archives=$apt_root/archives"
  -o "Debug::NoLocking=true"
  -o "APT::Sandbox::User=root"
)
if ! apt-get "${apt_options[@]}" -qq update; then
  echo "warning: Debian unstable's package lists could not be read; Prometheus 3 tests skip (or fail under CI)" >&2
  exit 0
fi
rm -f "$apt_root/download"/*.deb
if ! (cd "$apt_root/download" && apt-get "${apt_options[@]}" -qq download prometheus promtool); then
  echo "warning: Debian unstable's prometheus could not be downloaded; Prometheus 3 tests skip (or fail under CI)" >&2
  exit 0
fi
rm -rf "$target.partial"
for package in "$apt_root/download"/*.deb; do
  dpkg-deb -x "$package" "$target.partial"
done
rm -rf "$target"
mv "$target.partial" "$target"
rm -rf "$apt_root"
"$target/usr/bin/prometheus" --version | sed -n 1p
