#!/usr/bin/env bash
# Podman, runc and catatonit (the pause process of podman's pods), which build and run the image
# (tests/test_image.py, tests/test_kit_under_podman.py), and the image's base:
# no registry need be reachable, so debian:bookworm-slim is made the way Debian's official one
# is, with mmdebstrap (minbase, merged /usr, no documentation, manual pages or locales, no apt
# lists), into .cache/images/. The test imports it into podman under the Dockerfile's name.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Port publishing goes through the CNI plugins and iptables, which podman only recommends.
packages=(podman runc catatonit containernetworking-plugins iptables mmdebstrap)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null; then
    echo "installed ${missing[*]} from Debian"
  else
    echo "warning: ${missing[*]} missing and not installed; the image tests skip (or fail under CI)" >&2
    exit 0
  fi
fi

rootfs=.cache/images/debian-bookworm-slim.tar
if [ -s "$rootfs" ]; then
  exit 0
fi
mkdir -p "$(dirname "$rootfs")"
log=.cache/images/mmdebstrap.log
if ! mmdebstrap --quiet --format=tar --variant=minbase \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$rootfs.partial" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >"$log" 2>&1; then
  rm -f "$rootfs.partial"
  echo "warning: the debian:bookworm-slim root filesystem could not be made (see $log); the image tests skip (or fail under CI)" >&2
  exit 0
fi
mv "$rootfs.partial" "$rootfs"
